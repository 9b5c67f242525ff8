"""Traces: a real server exporting over OTLP/gRPC to a fake collector, a
real client whose call carries a W3C traceparent, and a fake OpenAI upstream
that receives the client span's traceparent."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from opentelemetry.proto.trace.v1 import trace_pb2

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from fakes.openai_upstream import FakeOpenAI
from fakes.otlp_collector import FakeCollector
from helpers_pb import user
from server_fixtures import eventually

COMPLETE = "/pointsman.orchestrator.v1.OrchestratorService/Complete"


@pytest_asyncio.fixture
async def collector() -> AsyncIterator[FakeCollector]:
    async with FakeCollector() as running:
        yield running


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def test_a_call_and_its_upstream_request_continue_the_callers_trace(
    start_server: Any, collector: FakeCollector, upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export every 50 ms, not 5 s
    server = await start_server(
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_SERVICE_NAME="gateway-under-test",
        OPENAI_API_KEY="test",
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_MODELS=["gpt-test"],
    )
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{parent_id}-01"
    async with grpc.aio.insecure_channel(server.address) as channel:
        complete = channel.unary_unary(
            COMPLETE,
            request_serializer=orch.CompleteRequest.SerializeToString,
            response_deserializer=orch.CompleteResponse.FromString,
        )
        request = orch.CompleteRequest(model="gpt-test", messages=[user("trace me")])
        answer = await complete(request, metadata=(("traceparent", traceparent),), timeout=10)
    assert answer.message.content == "Echo: trace me"

    def ours() -> list[trace_pb2.Span]:
        return [span for span in collector.spans if span.trace_id.hex() == trace_id]

    await eventually(lambda: len(ours()) >= 2)
    server_span = next(s for s in ours() if s.kind == trace_pb2.Span.SPAN_KIND_SERVER)
    client_span = next(s for s in ours() if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT)
    assert server_span.name == COMPLETE and server_span.parent_span_id.hex() == parent_id
    assert client_span.name == "chat gpt-test" and client_span.parent_span_id == server_span.span_id
    attributes = {a.key: a.value for a in client_span.attributes}
    assert attributes["gen_ai.request.model"].string_value == "gpt-test"
    assert attributes["gen_ai.usage.output_tokens"].int_value == answer.usage.output_tokens
    server_attributes = {a.key: a.value for a in server_span.attributes}
    assert server_attributes["rpc.grpc.status_code"].string_value == "OK"
    assert collector.service_names == {"gateway-under-test"}
    # The upstream was told which span called it.
    sent = upstream.last_headers.get("traceparent", "")
    assert sent.split("-")[1:3] == [trace_id, client_span.span_id.hex()]


async def test_a_failed_call_is_an_error_span_and_without_a_traceparent_a_new_trace_begins(
    start_server: Any, collector: FakeCollector, upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    server = await start_server(
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OPENAI_API_KEY="test",
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_MODELS=["fault-400"],
        POINTSMAN_UPSTREAM_RETRIES=0,
    )
    async with grpc.aio.insecure_channel(server.address) as channel:
        complete = channel.unary_unary(
            COMPLETE,
            request_serializer=orch.CompleteRequest.SerializeToString,
            response_deserializer=orch.CompleteResponse.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await complete(orch.CompleteRequest(model="fault-400", messages=[user("bad")]), timeout=10)

    await eventually(lambda: any(s.kind == trace_pb2.Span.SPAN_KIND_SERVER for s in collector.spans))
    await eventually(lambda: any(s.kind == trace_pb2.Span.SPAN_KIND_CLIENT for s in collector.spans))
    server_span = next(s for s in collector.spans if s.kind == trace_pb2.Span.SPAN_KIND_SERVER)
    client_span = next(s for s in collector.spans if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT)
    assert not server_span.parent_span_id  # no traceparent: the trace starts here
    assert server_span.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert client_span.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert client_span.trace_id == server_span.trace_id
