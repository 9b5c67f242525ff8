"""The Anthropic path: the real `anthropic` SDK inside the server, talking to a
fake Anthropic Messages server on loopback, including its faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.domain.chat import (
    ChatRequest,
    Deployment,
    Finish,
    FinishReason,
    Message,
    ProviderKind,
    Role,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from pointsman.server.domain.errors import InvalidArgument
from pointsman.server.providers.anthropic import AnthropicProvider, _stream_events
from pointsman.type.v1 import chat_pb2

from fakes.anthropic_upstream import FakeAnthropic
from helpers_pb import chat_request, text_of, user
from server_fixtures import collect, raises

API_KEY = "sk-ant-test-0123456789abcdef0123456789abcdef"
MODELS = [
    "claude-test",
    "tools-all",
    "stop-refusal",
    "stop-pause_turn",
    "stop-brand_new_reason",
    "fault-500",
    "fault-529",
    "fault-429",
    "fault-401",
    "fault-malformed",
    "fault-cut",
    "fault-stream-error",
    "fault-early-eof",
    "fault-stall",
    "long-1000+slow-20",
]
# Short enough for the stall test, long enough for everything else on a busy machine.
UPSTREAM_TIMEOUT_SECONDS = 1.0


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest_asyncio.fixture
async def gateway(start_server: Any, upstream: FakeAnthropic) -> AsyncIterator[AsyncClient]:
    server = await start_server(
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=upstream.base_url,
        ANTHROPIC_MODELS=MODELS,
        POINTSMAN_UPSTREAM_TIMEOUT_SECONDS=UPSTREAM_TIMEOUT_SECONDS,
        # These tests look at how upstream events map to deltas: no output hold-back.
        FIREWALL_OUTPUT_HOLDBACK_CHARS=0,
    )
    async with AsyncClient(server.address, timeout=10, retry=None) as client:
        yield client


def weather_tool() -> chat_pb2.Tool:
    tool = chat_pb2.Tool(name="get_weather", description="weather by city")
    tool.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    return tool


def tool_deltas(events: list[orch.ChatResponse]) -> list[orch.ToolCallDelta]:
    return [e.tool_call_delta for e in events if e.WhichOneof("event") == "tool_call_delta"]


# --------------------------------------------------------------------------- answers


async def test_chat_streams_text_usage_and_finish(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    events = await collect(gateway.orchestrator.Chat(chat_request("hello from grpc", model="claude-test")))
    assert events[0].start.deployment.provider == orch.PROVIDER_ANTHROPIC
    assert events[0].start.deployment.endpoint == upstream.base_url
    assert [e.text_delta.text for e in events[1:-2]] == ["Echo: ", "hello ", "from ", "grpc"]
    usage = events[-2].usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (3, 4, 7)
    assert events[-1].finish.reason == orch.FINISH_REASON_STOP
    sent = upstream.last_request
    assert sent is not None
    assert sent["model"] == "claude-test" and sent["stream"] is True
    assert sent["max_tokens"] == 4096  # Anthropic requires it; the request had none
    assert sent["messages"] == [{"role": "user", "content": "hello from grpc"}]
    assert upstream.streams_completed == 1


async def test_the_key_goes_in_the_sdks_auth_header(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    await collect(gateway.orchestrator.Chat(chat_request("hi", model="claude-test")))
    # anthropic>=2 sends the key as a bearer token (the API accepts it and x-api-key alike).
    assert upstream.auth_headers == [f"Bearer {API_KEY}"]
    assert upstream.last_headers["anthropic-version"]


async def test_complete_is_one_non_streaming_call(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    answer = await gateway.orchestrator.Complete(
        orch.CompleteRequest(model="claude-test", messages=[user("one two three")])
    )
    assert answer.message.role == chat_pb2.ROLE_ASSISTANT
    assert answer.message.content == "Echo: one two three"
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (3, 4)
    assert answer.finish.reason == orch.FINISH_REASON_STOP
    assert upstream.last_request is not None and "stream" not in upstream.last_request
    assert upstream.requests_total == 1 and upstream.streams_completed == 0  # a JSON answer, not SSE


async def test_system_prompts_and_parameters_reach_the_upstream(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    request = orch.ChatRequest(
        model="claude-test",
        messages=[
            chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content="Be terse."),
            user("first question"),
            chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content="Answer in English."),
            user("second question"),
        ],
        config=chat_pb2.GenerationConfig(max_tokens=50, stop=["zzz"], temperature=0.5, top_p=0.9, seed=7),
    )
    events = await collect(gateway.orchestrator.Chat(request))
    assert text_of(events) == "Echo: first questionsecond question"  # the fake echoes the merged turn
    sent = upstream.last_request
    assert sent is not None
    assert sent["system"] == "Be terse.\n\nAnswer in English."
    assert sent["max_tokens"] == 50 and sent["stop_sequences"] == ["zzz"]
    # Consecutive user messages (once the system one is lifted out) become one turn.
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "first question"}, {"type": "text", "text": "second question"}],
        }
    ]
    # No Anthropic equivalent in the SDK's API version: never sent (the fake would answer 400).
    assert not {"temperature", "top_p", "seed"} & sent.keys()


async def test_max_tokens_ends_with_length(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    events = await collect(gateway.orchestrator.Chat(chat_request("a b c d e", model="claude-test", max_tokens=2)))
    assert text_of(events) == "Echo: a "
    assert events[-2].usage.output_tokens == 2
    assert events[-1].finish.reason == orch.FINISH_REASON_LENGTH


async def test_stop_sequence_ends_with_stop(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    events = await collect(
        gateway.orchestrator.Chat(chat_request("alpha STOP beta", model="claude-test", stop=["STOP"]))
    )
    assert text_of(events) == "Echo: alpha "
    assert events[-1].finish.reason == orch.FINISH_REASON_STOP
    assert upstream.last_request is not None and upstream.last_request["stop_sequences"] == ["STOP"]


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("stop-refusal", orch.FINISH_REASON_CONTENT_FILTER),
        ("stop-pause_turn", orch.FINISH_REASON_STOP),
        ("stop-brand_new_reason", orch.FINISH_REASON_STOP),
    ],
)
async def test_stop_reasons_map_to_finish_reasons(gateway: AsyncClient, model: str, reason: int) -> None:
    events = await collect(gateway.orchestrator.Chat(chat_request("x", model=model)))
    assert events[-1].finish.reason == reason
    answer = await gateway.orchestrator.Complete(orch.CompleteRequest(model=model, messages=[user("x")]))
    assert answer.finish.reason == reason


# --------------------------------------------------------------------------- tools


async def test_tools_go_in_and_tool_call_deltas_come_out(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    request = orch.ChatRequest(
        model="claude-test", messages=[user("Paris?")], config=chat_pb2.GenerationConfig(tools=[weather_tool()])
    )
    events = await collect(gateway.orchestrator.Chat(request))
    assert upstream.last_request is not None
    assert upstream.last_request["tools"] == [
        {
            "name": "get_weather",
            "description": "weather by city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    deltas = tool_deltas(events)
    assert (deltas[0].index, deltas[0].id, deltas[0].name) == (0, "toolu_1", "get_weather")
    assert len(deltas) > 2  # the arguments arrive in fragments, as streamed
    assert all(d.index == 0 and not d.id and not d.name for d in deltas[1:])
    assert "".join(d.arguments_delta for d in deltas) == '{"echo": "Paris?"}'
    assert events[-1].finish.reason == orch.FINISH_REASON_TOOL_CALLS


async def test_several_tool_calls_after_text_are_numbered_from_zero(gateway: AsyncClient) -> None:
    other = chat_pb2.Tool(name="get_time")  # no schema: Anthropic still needs an object one
    request = orch.ChatRequest(
        model="tools-all", messages=[user("Paris?")], config=chat_pb2.GenerationConfig(tools=[weather_tool(), other])
    )
    events = await collect(gateway.orchestrator.Chat(request))
    assert text_of(events) == "Calling the tools."
    # Content blocks 1 and 2 are tool calls 0 and 1.
    starts = [(d.index, d.id, d.name) for d in tool_deltas(events) if d.id]
    assert starts == [(0, "toolu_1", "get_weather"), (1, "toolu_2", "get_time")]
    answer = await gateway.orchestrator.Complete(
        orch.CompleteRequest(model="tools-all", messages=[user("Paris?")], config=request.config)
    )
    assert [(c.id, c.name, c.arguments_json) for c in answer.message.tool_calls] == [
        ("toolu_1", "get_weather", '{"echo": "Paris?"}'),
        ("toolu_2", "get_time", '{"echo": "Paris?"}'),
    ]
    assert answer.message.content == "Calling the tools."
    assert answer.finish.reason == orch.FINISH_REASON_TOOL_CALLS


async def test_a_tool_round_trip_becomes_tool_use_and_tool_result_blocks(
    gateway: AsyncClient, upstream: FakeAnthropic
) -> None:
    history = [
        user("Weather and time in Paris?"),
        chat_pb2.ChatMessage(
            role=chat_pb2.ROLE_ASSISTANT,
            content="Let me look.",
            tool_calls=[
                chat_pb2.ToolCall(id="toolu_a", name="get_weather", arguments_json='{"city": "Paris"}'),
                chat_pb2.ToolCall(id="toolu_b", name="get_time", arguments_json=""),
            ],
        ),
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="toolu_a", content="18C sunny"),
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="toolu_b", content="14:00"),
    ]
    request = orch.ChatRequest(
        model="claude-test", messages=history, config=chat_pb2.GenerationConfig(tools=[weather_tool()])
    )
    events = await collect(gateway.orchestrator.Chat(request))
    assert text_of(events) == "Echo: 18C sunny 14:00"
    assert events[-1].finish.reason == orch.FINISH_REASON_STOP
    assert upstream.last_request is not None
    assert upstream.last_request["messages"] == [
        {"role": "user", "content": "Weather and time in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
            ],
        },
        {
            "role": "user",  # consecutive tool results: one user turn
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "14:00"},
            ],
        },
    ]


async def test_tool_results_come_first_in_a_merged_user_turn(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    history = [
        user("Paris?"),
        chat_pb2.ChatMessage(
            role=chat_pb2.ROLE_ASSISTANT,
            tool_calls=[chat_pb2.ToolCall(id="toolu_a", name="get_weather", arguments_json='{"city": "Paris"}')],
        ),
        user("And be quick."),  # a user message sent before the tool result
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="toolu_a", content="18C"),
    ]
    events = await collect(gateway.orchestrator.Chat(orch.ChatRequest(model="claude-test", messages=history)))
    assert events[-1].finish.reason == orch.FINISH_REASON_STOP  # the fake, like the API, rejects text first
    assert upstream.last_request is not None
    assert upstream.last_request["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_a", "content": "18C"},
            {"type": "text", "text": "And be quick."},
        ],
    }


async def test_tool_arguments_that_are_not_a_json_object_are_invalid(
    gateway: AsyncClient, upstream: FakeAnthropic
) -> None:
    history = [
        user("Paris?"),
        chat_pb2.ChatMessage(
            role=chat_pb2.ROLE_ASSISTANT,
            tool_calls=[chat_pb2.ToolCall(id="toolu_a", name="get_weather", arguments_json="{not json")],
        ),
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_TOOL, tool_call_id="toolu_a", content="18C"),
    ]
    error = await raises(collect(gateway.orchestrator.Chat(orch.ChatRequest(model="claude-test", messages=history))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["messages[1].tool_calls[0].arguments_json"]
    assert upstream.requests_total == 0  # refused before any upstream call


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("model", ["fault-500", "fault-529"])
async def test_upstream_5xx_is_unavailable_with_retry_info(gateway: AsyncClient, model: str) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(chat_request("x", model=model))))
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
    assert API_KEY[-8:] not in str(error) and API_KEY[-8:] not in str(error.metadata)
    assert "x-api-key" not in error.message  # the upstream's own body stays out


async def test_malformed_event_never_crashes_the_server(gateway: AsyncClient) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(chat_request("one two three", model="fault-malformed"))))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "UPSTREAM_MALFORMED"
    # The server is fine afterwards.
    events = await collect(gateway.orchestrator.Chat(chat_request("still here", model="claude-test")))
    assert text_of(events) == "Echo: still here"


async def test_stream_cut_mid_way_ends_with_unavailable(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    events: list[orch.ChatResponse] = []

    async def read() -> None:
        async for event in gateway.orchestrator.Chat(chat_request("a b c d e f", model="fault-cut")):
            events.append(event)

    error = await raises(read())
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "UPSTREAM_CONNECTION_LOST"
    assert events and events[0].WhichOneof("event") == "start"  # the client saw the partial answer
    assert text_of(events) == "Echo: a "
    assert all(e.WhichOneof("event") != "finish" for e in events)
    assert upstream.streams_cut == 1


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        ("fault-stream-error", "UPSTREAM_STREAM_ERROR"),  # an `error` event mid-stream
        ("fault-early-eof", "UPSTREAM_INCOMPLETE"),  # the body ends without message_stop
        ("fault-stall", "UPSTREAM_TIMEOUT"),  # nothing more arrives
    ],
)
async def test_a_stream_that_fails_after_the_first_token(gateway: AsyncClient, model: str, reason: str) -> None:
    events: list[orch.ChatResponse] = []

    async def read() -> None:
        async for event in gateway.orchestrator.Chat(chat_request("a b c d e f", model=model)):
            events.append(event)

    error = await raises(read())
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == reason
    assert text_of(events).startswith("Echo: ")
    assert all(e.WhichOneof("event") != "finish" for e in events)


async def test_a_non_streaming_answer_without_a_stop_reason_is_incomplete(gateway: AsyncClient) -> None:
    error = await raises(
        gateway.orchestrator.Complete(orch.CompleteRequest(model="fault-early-eof", messages=[user("x")]))
    )
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.reason == "UPSTREAM_INCOMPLETE"


async def test_client_cancel_closes_the_upstream_stream(gateway: AsyncClient, upstream: FakeAnthropic) -> None:
    for _ in range(2):
        stream = gateway.orchestrator.Chat(chat_request("x", model="long-1000+slow-20"))
        assert (await anext(stream)).WhichOneof("event") == "start"
        assert (await anext(stream)).WhichOneof("event") == "text_delta"
        assert upstream.streams_open == 1
        await stream.aclose()  # cancels the call
        await upstream.wait_for(lambda: upstream.streams_open == 0)
    assert upstream.streams_aborted == 2
    assert upstream.streams_completed == 0


# --------------------------------------------------------------------------- the provider alone


async def test_provider_close_mid_answer_closes_the_http_stream(upstream: FakeAnthropic) -> None:
    provider = AnthropicProvider(api_key=API_KEY, base_url=upstream.base_url, timeout_seconds=5)
    deployment = Deployment("anthropic/x", ProviderKind.ANTHROPIC, "long-1000+slow-20")
    try:
        events = provider.stream(deployment, ChatRequest("x", [Message(Role.USER, "hi")]))
        await anext(events)
        assert upstream.streams_open == 1
        await events.aclose()  # type: ignore[attr-defined]
        await upstream.wait_for(lambda: upstream.streams_open == 0)
        assert upstream.streams_aborted == 1
    finally:
        await provider.aclose()


async def test_provider_needs_a_user_or_assistant_message(upstream: FakeAnthropic) -> None:
    provider = AnthropicProvider(api_key=API_KEY, base_url=upstream.base_url, timeout_seconds=5)
    deployment = Deployment("anthropic/x", ProviderKind.ANTHROPIC, "claude-test")
    try:
        with pytest.raises(InvalidArgument, match="at least one user or assistant message"):
            await anext(provider.stream(deployment, ChatRequest("x", [Message(Role.SYSTEM, "only a system")])))
        assert upstream.requests_total == 0
    finally:
        await provider.aclose()


async def test_sse_parsing_survives_any_chunking() -> None:
    # Real networks split frames anywhere, multi-byte characters and CRLF included.
    text_block = {"type": "text", "text": ""}
    tool_block = {"type": "tool_use", "id": "toolu_z", "name": "f", "input": {}}
    frames = [
        ("message_start", {"type": "message_start", "message": {"usage": {"input_tokens": 7, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": text_block}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Grüße 👋"}},
        ),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": tool_block}),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
            },
        ),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    body = "".join(f"event: {name}\r\ndata: {json.dumps(data, ensure_ascii=False)}\r\n\r\n" for name, data in frames)
    raw = body.encode()
    for size in (1, 2, 3, 7, len(raw)):

        async def pieces(size: int = size) -> AsyncIterator[bytes]:
            for start in range(0, len(raw), size):
                yield raw[start : start + size]

        events = [event async for event in _stream_events(pieces())]
        assert events == [
            TextDelta("Grüße 👋"),
            ToolCallDelta(0, "toolu_z", "f", ""),
            ToolCallDelta(0, "", "", '{"a": 1}'),
            Usage(7, 9),
            Finish(FinishReason.TOOL_CALLS),
        ], size
