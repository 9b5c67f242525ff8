"""An upstream that sends megabytes in one streamed chunk: the gateway splits
it into deltas that each fit a gRPC message, so the client gets every
character instead of a stream cut by the server's message size limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from pointsman.client import AsyncClient
from pointsman.server.domain.chat import MAX_DELTA_CHARS

from fakes.openai_upstream import FakeOpenAI, huge_text
from helpers_pb import chat_request, text_of
from server_fixtures import collect

# Eight MiB of characters (more in UTF-8: some take up to four bytes), twice
# the server's default message size limit, in one upstream chunk.
HUGE = 8 * 1024 * 1024
SMALL_HUGE = 300_000


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def test_one_eight_mib_upstream_delta_reaches_the_client_whole(start_server: Any, upstream: FakeOpenAI) -> None:
    server = await start_server(
        OPENAI_API_KEY="sk-huge-0123456789",
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_MODELS=[f"huge-{HUGE}"],
        FIREWALL_ENABLED="false",
    )
    async with AsyncClient(server.address, timeout=60) as client:
        events = await collect(client.orchestrator.Chat(chat_request("go", model=f"huge-{HUGE}")))
    deltas = [e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta"]
    assert text_of(events) == huge_text(HUGE)
    assert len(deltas) >= HUGE // MAX_DELTA_CHARS and max(len(d) for d in deltas) <= MAX_DELTA_CHARS
    assert events[-1].HasField("finish")


async def test_a_huge_delta_through_the_output_firewall_arrives_whole(start_server: Any, upstream: FakeOpenAI) -> None:
    # The default firewall scans the answer as it streams; the split pieces
    # go through it like any other deltas.
    server = await start_server(
        OPENAI_API_KEY="sk-huge-0123456789",
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_MODELS=[f"huge-{SMALL_HUGE}"],
    )
    async with AsyncClient(server.address, timeout=60) as client:
        events = await collect(client.orchestrator.Chat(chat_request("go", model=f"huge-{SMALL_HUGE}")))
    deltas = [e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta"]
    assert text_of(events) == huge_text(SMALL_HUGE) and len(deltas) > 1
    assert events[-1].HasField("finish")
