"""The OpenAI-compatible path: the real `openai` SDK inside the server, talking
to a fake OpenAI server on loopback, including its faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest_asyncio

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.type.v1 import chat_pb2
from pointsman.type.v1.firewall_pb2 import ACTION_REDACT

from fakes.openai_upstream import FakeOpenAI
from helpers_pb import chat_request, text_of
from server_fixtures import collect, raises

API_KEY = "sk-test-0123456789abcdef0123456789abcdef"
MODELS = [
    "gpt-test",
    "fault-500",
    "fault-429",
    "fault-401",
    "fault-malformed",
    "fault-cut+slow-20",
    "fault-stream-error+slow-20",
    "fault-stall",
    "no-usage",
]


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def gateway(start_server: Any, upstream: FakeOpenAI) -> AsyncIterator[AsyncClient]:
    server = await start_server(OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=upstream.base_url, OPENAI_MODELS=MODELS)
    async with AsyncClient(server.address, timeout=10, retry=None) as client:
        yield client


async def test_chat_streams_through_the_sdk(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    events = await collect(
        gateway.orchestrator.Chat(chat_request("hello from grpc", model="gpt-test", temperature=0.5, seed=7))
    )
    assert events[0].start.deployment.provider == orch.PROVIDER_OPENAI
    assert events[0].start.deployment.endpoint == upstream.base_url
    assert text_of(events) == "Echo: hello from grpc"
    assert events[-2].usage.total_tokens > 0 and not events[-2].usage.estimated
    assert events[-1].finish.reason == orch.FINISH_REASON_STOP
    sent = upstream.last_request
    assert sent is not None
    assert sent["model"] == "gpt-test" and sent["temperature"] == 0.5 and sent["seed"] == 7 and sent["stream"] is True
    assert upstream.auth_headers[-1] == f"Bearer {API_KEY}"


async def test_a_stream_without_usage_ends_with_an_estimate(gateway: AsyncClient) -> None:
    # The fake streams one word a chunk, as llama.cpp streams one token a chunk.
    prompt = "one two three four five six seven eight"  # 39 characters
    events = await collect(gateway.orchestrator.Chat(chat_request(prompt, model="no-usage")))
    assert text_of(events) == f"Echo: {prompt}"
    usage = events[-2].usage
    assert usage.estimated
    assert usage.output_tokens == len(f"Echo: {prompt}".split())  # one per chunk with text
    assert usage.input_tokens == 10 + 4  # ceil(39 / 4), plus four for the one message
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    capped = await collect(gateway.orchestrator.Chat(chat_request(prompt, model="no-usage", max_tokens=3)))
    assert capped[-2].usage.output_tokens <= 3


async def test_tool_calls_pass_through(gateway: AsyncClient) -> None:
    tool = chat_pb2.Tool(name="get_weather", description="weather by city")
    tool.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    answer = await gateway.orchestrator.Complete(
        orch.CompleteRequest(
            model="gpt-test",
            messages=[chat_request("Paris?").messages[0]],
            config=chat_pb2.GenerationConfig(tools=[tool]),
        )
    )
    assert answer.finish.reason == orch.FINISH_REASON_TOOL_CALLS
    assert answer.message.tool_calls[0].name == "get_weather"
    assert answer.message.tool_calls[0].arguments_json == '{"echo": "Paris?"}'


async def test_upstream_500_is_unavailable_with_retry_info(gateway: AsyncClient) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(chat_request("x", model="fault-500"))))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "UPSTREAM_UNAVAILABLE"
    assert error.retry_delay is not None and error.retry_delay > 0


async def test_upstream_429_passes_retry_after_on(gateway: AsyncClient) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(chat_request("x", model="fault-429"))))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "UPSTREAM_RATE_LIMITED"
    assert error.retry_delay == 1.0


async def test_upstream_auth_failure_does_not_leak_the_key(gateway: AsyncClient) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(chat_request("x", model="fault-401"))))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "UPSTREAM_AUTH_FAILED"
    assert API_KEY not in str(error) and API_KEY[-8:] not in str(error.metadata)


async def test_malformed_chunk_never_crashes_the_server(gateway: AsyncClient) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(chat_request("one two three", model="fault-malformed"))))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.code != grpc.StatusCode.INTERNAL
    # The server is fine afterwards.
    assert (
        text_of(await collect(gateway.orchestrator.Chat(chat_request("still here", model="gpt-test"))))
        == "Echo: still here"
    )


async def test_stream_cut_mid_way_ends_with_unavailable(gateway: AsyncClient) -> None:
    events: list[orch.ChatResponse] = []

    async def read() -> None:
        async for event in gateway.orchestrator.Chat(chat_request("a b c d e f", model="fault-cut+slow-20")):
            events.append(event)

    error = await raises(read())
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert events and events[0].WhichOneof("event") == "start"  # the client saw the partial answer
    assert all(e.WhichOneof("event") != "finish" for e in events)


async def test_mid_stream_error_frame_ends_the_answer_marked_incomplete(gateway: AsyncClient) -> None:
    events: list[orch.ChatResponse] = []

    async def read() -> None:
        # Frames 20 ms apart: the text arrives before the error frame, in a read of its own.
        async for event in gateway.orchestrator.Chat(chat_request("a b c d e f", model="fault-stream-error+slow-20")):
            events.append(event)

    error = await raises(read())
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "UPSTREAM_STREAM_ERROR"
    assert error.metadata["incomplete"] == "true"
    assert text_of(events)  # the part that arrived before the error frame


async def test_stall_mid_stream_ends_at_the_client_deadline_and_closes_the_upstream(
    gateway: AsyncClient, upstream: FakeOpenAI
) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(chat_request("a b c d", model="fault-stall"), timeout=0.5)))
    assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await upstream.wait_for(lambda: upstream.streams_open == 0 and upstream.streams_aborted == 1)


async def test_stall_mid_stream_hits_the_read_timeout_without_a_client_deadline(
    start_server: Any, upstream: FakeOpenAI
) -> None:
    server = await start_server(
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_MODELS=["fault-stall"],
        POINTSMAN_UPSTREAM_TIMEOUT_SECONDS=0.5,
    )
    async with AsyncClient(server.address, timeout=30, retry=None) as client:
        error = await raises(collect(client.orchestrator.Chat(chat_request("a b c d", model="fault-stall"))))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.metadata["incomplete"] == "true"
    await upstream.wait_for(lambda: upstream.streams_open == 0)


async def test_personal_data_is_redacted_before_it_reaches_the_upstream(
    gateway: AsyncClient, upstream: FakeOpenAI
) -> None:
    events = await collect(
        gateway.orchestrator.Chat(chat_request("Mail jane.doe@example.com about the invoice", model="gpt-test"))
    )
    sent = upstream.last_request
    assert sent is not None
    assert "jane.doe@example.com" not in json.dumps(sent)
    assert "invoice" in sent["messages"][0]["content"]
    notices = [e.firewall_notice for e in events if e.HasField("firewall_notice")]
    assert notices and notices[0].verdict.action == ACTION_REDACT
    assert "jane.doe@example.com" not in text_of(events)  # the echo shows what the model was sent
