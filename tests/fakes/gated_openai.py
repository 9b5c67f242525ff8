"""A fake OpenAI upstream that holds calls for one model until released, and
counts calls per model: for tests that need an item to be running, not done."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from aiohttp import web

from .openai_upstream import FakeOpenAI


class GatedOpenAI(FakeOpenAI):
    """Counts calls per model; calls for model `gated` wait until `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.calls: Counter[str] = Counter()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        model = str(json.loads(await request.read()).get("model"))
        self.calls[model] += 1
        if model == "gated":
            await self.gate.wait()
        return await super()._answer(request)
