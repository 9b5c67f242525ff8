"""A fake small LLM acting as a router's classifier model: an OpenAI-compatible
server (FakeOpenAI underneath, so faults, slowness and usage work the same)
whose answer is chosen by the test instead of echoing the question.

    async with FakeClassifier(reply="math") as fake: ...
    fake.reply = lambda system, question: "code" if "loop" in question else "none"

`questions` keeps (system prompt, user text) of every chat request it got."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .openai_upstream import JSON, FakeOpenAI, Prompt, message_text

Reply = str | Callable[[str, str], str]


class FakeClassifier(FakeOpenAI):
    def __init__(self, reply: Reply = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reply = reply
        self.questions: list[tuple[str, str]] = []

    def _parse(self, body: JSON) -> Prompt:
        prompt = super()._parse(body)
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        system = "\n".join(message_text(m.get("content")) for m in messages if m.get("role") in ("system", "developer"))
        self.questions.append((system, prompt.user_text))
        answer = self.reply(system, prompt.user_text) if callable(self.reply) else self.reply
        # `structured` makes the fake answer with the text as it is (no "Echo: ").
        return replace(prompt, user_text=answer, structured=True)
