"""OpenAI and every OpenAI-compatible server (Docker Model Runner, Ollama,
llama.cpp, vLLM, Groq): requests as the official `openai` SDK builds them."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import openai
from openai._models import FinalRequestOptions

from ..domain.chat import (
    ChatRequest,
    Deployment,
    Finish,
    FinishReason,
    GenerationConfig,
    ImagePart,
    Message,
    ProviderEvent,
    ReasoningDelta,
    ResponseFormat,
    ResponseFormatType,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    Usage,
)
from ..domain.errors import InvalidArgument
from ..domain.provider_options import wire_value
from ..domain.structured_output import DEFAULT_SCHEMA_NAME
from . import upstream_errors
from .sse_lines import LineSplitter
from .upstream_http import UpstreamHttp, sdk_request_target

CHAT_PATH = "/chat/completions"

_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}


class OpenAICompatibleProvider:
    """One endpoint. The SDK client decides the URL and headers; the SDK's own
    retries are off: retrying and falling back is the router's decision, made
    with knowledge of what the client has already received."""

    def __init__(self, *, api_key: str, base_url: str | None, timeout_seconds: float) -> None:
        sdk = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_seconds)
        self._http = UpstreamHttp(lambda: sdk_request_target(sdk, FinalRequestOptions, CHAT_PATH), timeout_seconds)

    def stream(
        self, deployment: Deployment, request: ChatRequest, *, incremental: bool = True
    ) -> AsyncGenerator[ProviderEvent, None]:
        return self._http.call(
            _request_body(deployment.model, request, incremental),
            deployment,
            incremental=incremental,
            parse_stream=functools.partial(_stream_events, request=request),
            parse_answer=_whole_answer_events,
        )

    async def aclose(self) -> None:
        await self._http.aclose()


async def _stream_events(body: AsyncIterator[bytes], request: ChatRequest) -> AsyncIterator[ProviderEvent]:
    """Parses the SSE body. Text deltas that arrived in the same network read
    are merged into one event: nothing waits for them, and a burst of small
    chunks costs one gateway message instead of one each. A stream without
    usage (llama-cpp-python ignores `include_usage`) ends with an estimate."""
    finish: FinishReason | None = None
    usage: Usage | None = None
    splitter = LineSplitter()
    done = False
    chunks_with_text = 0
    async for received in body:
        text: list[str] = []
        for line in splitter.feed(received):
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise upstream_errors.stream_error()
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                # Reasoning servers (vLLM, Ollama, DeepSeek) send it apart from the content.
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    if text:
                        yield TextDelta("".join(text))
                        text = []
                    yield ReasoningDelta(reasoning)
                if delta.get("content"):
                    text.append(delta["content"])
                    chunks_with_text += 1
                for call in delta.get("tool_calls") or ():
                    if text:  # keep text and tool calls in their order
                        yield TextDelta("".join(text))
                        text = []
                    yield _tool_call_delta(call)
                if choice.get("finish_reason"):
                    finish = _FINISH_REASONS.get(choice["finish_reason"], FinishReason.STOP)
        if text:
            yield TextDelta("".join(text))
        if done:
            break
    if finish is None:
        raise upstream_errors.incomplete_error()
    yield usage if usage is not None else estimate_usage(request, chunks_with_text)
    yield Finish(finish)


# What an estimate counts per image: OpenAI's cost of a low-detail image
# (85 tokens) is the floor; a high-detail one costs more, and local servers
# vary. Rough, as the estimate says it is.
IMAGE_TOKENS_ESTIMATE = 85


def estimate_usage(request: ChatRequest, output_chunks: int) -> Usage:
    """Counts for an upstream that sent none. Servers that stream token by
    token (llama.cpp, Ollama, vLLM) send one chunk per token, so the output
    count is close; the prompt's is rough: about four characters a token,
    plus four a message for the chat template's markers, and
    IMAGE_TOKENS_ESTIMATE an image."""
    prompt_chars = sum(len(message.text) for message in request.messages)
    images = sum(len(message.images) for message in request.messages if message.parts)
    input_tokens = -(-prompt_chars // 4) + 4 * len(request.messages) + IMAGE_TOKENS_ESTIMATE * images
    output_tokens = output_chunks
    if request.config.max_tokens:
        output_tokens = min(output_tokens, request.config.max_tokens)
    return Usage(input_tokens, output_tokens, estimated=True)


def _whole_answer_events(answer: dict[str, Any]) -> list[ProviderEvent]:
    """A non-streamed answer as the same events a stream would have produced."""
    choice = answer["choices"][0]
    message = choice.get("message") or {}
    events: list[ProviderEvent] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if reasoning:
        events.append(ReasoningDelta(reasoning))
    if message.get("content"):
        events.append(TextDelta(message["content"]))
    events.extend(_tool_call_delta({**call, "index": i}) for i, call in enumerate(message.get("tool_calls") or ()))
    if answer.get("usage"):
        events.append(_usage(answer["usage"]))
    if not choice.get("finish_reason"):
        raise upstream_errors.incomplete_error()
    events.append(Finish(_FINISH_REASONS.get(choice["finish_reason"], FinishReason.STOP)))
    return events


def _usage(raw: dict[str, Any]) -> Usage:
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        raw.get("prompt_tokens") or 0,
        raw.get("completion_tokens") or 0,
        cached_input_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


def _tool_call_delta(call: dict[str, Any]) -> ToolCallDelta:
    function = call.get("function") or {}
    return ToolCallDelta(
        index=call.get("index", 0),
        id=call.get("id") or "",
        name=function.get("name") or "",
        arguments_delta=function.get("arguments") or "",
    )


def _request_body(model: str, request: ChatRequest, incremental: bool) -> dict[str, Any]:
    config: GenerationConfig = request.config
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [_message(m) for m in request.messages],
    }
    if incremental:
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
    if config.temperature is not None:
        kwargs["temperature"] = config.temperature
    if config.top_p is not None:
        kwargs["top_p"] = config.top_p
    if config.max_tokens is not None:
        kwargs["max_tokens"] = config.max_tokens
    if config.stop:
        kwargs["stop"] = list(config.stop)
    if config.seed is not None:
        kwargs["seed"] = config.seed
    if config.tools:
        kwargs["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            }
            for t in config.tools
        ]
        if config.tool_choice is not None:
            kwargs["tool_choice"] = _tool_choice(config.tool_choice)
        if config.parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = config.parallel_tool_calls
    if config.reasoning is not None:
        if config.reasoning.budget_tokens is not None:
            raise InvalidArgument.one(
                "config.reasoning.budget_tokens", "OpenAI models take a reasoning effort, not a budget"
            )
        if config.reasoning.effort is not None:
            kwargs["reasoning_effort"] = config.reasoning.effort.value
    if config.response_format is not None:
        kwargs["response_format"] = _response_format(config.response_format)
    if request.metadata is not None and request.metadata.end_user_id:
        # `user`, not the newer `safety_identifier`: OpenAI takes both, and
        # the compatible servers (vLLM, Ollama, Groq) know only `user`.
        kwargs["user"] = request.metadata.end_user_id
    if request.provider_options is not None and request.provider_options.openai:
        # Checked against the allow-list, which holds nothing set above.
        kwargs.update(wire_value(request.provider_options.openai))
    return kwargs


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice.mode is ToolChoiceMode.TOOL:
        return {"type": "function", "function": {"name": choice.tool_name}}
    return str(choice.mode.value)


def _response_format(response_format: ResponseFormat) -> dict[str, Any]:
    if response_format.type is not ResponseFormatType.JSON_SCHEMA:
        return {"type": response_format.type.value}
    json_schema: dict[str, Any] = {
        "name": response_format.schema_name or DEFAULT_SCHEMA_NAME,
        "schema": response_format.schema,
    }
    if response_format.strict:
        json_schema["strict"] = True
    return {"type": "json_schema", "json_schema": json_schema}


def _message(message: Message) -> dict[str, Any]:
    content: str | list[dict[str, Any]] = _content_parts(message) if message.parts else message.content
    out: dict[str, Any] = {"role": message.role.value, "content": content}
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            for c in message.tool_calls
        ]
    return out


def _content_parts(message: Message) -> list[dict[str, Any]]:
    """The content as the SDK's array of parts: `content` first, as text;
    images as `image_url` parts, inline ones as base64 data: URLs."""
    parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    for part in message.parts:
        if type(part) is TextPart:
            parts.append({"type": "text", "text": part.text})
        elif type(part) is ImagePart:
            url = part.url or f"data:{part.mime_type};base64,{base64.b64encode(part.data).decode()}"
            image_url: dict[str, Any] = {"url": url}
            if part.detail is not None:
                image_url["detail"] = part.detail.value
            parts.append({"type": "image_url", "image_url": image_url})
    return parts
