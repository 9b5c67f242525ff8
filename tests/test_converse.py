"""Converse sessions that cannot hang: a message that does not decode, or a
history that cannot be saved, ends the call with a clear status; and long
conversations keep going under the history window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from state_fixtures import REDIS_URL
from test_shared_backends import RedisProxy

from pointsman.client import AsyncClient, PointsmanError
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from fakes.openai_upstream import FakeOpenAI
from server_fixtures import collect, eventually, raises

CONVERSE = "/pointsman.orchestrator.v1.OrchestratorService/Converse"
# A ConverseRequest whose turn id is not UTF-8: it does not decode.
UNDECODABLE = b"\x12\x04\x0a\x02\xff\xfe"


def setup(model: str, **fields: Any) -> orch.ConverseRequest:
    return orch.ConverseRequest(setup=orch.ConversationSetup(model=model, **fields))


def turn(turn_id: str, content: str) -> orch.ConverseRequest:
    return orch.ConverseRequest(turn=orch.UserTurn(turn_id=turn_id, content=content))


async def from_queue(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while (item := await queue.get()) is not None:
        yield item


@pytest.fixture
async def slow_gateway(start_server: Any, tmp_path: Path) -> AsyncIterator[str]:
    """A server whose model `slow` streams its answer slowly (a turn is still
    being answered when the next message arrives)."""
    async with FakeOpenAI() as upstream:
        routes = {
            "endpoints": {"fake": {"provider": "openai", "base_url": upstream.base_url}},
            "models": {"slow": {"deployments": [{"endpoint": "fake", "model": "long-40+slow-25"}]}},
        }
        (tmp_path / "routes.yaml").write_text(yaml.safe_dump(routes))
        server = await start_server(POINTSMAN_ROUTES_FILE=str(tmp_path / "routes.yaml"), OPENAI_API_KEY="sk-x")
        yield server.address


async def test_a_message_that_does_not_decode_after_a_turn_ends_the_call(slow_gateway: str) -> None:
    # Raw bytes on the wire: the client's own stubs could not send them.
    async with grpc.aio.insecure_channel(slow_gateway) as channel:
        converse = channel.stream_stream(
            CONVERSE, request_serializer=lambda raw: raw, response_deserializer=orch.ConverseResponse.FromString
        )
        call = converse(
            iter([setup("slow").SerializeToString(), turn("t1", "hello").SerializeToString(), UNDECODABLE]),
            timeout=20,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
    # Before the fix: DEADLINE_EXCEEDED after 20 s, the call hanging.
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid message" in (caught.value.details() or "")


async def test_a_turn_whose_history_cannot_be_saved_ends_the_call_unavailable(
    redis_prefix: str, start_server: Any
) -> None:
    proxy = RedisProxy(REDIS_URL)
    await proxy.start()
    try:
        server = await start_server(REDIS_URL=proxy.url, POINTSMAN_REDIS_PREFIX=redis_prefix)
        async with AsyncClient(server.address, timeout=20) as client:
            queue: asyncio.Queue[Any] = asyncio.Queue()
            await queue.put(setup("builtin"))
            await queue.put(turn("t1", "kept"))
            events = client.orchestrator.Converse(from_queue(queue))
            seen = []
            async for event in events:
                seen.append(event)
                if event.turn_id == "t1" and event.WhichOneof("event") == "finish":
                    break
            conversation = seen[0].started.conversation
            await proxy.stop()  # Redis goes away mid-session
            await queue.put(turn("t2", "not kept"))
            error = await raises(collect(events))
            # Before the fix: no status at all, the call open until the deadline.
            assert error.code == grpc.StatusCode.UNAVAILABLE
            assert error.reason == "CONVERSATIONS_UNAVAILABLE"
            assert "t2" in str(error) and error.retry_delay > 0

            # Once Redis is back, the history holds the turns that were kept.
            await proxy.start()
            kept: list[orch.GetConversationResponse] = []

            async def read_back() -> bool:
                try:
                    kept.append(
                        await client.orchestrator.GetConversation(orch.GetConversationRequest(name=conversation))
                    )
                except PointsmanError as retry:
                    assert retry.code == grpc.StatusCode.UNAVAILABLE
                    return False
                return True

            await eventually(read_back, timeout=15)
            assert [m.content for m in kept[-1].messages][:1] == ["kept"] and len(kept[-1].messages) == 2
    finally:
        if proxy._server is not None:
            await proxy.stop()


# The history window -------------------------------------------------------------


async def test_a_conversation_goes_on_past_the_message_limit(start_server: Any) -> None:
    # Before the window, turn 5 sent 11 messages and failed INVALID_ARGUMENT for good.
    server = await start_server(POINTSMAN_MAX_MESSAGES=10)
    async with AsyncClient(server.address, timeout=20) as client:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        await queue.put(setup("builtin", system_prompt="be brief"))
        for n in range(1, 13):
            await queue.put(turn(f"t{n}", f"question {n}"))
        await queue.put(None)
        events = await collect(client.orchestrator.Converse(from_queue(queue)))
        assert not [e for e in events if e.WhichOneof("event") == "error"]
        finished = [e.turn_id for e in events if e.WhichOneof("event") == "finish"]
        assert finished == [f"t{n}" for n in range(1, 13)]

        conversation = events[0].started.conversation
        kept = await client.orchestrator.GetConversation(orch.GetConversationRequest(name=conversation))
        contents = [m.content for m in kept.messages]
        # The system prompt stays; the oldest turns went; the newest is there.
        assert contents[0] == "be brief" and len(contents) <= 10
        assert "question 12" in contents and "question 1" not in contents

        # Resumed, it goes on too.
        queue = asyncio.Queue()
        await queue.put(setup("builtin", conversation=conversation))
        await queue.put(turn("again", "question 13"))
        await queue.put(None)
        resumed = await collect(client.orchestrator.Converse(from_queue(queue)))
        assert resumed[-1].turn_id == "again" and resumed[-1].WhichOneof("event") == "finish"
