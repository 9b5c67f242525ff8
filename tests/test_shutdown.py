"""Graceful shutdown, as a client sees it: health watches end with their final
NOT_SERVING as soon as shutdown starts, health keeps answering (NOT_SERVING)
while calls drain and new calls are refused, and a stream still open at the
end of the grace period ends UNAVAILABLE with `incomplete`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app import PointsmanServer, open_server

from fakes.openai_upstream import FakeOpenAI
from helpers_pb import chat_request
from server_fixtures import collect, eventually, raises, settings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Long enough that a test passing cannot be the grace period running out.
LONG_GRACE = 120.0


@pytest.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def started(upstream: FakeOpenAI, model: str) -> PointsmanServer:
    server = await open_server(settings(OPENAI_API_KEY="k", OPENAI_BASE_URL=upstream.base_url, OPENAI_MODELS=[model]))
    await server.start()
    return server


async def test_a_health_watch_ends_with_its_final_status_when_shutdown_starts(upstream: FakeOpenAI) -> None:
    server = await started(upstream, "gpt-x")
    async with grpc.aio.insecure_channel(server.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert (await watch.read()).status == SERVING
        stopping = asyncio.create_task(server.stop(grace=LONG_GRACE))
        assert (await watch.read()).status == NOT_SERVING
        assert await watch.read() is grpc.aio.EOF  # the watch ended: it no longer holds the shutdown
        assert await watch.code() == grpc.StatusCode.OK
        await stopping  # before the fix: only after the whole grace period


async def test_while_draining_health_answers_not_serving_and_new_calls_are_refused(upstream: FakeOpenAI) -> None:
    model = "long-40+slow-20"
    server = await started(upstream, model)
    async with AsyncClient(server.address, timeout=30) as client:
        stream = client.orchestrator.Chat(chat_request("x", model=model))
        assert (await anext(stream)).WhichOneof("event") == "start"
        stopping = asyncio.create_task(server.stop(grace=LONG_GRACE))
        await eventually(lambda: server.health.status("") == NOT_SERVING)
        # A new connection still reaches the server, and hears it is going away.
        async with AsyncClient(server.address, timeout=10, retry=None) as newcomer:
            assert await newcomer.health() == NOT_SERVING
            listed = await health_pb2_grpc.HealthStub(newcomer.channel).List(health_pb2.HealthListRequest())
            assert {s.status for s in listed.statuses.values()} == {NOT_SERVING}
            refused = await raises(collect(newcomer.orchestrator.Chat(chat_request("y", model=model))))
            assert refused.code == grpc.StatusCode.UNAVAILABLE and refused.reason == "SERVER_SHUTTING_DOWN"
            assert refused.retry_delay
        # The call in flight goes on to its end, then the server stops.
        rest = await collect(stream)
        assert rest[-1].WhichOneof("event") == "finish"
        await stopping


async def test_a_stream_cut_at_the_end_of_the_grace_period_says_it_is_incomplete(upstream: FakeOpenAI) -> None:
    model = "long-1000+slow-50"
    server = await started(upstream, model)
    async with AsyncClient(server.address, timeout=30) as client:
        stream = client.orchestrator.Chat(chat_request("x", model=model))
        await anext(stream)
        assert (await anext(stream)).WhichOneof("event") == "text_delta"
        await server.stop(grace=0)
        error = await raises(collect(stream))
    # Before: UNAVAILABLE "Cancelling all calls", with nothing to say the answer was cut.
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "SERVER_SHUTTING_DOWN"
    assert error.metadata.get("incomplete") == "true"
    await upstream.wait_for(lambda: upstream.streams_open == 0)


async def test_a_converse_session_cut_at_shutdown_ends_unavailable(upstream: FakeOpenAI) -> None:
    model = "long-1000+slow-50"
    server = await started(upstream, model)
    async with AsyncClient(server.address, timeout=30) as client:
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def requests() -> AsyncIterator[Any]:
            while (item := await queue.get()) is not None:
                yield item

        await queue.put(orch.ConverseRequest(setup=orch.ConversationSetup(model=model)))
        await queue.put(orch.ConverseRequest(turn=orch.UserTurn(turn_id="t1", content="go")))
        events = client.orchestrator.Converse(requests())
        async for event in events:
            if event.WhichOneof("event") == "text_delta":
                break
        await server.stop(grace=0)
        error = await raises(collect(events))
    assert error.code == grpc.StatusCode.UNAVAILABLE and error.reason == "SERVER_SHUTTING_DOWN"
    assert error.metadata.get("incomplete") == "true"
