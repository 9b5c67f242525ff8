"""Proves the fake upstreams are faithful: the real openai and anthropic SDKs parse them."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import pytest_asyncio
from anthropic.types import MessageParam, ToolParam
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from fakes.anthropic_upstream import FakeAnthropic
from fakes.openai_upstream import FakeOpenAI

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello big world"}]
ANT_USER: list[MessageParam] = [{"role": "user", "content": "hello big world"}]
OPENAI_TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
]
ANTHROPIC_TOOLS: list[ToolParam] = [{"name": "lookup", "input_schema": {"type": "object", "properties": {}}}]


@pytest_asyncio.fixture
async def oai_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture(params=["httpx", "aiohttp"])
async def oai(request: pytest.FixtureRequest, oai_fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    """An SDK client on each of its transports: httpx (default) and DefaultAioHttpClient."""
    http_client = openai.DefaultAioHttpClient() if request.param == "aiohttp" else None
    client = openai.AsyncOpenAI(base_url=oai_fake.base_url, api_key="sk-test", max_retries=0, http_client=http_client)
    yield client
    await client.close()


@pytest_asyncio.fixture
async def ant_fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest_asyncio.fixture
async def ant(ant_fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=ant_fake.base_url, api_key="ak-test", max_retries=0)
    yield client
    await client.close()


# --------------------------------------------------------------------------- OpenAI


async def test_openai_non_streaming(oai: openai.AsyncOpenAI, oai_fake: FakeOpenAI) -> None:
    r = await oai.chat.completions.create(model="gpt-fake", messages=USER)
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == "Echo: hello big world"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (3, 4, 7)
    assert oai_fake.last_request is not None
    assert oai_fake.last_request["messages"] == USER
    assert oai_fake.auth_headers == ["Bearer sk-test"]


async def test_openai_streaming_text_and_usage(oai: openai.AsyncOpenAI, oai_fake: FakeOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-fake", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert text == ["Echo: ", "hello ", "big ", "world"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
    await oai_fake.wait_for(lambda: oai_fake.streams_completed == 1 and oai_fake.streams_open == 0)


async def test_openai_streaming_tool_call(oai: openai.AsyncOpenAI) -> None:
    async with oai.chat.completions.stream(model="gpt-fake", messages=USER, tools=OPENAI_TOOLS) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "call_1"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"echo": "hello big world"}


async def test_openai_non_streaming_tool_call(oai: openai.AsyncOpenAI) -> None:
    r = await oai.chat.completions.create(model="gpt-fake", messages=USER, tools=OPENAI_TOOLS)
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.choices[0].message.content is None
    assert r.choices[0].message.tool_calls is not None
    call = r.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.id == "call_1"
    assert json.loads(call.function.arguments) == {"echo": "hello big world"}


async def test_openai_max_tokens_and_long(oai: openai.AsyncOpenAI) -> None:
    r = await oai.chat.completions.create(model="long-10", messages=USER, max_completion_tokens=3)
    assert r.choices[0].message.content == "word1 word2 word3 "
    assert r.choices[0].finish_reason == "length"


async def test_openai_models(oai: openai.AsyncOpenAI) -> None:
    assert [m.id async for m in oai.models.list()] == ["gpt-fake", "gpt-fake-mini"]


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("fault-429", openai.RateLimitError),
        ("fault-500", openai.InternalServerError),
        ("fault-401", openai.AuthenticationError),
    ],
)
async def test_openai_http_faults(oai: openai.AsyncOpenAI, model: str, error: type[openai.APIStatusError]) -> None:
    with pytest.raises(error) as info:
        await oai.chat.completions.create(model=model, messages=USER)
    assert info.value.body is not None  # the SDK parsed the OpenAI error body
    if model == "fault-429":
        assert info.value.response.headers["retry-after"] == "1"
        assert info.value.response.headers["retry-after-ms"] == "1000"


async def test_openai_server_wide_fault_for_n_requests(oai: openai.AsyncOpenAI, oai_fake: FakeOpenAI) -> None:
    oai_fake.set_fault("fault-500", times=1)
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(model="gpt-fake", messages=USER)
    r = await oai.chat.completions.create(model="gpt-fake", messages=USER)
    assert r.choices[0].message.content == "Echo: hello big world"


async def test_openai_cut(oai: openai.AsyncOpenAI, oai_fake: FakeOpenAI) -> None:
    text: list[str | None] = []
    with pytest.raises(openai.APIConnectionError):
        stream = await oai.chat.completions.create(model="fault-cut", messages=USER, stream=True)
        async for chunk in stream:
            text.append(chunk.choices[0].delta.content)
    assert text == ["", "Echo: ", "hello "]  # role chunk, then two content chunks, no [DONE]
    await oai_fake.wait_for(lambda: oai_fake.streams_cut == 1 and oai_fake.streams_open == 0)


async def test_openai_stall_times_out_and_counts_abort(oai: openai.AsyncOpenAI, oai_fake: FakeOpenAI) -> None:
    stream = await oai.with_options(timeout=0.5).chat.completions.create(
        model="fault-stall", messages=USER, stream=True
    )
    seen = 0
    with pytest.raises(openai.APITimeoutError):
        async for _ in stream:
            seen += 1
    assert seen == 3
    await stream.close()
    await oai_fake.wait_for(lambda: oai_fake.streams_aborted == 1 and oai_fake.streams_open == 0)
    assert oai_fake.streams_completed == 0


async def test_openai_closing_stream_early_aborts_upstream(oai: openai.AsyncOpenAI, oai_fake: FakeOpenAI) -> None:
    stream = await oai.chat.completions.create(model="long-100+slow-50", messages=USER, stream=True)
    await stream.__anext__()
    await oai_fake.wait_for(lambda: oai_fake.streams_open == 1)
    await stream.close()
    await oai_fake.wait_for(lambda: oai_fake.streams_open == 0)
    assert (oai_fake.streams_aborted, oai_fake.streams_completed) == (1, 0)


async def test_openai_malformed_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(model="fault-malformed", messages=USER, stream=True)
    with pytest.raises(ValueError):  # json.JSONDecodeError from the SDK's SSE parser
        async for _ in stream:
            pass


# --------------------------------------------------------------------------- Anthropic


async def test_anthropic_non_streaming(ant: anthropic.AsyncAnthropic, ant_fake: FakeAnthropic) -> None:
    m = await ant.messages.create(model="claude-fake", max_tokens=100, system="be terse", messages=ANT_USER)
    assert m.content[0].type == "text" and m.content[0].text == "Echo: hello big world"
    assert m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 4)  # system words count
    assert ant_fake.last_request is not None and ant_fake.last_request["system"] == "be terse"


async def test_anthropic_streaming_text(ant: anthropic.AsyncAnthropic, ant_fake: FakeAnthropic) -> None:
    async with ant.messages.stream(model="claude-fake", max_tokens=100, messages=ANT_USER) as stream:
        text = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert text == ["Echo: ", "hello ", "big ", "world"]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    await ant_fake.wait_for(lambda: ant_fake.streams_completed == 1 and ant_fake.streams_open == 0)


async def test_anthropic_event_sequence(ant: anthropic.AsyncAnthropic) -> None:
    stream = await ant.messages.create(model="claude-fake", max_tokens=100, messages=ANT_USER, stream=True)
    kinds = [e.type async for e in stream]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the ping frame is sent but the SDK drops it


async def test_anthropic_tool_use(ant: anthropic.AsyncAnthropic) -> None:
    async with ant.messages.stream(
        model="claude-fake", max_tokens=100, messages=ANT_USER, tools=ANTHROPIC_TOOLS
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use"
    assert (block.id, block.name, block.input) == ("toolu_1", "lookup", {"echo": "hello big world"})


async def test_anthropic_max_tokens(ant: anthropic.AsyncAnthropic) -> None:
    async with ant.messages.stream(model="claude-fake", max_tokens=2, messages=ANT_USER) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert final.content[0].type == "text" and final.content[0].text == "Echo: hello "
    assert final.usage.output_tokens == 2


async def test_anthropic_stop_sequence(ant: anthropic.AsyncAnthropic) -> None:
    m = await ant.messages.create(model="claude-fake", max_tokens=100, stop_sequences=["big"], messages=ANT_USER)
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "big"
    assert m.content[0].type == "text" and m.content[0].text == "Echo: hello "


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("fault-429", anthropic.RateLimitError),
        ("fault-500", anthropic.InternalServerError),
        ("fault-401", anthropic.AuthenticationError),
    ],
)
async def test_anthropic_http_faults(
    ant: anthropic.AsyncAnthropic, model: str, error: type[anthropic.APIStatusError]
) -> None:
    with pytest.raises(error):
        await ant.messages.create(model=model, max_tokens=10, messages=ANT_USER)


async def test_anthropic_stall_counts_abort(ant: anthropic.AsyncAnthropic, ant_fake: FakeAnthropic) -> None:
    # This SDK lets the transport's timeout escape unwrapped from a stream, so accept both.
    with pytest.raises((anthropic.APITimeoutError, httpx2.TimeoutException)):
        async with ant.with_options(timeout=0.5).messages.stream(
            model="fault-stall", max_tokens=100, messages=ANT_USER
        ) as stream:
            async for _ in stream.text_stream:
                pass
    await ant_fake.wait_for(lambda: ant_fake.streams_aborted == 1 and ant_fake.streams_open == 0)


async def test_anthropic_answers_tool_results_in_text(ant: anthropic.AsyncAnthropic) -> None:
    history: list[MessageParam] = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_9", "name": "lookup", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"}]},
    ]
    m = await ant.messages.create(model="claude-fake", max_tokens=100, messages=history, tools=ANTHROPIC_TOOLS)
    assert m.stop_reason == "end_turn"
    assert m.content[0].type == "text" and m.content[0].text == "Echo: sunny"


@pytest.mark.parametrize(
    "history",
    [
        # a tool_result with no tool_use before it
        [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}],
        # a tool_use left unanswered
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
            {"role": "user", "content": "no result"},
        ],
        # text before the tool results in a user turn
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}]},
            {"role": "user", "content": [{"type": "text", "text": "x"},
                                         {"type": "tool_result", "tool_use_id": "toolu_1", "content": "r"}]},
        ],
        # an empty text block
        [{"role": "user", "content": [{"type": "text", "text": ""}]}],
    ],
)  # fmt: skip
async def test_anthropic_rejects_what_the_api_rejects(ant: anthropic.AsyncAnthropic, history: list[Any]) -> None:
    with pytest.raises(anthropic.BadRequestError):
        await ant.messages.create(model="claude-fake", max_tokens=10, messages=history)


@pytest.mark.parametrize("tool", [{"name": "t", "input_schema": {}}, {"name": "", "input_schema": {"type": "object"}}])
async def test_anthropic_rejects_bad_tools(ant: anthropic.AsyncAnthropic, tool: Any) -> None:
    with pytest.raises(anthropic.BadRequestError):
        await ant.messages.create(model="claude-fake", max_tokens=10, messages=ANT_USER, tools=[tool])


async def test_anthropic_rejects_sampling_parameters(ant: anthropic.AsyncAnthropic) -> None:
    # The SDK no longer has these arguments; raw bodies can still carry them.
    with pytest.raises(anthropic.BadRequestError, match="temperature: Extra inputs are not permitted"):
        await ant.messages.create(
            model="claude-fake", max_tokens=10, messages=ANT_USER, extra_body={"temperature": 0.5}
        )


async def test_anthropic_forced_stop_reason(ant: anthropic.AsyncAnthropic) -> None:
    m = await ant.messages.create(model="claude-fake+stop-refusal", max_tokens=10, messages=ANT_USER)
    assert m.stop_reason == "refusal"
    async with ant.messages.stream(model="stop-pause_turn", max_tokens=10, messages=ANT_USER) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "pause_turn"


async def test_anthropic_all_tools_after_text(ant: anthropic.AsyncAnthropic) -> None:
    tools: list[ToolParam] = [*ANTHROPIC_TOOLS, {"name": "other", "input_schema": {"type": "object"}}]
    async with ant.messages.stream(model="tools-all", max_tokens=100, messages=ANT_USER, tools=tools) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert [(b.id, b.name) for b in final.content if b.type == "tool_use"] == [
        ("toolu_1", "lookup"),
        ("toolu_2", "other"),
    ]
    m = await ant.messages.create(model="tools-all", max_tokens=100, messages=ANT_USER, tools=tools)
    assert [b.type for b in m.content] == ["text", "tool_use", "tool_use"]


async def test_anthropic_early_eof(ant: anthropic.AsyncAnthropic) -> None:
    stream = await ant.messages.create(model="fault-early-eof", max_tokens=100, messages=ANT_USER, stream=True)
    kinds = [e.type async for e in stream]
    assert kinds[-1] == "content_block_stop" and "message_stop" not in kinds
    m = await ant.messages.create(model="fault-early-eof", max_tokens=100, messages=ANT_USER)
    assert m.stop_reason is None


# --------------------------------------------------------------------------- standalone mode


@pytest.mark.parametrize(("module", "suffix"), [("openai_upstream.py", "/v1"), ("anthropic_upstream.py", "")])
async def test_standalone_mode(module: str, suffix: str) -> None:
    script = Path(__file__).parent / "fakes" / module
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), "--port", "0", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=10)).decode().strip()
        assert line.startswith("listening on http://127.0.0.1:") and line.endswith(suffix)
        base_url = line.removeprefix("listening on ")
        if suffix:
            async with openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0) as client:
                r = await client.chat.completions.create(model="gpt-fake", messages=USER)
            assert r.choices[0].message.content == "Echo: hello big world"
        else:
            async with anthropic.AsyncAnthropic(base_url=base_url, api_key="k") as aclient:
                m = await aclient.messages.create(model="claude-fake", max_tokens=9, messages=ANT_USER)
            assert m.stop_reason == "end_turn"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
