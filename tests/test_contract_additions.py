"""Issue 16's contract additions, end to end: a real server with the real SDKs
inside, talking to the fake OpenAI and Anthropic upstreams; each test asserts
what the upstream received and what the client got."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.domain.chat import ReasoningDelta, TextDelta
from pointsman.server.providers.anthropic import _stream_events
from pointsman.type.v1 import chat_pb2

from fakes.anthropic_upstream import FakeAnthropic
from fakes.openai_upstream import FakeOpenAI
from helpers_pb import text_of, user
from server_fixtures import collect, raises

OPENAI_KEY = "sk-test-0123456789abcdef0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef0123456789abcdef"
CITY_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest_asyncio.fixture
async def openai_upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def anthropic_upstream() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest_asyncio.fixture
async def gateway(
    start_server: Any, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> AsyncIterator[AsyncClient]:
    server = await start_server(
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=openai_upstream.base_url,
        OPENAI_MODELS=["gpt-test"],
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_BASE_URL=anthropic_upstream.base_url,
        ANTHROPIC_MODELS=["claude-test"],
    )
    async with AsyncClient(server.address, timeout=10, retry=None) as client:
        yield client


def schema_format(schema: dict[str, Any], *, name: str = "city", strict: bool = True) -> chat_pb2.ResponseFormat:
    response_format = chat_pb2.ResponseFormat(
        type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, schema_name=name, strict=strict
    )
    response_format.schema.update(schema)
    return response_format


def asking(model: str, text: str, response_format: chat_pb2.ResponseFormat) -> orch.ChatRequest:
    config = chat_pb2.GenerationConfig(response_format=response_format)
    return orch.ChatRequest(model=model, messages=[user(text)], config=config)


def finish_of(events: list[orch.ChatResponse]) -> orch.ChatFinish:
    assert events[-1].WhichOneof("event") == "finish"
    return events[-1].finish


# --------------------------------------------------------------------------- structured output


async def test_openai_gets_the_json_schema_and_the_answer_is_checked(
    gateway: AsyncClient, openai_upstream: FakeOpenAI
) -> None:
    request = asking("gpt-test", '{"city": "Paris"}', schema_format(CITY_SCHEMA))
    events = await collect(gateway.orchestrator.Chat(request))
    assert text_of(events) == '{"city": "Paris"}'
    finish = finish_of(events)
    assert finish.HasField("schema_valid") and finish.schema_valid
    sent = openai_upstream.last_request
    assert sent is not None
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": CITY_SCHEMA, "strict": True},
    }


async def test_an_answer_that_breaks_the_schema_is_reported_as_such(gateway: AsyncClient) -> None:
    events = await collect(gateway.orchestrator.Chat(asking("gpt-test", '{"city": 3}', schema_format(CITY_SCHEMA))))
    assert text_of(events) == '{"city": 3}'  # passed on as the model wrote it
    finish = finish_of(events)
    assert finish.HasField("schema_valid") and not finish.schema_valid


async def test_json_object_mode_on_openai_and_complete(gateway: AsyncClient, openai_upstream: FakeOpenAI) -> None:
    json_object = chat_pb2.ResponseFormat(type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    request = asking("gpt-test", "not json at all", json_object)
    answer = await gateway.orchestrator.Complete(
        orch.CompleteRequest(model=request.model, messages=request.messages, config=request.config)
    )
    assert answer.message.content == "not json at all"
    assert answer.finish.HasField("schema_valid") and not answer.finish.schema_valid
    assert openai_upstream.last_request is not None
    assert openai_upstream.last_request["response_format"] == {"type": "json_object"}


async def test_anthropic_gets_an_output_format(gateway: AsyncClient, anthropic_upstream: FakeAnthropic) -> None:
    events = await collect(
        gateway.orchestrator.Chat(asking("claude-test", '{"city": "Rome"}', schema_format(CITY_SCHEMA, strict=False)))
    )
    assert text_of(events) == '{"city": "Rome"}'
    assert finish_of(events).schema_valid
    sent = anthropic_upstream.last_request
    assert sent is not None
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": CITY_SCHEMA}}
    json_object = chat_pb2.ResponseFormat(type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_OBJECT)
    await collect(gateway.orchestrator.Chat(asking("claude-test", "{}", json_object)))
    assert anthropic_upstream.last_request is not None
    any_object = {"type": "json_schema", "schema": {"type": "object"}}
    assert anthropic_upstream.last_request["output_config"] == {"format": any_object}


async def test_text_format_and_no_format_are_not_checked(gateway: AsyncClient, openai_upstream: FakeOpenAI) -> None:
    text = chat_pb2.ResponseFormat(type=chat_pb2.RESPONSE_FORMAT_TYPE_TEXT)
    events = await collect(gateway.orchestrator.Chat(asking("gpt-test", "hello", text)))
    assert text_of(events) == "Echo: hello"
    assert not finish_of(events).HasField("schema_valid")
    assert openai_upstream.last_request is not None
    assert openai_upstream.last_request["response_format"] == {"type": "text"}


async def test_the_builtin_model_answers_json_when_asked(gateway: AsyncClient) -> None:
    events = await collect(gateway.orchestrator.Chat(asking("builtin", "hello there", schema_format(CITY_SCHEMA))))
    assert text_of(events) == '{"answer": "hello there"}'
    assert not finish_of(events).schema_valid  # no `city`: reported, not hidden
    events = await collect(gateway.orchestrator.Chat(asking("builtin", '{"city": "Oslo"}', schema_format(CITY_SCHEMA))))
    assert finish_of(events).schema_valid


@pytest.mark.parametrize(
    ("response_format", "field"),
    [
        (schema_format({"type": "no-such-type"}), "config.response_format.schema"),
        (schema_format({"properties": {"city": {"minLength": "three"}}}), "config.response_format.schema"),
        (chat_pb2.ResponseFormat(type=chat_pb2.RESPONSE_FORMAT_TYPE_JSON_SCHEMA), "config.response_format.schema"),
        (schema_format(CITY_SCHEMA, name="has spaces"), "config.response_format.schema_name"),
        (chat_pb2.ResponseFormat(type=99), "config.response_format.type"),  # type: ignore[arg-type]
    ],
)
async def test_a_bad_response_format_is_invalid_argument_naming_the_field(
    gateway: AsyncClient, openai_upstream: FakeOpenAI, response_format: chat_pb2.ResponseFormat, field: str
) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(asking("gpt-test", "hi", response_format))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == [field]
    assert openai_upstream.requests_total == 0  # refused before any upstream call


# --------------------------------------------------------------------------- tool choice


def tools_request(model: str, **config: Any) -> orch.ChatRequest:
    weather = chat_pb2.Tool(name="get_weather", description="weather by city")
    weather.parameters.update({"type": "object", "properties": {"city": {"type": "string"}}})
    clock = chat_pb2.Tool(name="get_time", description="time by city")
    generation = chat_pb2.GenerationConfig(tools=[weather, clock], **config)
    return orch.ChatRequest(model=model, messages=[user("Paris")], config=generation)


def called(events: list[orch.ChatResponse]) -> list[str]:
    return [
        e.tool_call_delta.name for e in events if e.WhichOneof("event") == "tool_call_delta" and e.tool_call_delta.name
    ]


NAMED = chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_TOOL, tool_name="get_time")


async def test_openai_gets_tool_choice_and_parallel_calls(gateway: AsyncClient, openai_upstream: FakeOpenAI) -> None:
    events = await collect(
        gateway.orchestrator.Chat(tools_request("gpt-test", tool_choice=NAMED, parallel_tool_calls=False))
    )
    assert called(events) == ["get_time"]
    sent = openai_upstream.last_request
    assert sent is not None
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}
    assert sent["parallel_tool_calls"] is False
    for mode, wire in [
        (chat_pb2.TOOL_CHOICE_MODE_AUTO, "auto"),
        (chat_pb2.TOOL_CHOICE_MODE_NONE, "none"),
        (chat_pb2.TOOL_CHOICE_MODE_REQUIRED, "required"),
    ]:
        events = await collect(
            gateway.orchestrator.Chat(tools_request("gpt-test", tool_choice=chat_pb2.ToolChoice(mode=mode)))
        )
        assert openai_upstream.last_request is not None
        assert openai_upstream.last_request["tool_choice"] == wire
        assert "parallel_tool_calls" not in openai_upstream.last_request  # unset: the provider's default
        assert called(events) == ([] if wire == "none" else ["get_weather"])


async def test_anthropic_gets_tool_choice_and_parallel_calls(
    gateway: AsyncClient, anthropic_upstream: FakeAnthropic
) -> None:
    events = await collect(
        gateway.orchestrator.Chat(tools_request("claude-test", tool_choice=NAMED, parallel_tool_calls=False))
    )
    assert called(events) == ["get_time"]
    assert anthropic_upstream.last_request is not None
    assert anthropic_upstream.last_request["tool_choice"] == {
        "type": "tool",
        "name": "get_time",
        "disable_parallel_tool_use": True,
    }
    await collect(gateway.orchestrator.Chat(tools_request("claude-test", parallel_tool_calls=False)))
    assert anthropic_upstream.last_request["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    required = chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_REQUIRED)
    await collect(gateway.orchestrator.Chat(tools_request("claude-test", tool_choice=required)))
    assert anthropic_upstream.last_request["tool_choice"] == {"type": "any"}
    none = chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_NONE)
    events = await collect(gateway.orchestrator.Chat(tools_request("claude-test", tool_choice=none)))
    assert anthropic_upstream.last_request["tool_choice"] == {"type": "none"}
    assert called(events) == []


async def test_the_builtin_model_follows_tool_choice(gateway: AsyncClient) -> None:
    assert called(await collect(gateway.orchestrator.Chat(tools_request("builtin", tool_choice=NAMED)))) == ["get_time"]
    none = chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_NONE)
    events = await collect(gateway.orchestrator.Chat(tools_request("builtin", tool_choice=none)))
    assert called(events) == [] and text_of(events).endswith("Paris")
    directives = orch.ChatRequest(
        model="builtin",
        messages=[user('call tool a {"x": 1} call tool b {"y": 2}')],
        config=chat_pb2.GenerationConfig(parallel_tool_calls=False),
    )
    assert called(await collect(gateway.orchestrator.Chat(directives))) == ["a"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (
            tools_request(
                "gpt-test", tool_choice=chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_TOOL, tool_name="nope")
            ),
            "config.tool_choice.tool_name",
        ),
        (
            orch.ChatRequest(
                model="gpt-test",
                messages=[user("hi")],
                config=chat_pb2.GenerationConfig(
                    tool_choice=chat_pb2.ToolChoice(mode=chat_pb2.TOOL_CHOICE_MODE_REQUIRED)
                ),
            ),
            "config.tool_choice.mode",
        ),
        (tools_request("gpt-test", tool_choice=chat_pb2.ToolChoice(mode=42)), "config.tool_choice.mode"),  # type: ignore[arg-type]
    ],
)
async def test_a_bad_tool_choice_is_invalid_argument_naming_the_field(
    gateway: AsyncClient, openai_upstream: FakeOpenAI, request_: orch.ChatRequest, field: str
) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(request_)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == [field]
    assert openai_upstream.requests_total == 0


# --------------------------------------------------------------------------- usage details


@pytest.mark.parametrize("streamed", [True, False])
async def test_cached_and_reasoning_tokens_reach_the_usage(
    gateway: AsyncClient, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic, streamed: bool
) -> None:
    for upstream in (openai_upstream, anthropic_upstream):
        upstream.cached_tokens, upstream.reasoning_tokens = 2, 1
    for model in ("gpt-test", "claude-test"):
        messages = [user("one two three")]
        if streamed:
            events = await collect(gateway.orchestrator.Chat(orch.ChatRequest(model=model, messages=messages)))
            usage = next(e.usage for e in events if e.WhichOneof("event") == "usage")
        else:
            usage = (await gateway.orchestrator.Complete(orch.CompleteRequest(model=model, messages=messages))).usage
        assert (usage.cached_input_tokens, usage.reasoning_tokens) == (2, 1), model
    # Anthropic counts cache reads apart from input_tokens; the gateway's input includes them.
    assert usage.input_tokens == 3 + 2


# --------------------------------------------------------------------------- reasoning


def reasoning_request(model: str, reasoning: chat_pb2.Reasoning, **config: Any) -> orch.ChatRequest:
    generation = chat_pb2.GenerationConfig(reasoning=reasoning, **config)
    return orch.ChatRequest(model=model, messages=[user("think")], config=generation)


async def test_openai_gets_an_effort_and_its_reasoning_streams_apart(
    gateway: AsyncClient, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.reasoning_text = "Let me think."
    high = chat_pb2.Reasoning(effort=chat_pb2.REASONING_EFFORT_HIGH)
    events = await collect(gateway.orchestrator.Chat(reasoning_request("gpt-test", high)))
    reasoning = [e.reasoning_delta.text for e in events if e.WhichOneof("event") == "reasoning_delta"]
    # Guarded as the answer is: the open word waits for what follows it.
    assert "".join(reasoning) == "Let me think."
    assert text_of(events) == "Echo: think"  # never mixed into the answer
    assert openai_upstream.last_request is not None
    assert openai_upstream.last_request["reasoning_effort"] == "high"


async def test_complete_returns_the_reasoning_apart_from_the_answer(
    gateway: AsyncClient, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.reasoning_text = "Let me think."
    high = chat_pb2.Reasoning(effort=chat_pb2.REASONING_EFFORT_HIGH)
    request = reasoning_request("gpt-test", high)
    response = await gateway.orchestrator.Complete(
        orch.CompleteRequest(model=request.model, messages=request.messages, config=request.config)
    )
    assert response.reasoning == "Let me think."
    assert response.message.content == "Echo: think"


async def test_anthropic_gets_a_thinking_budget_or_an_effort(
    gateway: AsyncClient, anthropic_upstream: FakeAnthropic
) -> None:
    budget = chat_pb2.Reasoning(budget_tokens=2048)
    await collect(gateway.orchestrator.Chat(reasoning_request("claude-test", budget)))
    assert anthropic_upstream.last_request is not None
    assert anthropic_upstream.last_request["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    low = chat_pb2.Reasoning(effort=chat_pb2.REASONING_EFFORT_LOW)
    await collect(gateway.orchestrator.Chat(reasoning_request("claude-test", low)))
    assert anthropic_upstream.last_request["output_config"] == {"effort": "low"}
    assert "thinking" not in anthropic_upstream.last_request


async def test_anthropic_thinking_deltas_become_reasoning_events() -> None:
    frames = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 1, "output_tokens": 0}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm."}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Yes."}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 5}},
        {"type": "message_stop"},
    ]

    async def body() -> AsyncIterator[bytes]:
        for frame in frames:
            yield f"data: {json.dumps(frame)}\n\n".encode()

    events = [event async for event in _stream_events(body())]
    assert events[:2] == [ReasoningDelta("Hmm."), TextDelta("Yes.")]


@pytest.mark.parametrize(
    ("model", "reasoning", "field"),
    [
        ("gpt-test", chat_pb2.Reasoning(budget_tokens=2048), "config.reasoning.budget_tokens"),
        ("claude-test", chat_pb2.Reasoning(budget_tokens=8192), "config.reasoning.budget_tokens"),  # >= max_tokens
        ("gpt-test", chat_pb2.Reasoning(budget_tokens=10), "config.reasoning.budget_tokens"),
        ("gpt-test", chat_pb2.Reasoning(effort=7), "config.reasoning.effort"),  # type: ignore[arg-type]
    ],
)
async def test_a_reasoning_setting_a_provider_cannot_honour_is_invalid_argument(
    gateway: AsyncClient, model: str, reasoning: chat_pb2.Reasoning, field: str
) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(reasoning_request(model, reasoning))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == [field]
