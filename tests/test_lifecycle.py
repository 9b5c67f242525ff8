"""Health, reflection, deadlines, cancellation and graceful shutdown of a real
server on port 0."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pointsman.client import AsyncClient, PointsmanError
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.server import SERVICE_NAMES, open_server

from fakes.openai_upstream import FakeOpenAI
from helpers_pb import chat_request, text_of, user
from server_fixtures import collect, eventually, raises, settings

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_of(address: str, service: str = "") -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
        return int(response.status)


async def test_health_is_not_serving_until_ready() -> None:
    server = await open_server(settings())
    await server.listen()
    try:
        for name in ("", *SERVICE_NAMES):
            assert await health_of(server.address, name) == NOT_SERVING
        await server.become_ready()
        for name in ("", *SERVICE_NAMES):
            assert await health_of(server.address, name) == SERVING
    finally:
        await server.stop(grace=0)


async def test_reflection_lists_every_service(server: Any) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)

        async def ask() -> Any:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        responses = [r async for r in stub.ServerReflectionInfo(ask(), timeout=5)]
    listed = {s.name for s in responses[0].list_services_response.service}
    assert set(SERVICE_NAMES) | {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= listed


async def test_deadline_exceeded_on_a_slow_upstream(start_server: Any) -> None:
    async with FakeOpenAI() as upstream:
        server = await start_server(
            OPENAI_API_KEY="k", OPENAI_BASE_URL=upstream.base_url, OPENAI_MODELS=["long-100+slow-100"]
        )
        async with AsyncClient(server.address) as client:
            error = await raises(
                collect(client.orchestrator.Chat(chat_request("x", model="long-100+slow-100"), timeout=0.5))
            )
        assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
        # The deadline ends the upstream call too.
        await upstream.wait_for(lambda: upstream.streams_open == 0)
        assert upstream.streams_aborted == 1


async def test_client_cancel_reaches_the_upstream_call(start_server: Any) -> None:
    async with FakeOpenAI() as upstream:
        model = "long-1000+slow-20"
        server = await start_server(OPENAI_API_KEY="k", OPENAI_BASE_URL=upstream.base_url, OPENAI_MODELS=[model])
        async with grpc.aio.insecure_channel(server.address) as channel:
            chat = channel.unary_stream(
                "/pointsman.orchestrator.v1.OrchestratorService/Chat",
                request_serializer=type(chat_request("x")).SerializeToString,
                response_deserializer=lambda b: b,
            )
            for _ in range(3):
                call = chat(chat_request("x", model=model), timeout=30)
                await call.read()  # the start event: the upstream stream is open
                await call.read()
                assert upstream.streams_open == 1
                call.cancel()
                await upstream.wait_for(lambda: upstream.streams_open == 0)
        assert upstream.streams_aborted == 3
        assert upstream.streams_completed == 0


async def test_shutdown_drains_a_stream_in_flight() -> None:
    async with FakeOpenAI() as upstream:
        model = "long-30+slow-20"
        server = await open_server(
            settings(OPENAI_API_KEY="k", OPENAI_BASE_URL=upstream.base_url, OPENAI_MODELS=[model])
        )
        await server.start()
        async with AsyncClient(server.address) as client:
            health_watch = health_pb2_grpc.HealthStub(client.channel).Watch(health_pb2.HealthCheckRequest())
            assert (await health_watch.read()).status == SERVING
            stream = client.orchestrator.Chat(chat_request("x", model=model))
            first = await anext(stream)
            assert first.WhichOneof("event") == "start"
            stopping = asyncio.create_task(server.stop(grace=10))
            assert (await health_watch.read()).status == NOT_SERVING
            health_watch.cancel()  # a watch would otherwise hold the whole grace period
            # New calls are refused while the old stream goes on to its end.
            rest = [e async for e in stream]
            assert rest[-1].WhichOneof("event") == "finish"
            assert text_of(rest).startswith("word1 ")
            await stopping
        assert upstream.streams_completed == 1 and upstream.streams_aborted == 0


async def test_shutdown_cuts_streams_that_outlive_the_grace_period() -> None:
    async with FakeOpenAI() as upstream:
        model = "long-1000+slow-50"
        server = await open_server(
            settings(OPENAI_API_KEY="k", OPENAI_BASE_URL=upstream.base_url, OPENAI_MODELS=[model])
        )
        await server.start()
        async with AsyncClient(server.address) as client:
            stream = client.orchestrator.Chat(chat_request("x", model=model))
            await anext(stream)
            await server.stop(grace=0.2)
            error = await raises(collect(stream))
            assert error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        await upstream.wait_for(lambda: upstream.streams_open == 0)


async def test_calls_beyond_the_concurrency_limit_are_refused_at_once(start_server: Any) -> None:
    server = await start_server(POINTSMAN_MAX_CONCURRENT_CALLS=1)
    async with AsyncClient(server.address, timeout=5) as client:
        watch = aiter(client.firewall.WatchRules(fw.WatchRulesRequest()))
        await anext(watch)  # the snapshot: one call now runs, and stays open
        error = await raises(client.orchestrator.Complete(orch.CompleteRequest(model="builtin", messages=[user("hi")])))
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        await watch.aclose()

        async def answered() -> bool:
            try:
                await client.orchestrator.Complete(orch.CompleteRequest(model="builtin", messages=[user("again")]))
            except PointsmanError:
                return False
            return True

        await eventually(answered)  # the watch is over: there is room again
