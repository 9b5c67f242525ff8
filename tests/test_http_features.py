"""The HTTP door's structured output, tool choice, reasoning and firewall
notices, end to end: a real server on port 0, the fake OpenAI upstream behind
it, the real `openai` SDK as the client (sync, async, streaming,
`chat.completions.parse` with a Pydantic model)."""

from __future__ import annotations

import asyncio
import json
import random
import string
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
import yaml
from pydantic import BaseModel
from test_http_door import TOOL, UPSTREAM_KEY, api_key, base_url

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.server import PointsmanServer
from pointsman.server.backends.shared.cache import decode_answer, encode_answer
from pointsman.server.domain.chat import FinishReason, Usage
from pointsman.server.domain.ports.cache import CachedAnswer
from pointsman.type.v1 import chat_pb2

from fakes.anthropic_upstream import FakeAnthropic
from fakes.openai_upstream import FakeOpenAI

USER = [{"role": "user", "content": "hi"}]
EMAIL = "jane.doe@example.com"
SECRET = "ghp_" + "".join(random.Random(16).choice(string.ascii_letters + string.digits) for _ in range(36))


class City(BaseModel):
    name: str
    population: int


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(first_byte_delay_s=5.0) as fake:
        yield fake


@pytest_asyncio.fixture
async def door(start_server: Any, tmp_path: Path, upstream: FakeOpenAI) -> tuple[PointsmanServer, str]:
    fake = {"endpoint": "fake", "model": "gpt-fake"}
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        yaml.safe_dump(
            {
                "defaults": {"retry": {"retries": 0}},
                "endpoints": {
                    "fake": {"provider": "openai", "base_url": upstream.base_url, "api_key_env": "OPENAI_API_KEY"}
                },
                "models": {
                    "gpt": {"deployments": [fake]},
                    "cached": {"cache_ttl_seconds": 60, "deployments": [fake]},
                },
            }
        )
    )
    server: PointsmanServer = await start_server(
        POINTSMAN_ROUTES_FILE=str(routes), OPENAI_API_KEY=UPSTREAM_KEY, POINTSMAN_HTTP_ADDRESS="127.0.0.1:0"
    )
    return server, await api_key(server)


@pytest_asyncio.fixture
async def sdk(door: tuple[PointsmanServer, str]) -> AsyncIterator[openai.AsyncOpenAI]:
    server, key = door
    async with openai.AsyncOpenAI(base_url=base_url(server), api_key=key, max_retries=0, timeout=20) as client:
        yield client


async def _bad_request(call: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        await call
    assert caught.value.status_code == 400 and caught.value.type == "invalid_request_error"
    return caught.value


# -- structured output ----------------------------------------------------------


async def test_parse_with_a_pydantic_model_gets_a_strict_schema_and_a_parsed_answer(
    sdk: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    # The fake answers a JSON request with the user's text: here, the city as JSON.
    completion = await sdk.chat.completions.parse(
        model="gpt",
        messages=[{"role": "user", "content": '{"name": "Paris", "population": 2100000}'}],
        response_format=City,
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == City(name="Paris", population=2100000)
    sent = upstream.last_request
    assert sent is not None and sent["response_format"]["type"] == "json_schema"
    schema = sent["response_format"]["json_schema"]
    assert schema["name"] == "City" and schema["strict"] is True
    assert schema["schema"]["properties"]["population"] == {"title": "Population", "type": "integer"}
    # The gateway checked the answer against the schema, and says so.
    assert completion.pointsman == {"schema_valid": True}  # type: ignore[attr-defined]


async def test_json_object_and_an_answer_that_misses_the_schema(sdk: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": '{"a": 1}'}], response_format={"type": "json_object"}
    )
    assert json.loads(completion.choices[0].message.content or "") == {"a": 1}
    assert upstream.last_request is not None and upstream.last_request["response_format"] == {"type": "json_object"}
    assert completion.pointsman == {"schema_valid": True}  # type: ignore[attr-defined]
    # Streamed, with an answer that is JSON but not the schema's: the finish chunk says so.
    stream = await sdk.chat.completions.create(
        model="gpt",
        messages=[{"role": "user", "content": '{"name": 5}'}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": City.model_json_schema()}},
        stream=True,
    )
    chunks = [c async for c in stream]
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert last.pointsman == {"schema_valid": False}  # type: ignore[attr-defined]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == '{"name": 5}'


async def test_an_invalid_schema_or_format_is_a_400_naming_the_param(sdk: openai.AsyncOpenAI) -> None:
    bad_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    error = await _bad_request(
        sdk.chat.completions.create(model="gpt", messages=USER, response_format=bad_schema)  # type: ignore[arg-type]
    )
    assert error.param == "response_format.json_schema.schema" and "not valid JSON Schema" in error.message
    bad_name = {"type": "json_schema", "json_schema": {"name": "no spaces", "schema": {"type": "object"}}}
    error = await _bad_request(
        sdk.chat.completions.create(model="gpt", messages=USER, response_format=bad_name)  # type: ignore[arg-type]
    )
    assert error.param == "response_format.json_schema.name"
    for response_format, param in [
        ({"type": "xml"}, "response_format.type"),
        ("json", "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "response_format.json_schema.schema"),
    ]:
        error = await _bad_request(
            sdk.chat.completions.create(model="gpt", messages=USER, response_format=response_format)  # type: ignore[arg-type]
        )
        assert error.param == param, response_format


# -- tool choice -------------------------------------------------------------------


async def test_tool_choice_and_parallel_tool_calls_reach_the_upstream(
    sdk: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    other = {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
    tools: Any = [TOOL, other]
    named = await sdk.chat.completions.create(
        model="gpt",
        messages=[{"role": "user", "content": "go"}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "other"}},
        parallel_tool_calls=False,
    )
    calls = named.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "other"  # type: ignore[union-attr]
    sent = upstream.last_request
    assert sent is not None
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "other"}}
    assert sent["parallel_tool_calls"] is False
    # "none": the model answers in words, tools or not.
    stream = await sdk.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "talk"}], tools=tools, tool_choice="none", stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Echo: talk" and upstream.last_request is not None
    assert upstream.last_request["tool_choice"] == "none"
    required = await sdk.chat.completions.create(model="gpt", messages=USER, tools=tools, tool_choice="required")  # type: ignore[arg-type]
    assert required.choices[0].finish_reason == "tool_calls"
    assert upstream.last_request["tool_choice"] == "required"


async def test_bad_tool_choices_are_400s_naming_the_param(sdk: openai.AsyncOpenAI) -> None:
    unknown = {"type": "function", "function": {"name": "missing"}}
    error = await _bad_request(
        sdk.chat.completions.create(model="gpt", messages=USER, tools=[TOOL], tool_choice=unknown)  # type: ignore[arg-type, list-item]
    )
    assert error.param == "tool_choice.function.name"
    error = await _bad_request(
        sdk.chat.completions.create(model="gpt", messages=USER, tool_choice="required")  # type: ignore[arg-type]
    )
    assert error.param == "tool_choice" and "needs tools" in error.message
    for choice in ("sometimes", {"type": "function"}, 5):
        error = await _bad_request(
            sdk.chat.completions.create(model="gpt", messages=USER, tools=[TOOL], tool_choice=choice)  # type: ignore[arg-type, list-item]
        )
        assert error.param == "tool_choice"
    error = await _bad_request(
        sdk.chat.completions.create(model="gpt", messages=USER, tools=[TOOL], parallel_tool_calls="no")  # type: ignore[arg-type, list-item]
    )
    assert error.param == "parallel_tool_calls"


# -- reasoning -----------------------------------------------------------------------


async def test_reasoning_effort_reaches_the_upstream_and_reasoning_comes_back_apart(
    door: tuple[PointsmanServer, str], sdk: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    upstream.reasoning_text = "First, the greeting. "
    upstream.cached_tokens, upstream.reasoning_tokens = 1, 2
    stream = await sdk.chat.completions.create(
        model="gpt",
        messages=[{"role": "user", "content": "think"}],
        reasoning_effort="high",
        max_completion_tokens=500,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert reasoning == "First, the greeting. "
    assert "".join(d.content or "" for d in deltas) == "Echo: think"  # never mixed into the answer
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1
    assert usage.completion_tokens_details is not None and usage.completion_tokens_details.reasoning_tokens == 2
    sent = upstream.last_request
    assert sent is not None and sent["reasoning_effort"] == "high" and sent["max_tokens"] == 500

    # The sync SDK, whole: the reasoning is the message's `reasoning_content`.
    server, key = door
    client = openai.OpenAI(base_url=base_url(server), api_key=key, max_retries=0, timeout=20)
    completion = await asyncio.to_thread(
        lambda: client.chat.completions.create(model="gpt", messages=USER, reasoning_effort="low")  # type: ignore[arg-type]
    )
    client.close()
    message = completion.choices[0].message
    assert message.content == "Echo: hi"
    assert message.reasoning_content == "First, the greeting. "  # type: ignore[attr-defined]
    assert completion.usage is not None and completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 2
    assert upstream.last_request is not None and upstream.last_request["reasoning_effort"] == "low"


async def test_bad_reasoning_values_and_a_budget_openai_cannot_honour(sdk: openai.AsyncOpenAI) -> None:
    error = await _bad_request(
        sdk.chat.completions.create(model="gpt", messages=USER, reasoning_effort="extreme")  # type: ignore[arg-type]
    )
    assert error.param == "reasoning_effort"
    # A thinking budget (OpenRouter's `reasoning.max_tokens`): OpenAI models take an effort only,
    # refused as the gRPC path refuses `config.reasoning.budget_tokens`.
    error = await _bad_request(
        sdk.chat.completions.create(model="gpt", messages=USER, extra_body={"reasoning": {"max_tokens": 2048}})  # type: ignore[arg-type]
    )
    assert error.param == "reasoning.max_tokens" and "effort, not a budget" in error.message
    error = await _bad_request(
        sdk.chat.completions.create(model="gpt", messages=USER, extra_body={"reasoning": {"max_tokens": 10}})  # type: ignore[arg-type]
    )
    assert error.param == "reasoning.max_tokens" and "at least 1024" in error.message


# -- the firewall at the door --------------------------------------------------------


async def test_a_redacted_prompt_is_told_in_headers_and_the_pointsman_object(
    sdk: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    messages: Any = [{"role": "user", "content": f"mail {EMAIL} now"}]
    raw = await sdk.chat.completions.with_raw_response.create(model="gpt", messages=messages)
    completion = raw.parse()
    assert EMAIL not in (completion.choices[0].message.content or "")
    assert raw.headers["x-pointsman-firewall-input"] == "redact"
    assert raw.headers["x-pointsman-firewall-input-categories"] == "pii"
    decision = raw.headers["x-pointsman-firewall-input-decision"]
    assert decision.startswith("decisions/")
    [notice] = completion.pointsman["firewall"]  # type: ignore[attr-defined]
    assert notice["direction"] == "input" and notice["action"] == "redact" and notice["decision"] == decision
    assert notice["findings"][0]["type"] == "EMAIL_ADDRESS" and EMAIL not in json.dumps(notice)

    # Streamed: the same headers, and the first chunk carries the notice.
    async with sdk.chat.completions.with_streaming_response.create(
        model="gpt", messages=messages, stream=True
    ) as response:
        assert response.headers["x-pointsman-firewall-input"] == "redact"
        chunks = [c async for c in await response.parse()]
    assert chunks[0].pointsman["firewall"][0]["direction"] == "input"  # type: ignore[attr-defined]
    assert all(getattr(c, "pointsman", None) is None for c in chunks[1:])


async def test_a_blocked_prompt_is_a_403_naming_the_decision(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": f"key {SECRET}"}])
    error = caught.value
    assert error.status_code == 403 and error.code == "content_blocked"
    body: Any = error.body
    assert body["pointsman"]["categories"] == ["secret"] and body["pointsman"]["decision"].startswith("decisions/")
    assert SECRET not in json.dumps(body)


async def test_the_output_firewall_guards_reasoning_apart_from_the_answer(
    sdk: openai.AsyncOpenAI, upstream: FakeOpenAI
) -> None:
    upstream.reasoning_text = f"Their address is {EMAIL} as given. "
    stream = await sdk.chat.completions.create(model="gpt", messages=USER, stream=True)
    chunks = [c async for c in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert EMAIL not in reasoning and reasoning.startswith("Their address is ") and "as given." in reasoning
    assert "".join(d.content or "" for d in deltas) == "Echo: hi"
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finish.choices[0].finish_reason == "stop"
    [notice] = finish.pointsman["firewall"]  # type: ignore[attr-defined]
    assert (notice["direction"], notice["part"], notice["action"]) == ("output", "reasoning", "redact")

    # Whole: redacted the same way.
    completion = await sdk.chat.completions.create(model="gpt", messages=USER)
    assert completion.choices[0].message.reasoning_content == reasoning  # type: ignore[attr-defined]

    # A secret in the reasoning cuts the answer, as it would in the answer.
    upstream.reasoning_text = f"I will use {SECRET} to log in. "
    stream = await sdk.chat.completions.create(model="gpt", messages=USER, stream=True)
    chunks = [c async for c in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert SECRET not in "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert not "".join(d.content or "" for d in deltas)
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finish.choices[0].finish_reason == "content_filter"
    assert finish.pointsman["firewall"][0]["action"] == "block"  # type: ignore[attr-defined]


async def test_grpc_notices_say_when_they_are_about_reasoning(
    door: tuple[PointsmanServer, str], upstream: FakeOpenAI
) -> None:
    server, _ = door
    upstream.reasoning_text = f"Mail {EMAIL} later. "
    request = orch.ChatRequest(model="gpt", messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="hi")])
    async with AsyncClient(server.address, timeout=10) as client:
        events = [e async for e in client.orchestrator.Chat(request)]
    notices = [e.firewall_notice for e in events if e.WhichOneof("event") == "firewall_notice"]
    assert [(n.reasoning, n.verdict.findings[0].type) for n in notices] == [(True, "EMAIL_ADDRESS")]
    reasoning = "".join(e.reasoning_delta.text for e in events if e.WhichOneof("event") == "reasoning_delta")
    assert EMAIL not in reasoning and reasoning.startswith("Mail ")


# -- the response cache keeps the reasoning -------------------------------------------


async def test_a_cached_answer_replays_its_reasoning(sdk: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    upstream.reasoning_text = "Short thought. "
    first = await sdk.chat.completions.create(model="cached", messages=USER)
    upstream.reasoning_text = "A different thought. "
    again = await sdk.chat.completions.create(model="cached", messages=USER)
    assert again.choices[0].message.reasoning_content == "Short thought. "  # type: ignore[attr-defined]
    assert first.choices[0].message.reasoning_content == "Short thought. "  # type: ignore[attr-defined]
    stream = await sdk.chat.completions.create(model="cached", messages=USER, stream=True)
    deltas = [c.choices[0].delta async for c in stream if c.choices]
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "Short thought. "
    assert upstream.requests_total == 1


def test_the_cache_encoding_keeps_reasoning_and_token_details() -> None:
    answer = CachedAnswer("d", "text", (), Usage(10, 5, False, 0.0, 3, 2), FinishReason.STOP, "thought")
    decoded, expires = decode_answer(encode_answer(answer, 123))
    assert (decoded, expires) == (answer, 123)
    plain = CachedAnswer("d", "text", (), Usage(10, 5))  # older entries, without the new keys, still read
    assert decode_answer(encode_answer(plain, 1))[0] == plain


# -- bad bodies ------------------------------------------------------------------------


async def test_every_bad_feature_value_is_listed_at_once(door: tuple[PointsmanServer, str]) -> None:
    server, key = door
    body = {
        "model": "gpt",
        "messages": USER,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}, "strict": "yes"}},
        "tool_choice": 5,
        "reasoning_effort": 3,
        "reasoning": "lots",
    }
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base_url(server)}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        ) as response:
            assert response.status == 400
            error = (await response.json())["error"]
    for param in ("response_format.json_schema.schema", "strict", "tool_choice", "reasoning_effort", "reasoning"):
        assert param in error["message"]
    assert error["param"] == "response_format.json_schema.schema"


async def test_anthropic_gets_a_budget_and_an_effort_through_the_door(start_server: Any) -> None:
    async with FakeAnthropic() as anthropic:
        server: PointsmanServer = await start_server(
            ANTHROPIC_API_KEY="sk-ant-test-0123456789abcdef0123456789abcdef",
            ANTHROPIC_BASE_URL=anthropic.base_url,
            ANTHROPIC_MODELS=["claude-test"],
            POINTSMAN_HTTP_ADDRESS="127.0.0.1:0",
        )
        key = await api_key(server)
        async with openai.AsyncOpenAI(base_url=base_url(server), api_key=key, max_retries=0, timeout=20) as client:
            await client.chat.completions.create(
                model="claude-test",
                messages=USER,
                extra_body={"reasoning": {"max_tokens": 2048}},  # type: ignore[arg-type]
            )
            assert anthropic.last_request is not None
            assert anthropic.last_request["thinking"] == {"type": "enabled", "budget_tokens": 2048}
            await client.chat.completions.create(model="claude-test", messages=USER, reasoning_effort="medium")  # type: ignore[arg-type]
            assert anthropic.last_request["output_config"] == {"effort": "medium"}
            # A budget at or above max_tokens is what Anthropic cannot take.
            error = await _bad_request(
                client.chat.completions.create(
                    model="claude-test",
                    messages=USER,  # type: ignore[arg-type]
                    max_completion_tokens=1500,
                    extra_body={"reasoning": {"max_tokens": 2048}},
                )
            )
            assert error.param == "reasoning.max_tokens" and "below max_tokens" in error.message
