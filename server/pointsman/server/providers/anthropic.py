"""Anthropic's Messages API through the official `anthropic` SDK."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeAlias

import anthropic
from anthropic._models import FinalRequestOptions

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
    Role,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    Usage,
)
from ..domain.errors import InvalidArgument
from ..domain.provider_options import wire_value
from . import upstream_errors
from .sse_lines import LineSplitter
from .upstream_http import UpstreamHttp, sdk_request_target

MESSAGES_PATH = "/v1/messages"
# Anthropic requires max_tokens on every request; this is what a request without one gets.
DEFAULT_MAX_TOKENS = 4096

_STOP_REASONS = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
    # The server paused a long turn (server tools); the client may send it back to continue.
    "pause_turn": FinishReason.STOP,
}


class AnthropicProvider:
    """One endpoint. The SDK client decides the URL and headers (the API
    version among them); the SDK's own retries are off: retrying and falling
    back is the router's decision, made with knowledge of what the client has
    already received."""

    def __init__(self, *, api_key: str, base_url: str | None, timeout_seconds: float) -> None:
        sdk = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_seconds)
        self._http = UpstreamHttp(lambda: sdk_request_target(sdk, FinalRequestOptions, MESSAGES_PATH), timeout_seconds)

    def stream(
        self, deployment: Deployment, request: ChatRequest, *, incremental: bool = True
    ) -> AsyncGenerator[ProviderEvent, None]:
        return self._http.call(
            request_body(deployment.model, request, incremental),
            deployment,
            incremental=incremental,
            parse_stream=_stream_events,
            parse_answer=_whole_answer_events,
        )

    async def aclose(self) -> None:
        await self._http.aclose()


# --------------------------------------------------------------------------- answers


async def _stream_events(body: AsyncIterator[bytes]) -> AsyncIterator[ProviderEvent]:
    """Maps the Messages SSE stream. Dispatches on each event's `type` field,
    which repeats its `event:` line."""
    counts: dict[str, Any] = {}  # the usage fields seen so far, later ones winning
    stop_reason: str | None = None
    stopped = False
    tool_ordinals: dict[int, int] = {}  # content block index -> tool-call ordinal (0, 1, ...)
    # Read to the end of the body even after message_stop, so the connection goes
    # back to the pool instead of being dropped half-read.
    async for event in _sse_data(body):
        kind = event["type"]
        if kind == "content_block_delta":  # by far the most frequent: first
            delta = event["delta"]
            delta_kind = delta["type"]
            if delta_kind == "text_delta":
                if delta["text"]:
                    yield TextDelta(delta["text"])
            elif delta_kind == "thinking_delta":
                if delta["thinking"]:
                    yield ReasoningDelta(delta["thinking"])
            elif delta_kind == "input_json_delta":
                ordinal = tool_ordinals.get(event["index"])
                # The first fragment is empty; server-tool blocks have no ordinal.
                if ordinal is not None and delta["partial_json"]:
                    yield ToolCallDelta(ordinal, "", "", delta["partial_json"])
            # signature and citation deltas have no place in the domain yet.
        elif kind == "content_block_start":
            block = event["content_block"]
            if block["type"] == "tool_use":
                ordinal = tool_ordinals[event["index"]] = len(tool_ordinals)
                yield ToolCallDelta(ordinal, block["id"], block["name"], "")
            elif block["type"] == "text" and block.get("text"):
                yield TextDelta(block["text"])
            elif block["type"] == "thinking" and block.get("thinking"):
                yield ReasoningDelta(block["thinking"])
        elif kind == "message_start":
            counts.update(event["message"]["usage"])
        elif kind == "message_delta":
            stop_reason = event["delta"].get("stop_reason") or stop_reason
            # Counts here are cumulative and final; input counts may be absent.
            counts.update((k, v) for k, v in (event.get("usage") or {}).items() if v is not None)
        elif kind == "message_stop":
            stopped = True
        elif kind == "error":
            raise upstream_errors.stream_error()
        # ping, content_block_stop and event types added later carry nothing to map.
    if not stopped:
        raise upstream_errors.incomplete_error()
    yield _usage(counts)
    yield Finish(_finish_reason(stop_reason))


async def _sse_data(body: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """The JSON payload of each `data:` line of a server-sent event stream.

    Splits the body's bytes itself rather than through httpx's aiter_lines: that
    decodes to text and splits through two more generator layers, a measurable
    share of a streamed answer's cost. Anthropic sends one `data:` line per event
    (SSE allows several, which this does not join); `event:` lines, comments and
    blank separators are skipped, and json.loads ignores a trailing \\r."""
    splitter = LineSplitter()
    async for chunk in body:
        for line in splitter.feed(chunk):
            if line.startswith(b"data:"):
                yield json.loads(line[5:])
    # A last line without its newline is an event cut short: SSE discards it.


def _whole_answer_events(message: dict[str, Any]) -> list[ProviderEvent]:
    """A non-streamed message as the same events a stream would have produced."""
    events: list[ProviderEvent] = []
    ordinal = 0
    for block in message["content"]:
        if block["type"] == "text":
            if block["text"]:
                events.append(TextDelta(block["text"]))
        elif block["type"] == "thinking":
            if block.get("thinking"):
                events.append(ReasoningDelta(block["thinking"]))
        elif block["type"] == "tool_use":
            events.append(ToolCallDelta(ordinal, block["id"], block["name"], json.dumps(block["input"])))
            ordinal += 1
    if not message.get("stop_reason"):
        raise upstream_errors.incomplete_error()
    usage = message["usage"]
    events.append(_usage(usage))
    events.append(Finish(_finish_reason(message["stop_reason"])))
    return events


def _usage(usage: dict[str, Any]) -> Usage:
    details = usage.get("output_tokens_details") or {}
    return Usage(
        _input_tokens(usage),
        usage.get("output_tokens") or 0,
        cached_input_tokens=usage.get("cache_read_input_tokens") or 0,
        reasoning_tokens=details.get("thinking_tokens") or 0,
    )


def _input_tokens(usage: dict[str, Any]) -> int:
    # Prompt-cache reads and writes are input too, reported apart from input_tokens.
    return (
        (usage.get("input_tokens") or 0)
        + (usage.get("cache_creation_input_tokens") or 0)
        + (usage.get("cache_read_input_tokens") or 0)
    )


def _finish_reason(stop_reason: str | None) -> FinishReason:
    return _STOP_REASONS.get(stop_reason or "", FinishReason.STOP)


# --------------------------------------------------------------------------- requests


def request_body(model: str, request: ChatRequest, incremental: bool) -> dict[str, Any]:
    """The Messages API body for a chat request; InvalidArgument for what Anthropic cannot take."""
    config: GenerationConfig = request.config
    system, messages = _messages(request.messages)
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": config.max_tokens if config.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": messages,
    }
    if system:
        body["system"] = system
    if incremental:
        body["stream"] = True
    if config.stop:
        body["stop_sequences"] = list(config.stop)
    # Not sent: config.seed, as Anthropic has no seed (and no deterministic sampling);
    # config.temperature and config.top_p, as this SDK (and the API version it speaks,
    # 2026-10-21) dropped the sampling parameters: current models do not use them and
    # answer a request that carries them with 400.
    if config.tools:
        body["tools"] = [_tool(t.name, t.description, t.parameters) for t in config.tools]
        tool_choice = _tool_choice(config.tool_choice, config.parallel_tool_calls)
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    output_config: dict[str, Any] = {}
    output_format = _output_format(config.response_format)
    if output_format is not None:
        output_config["format"] = output_format
    reasoning = config.reasoning
    if reasoning is not None and reasoning.effort is not None:
        output_config["effort"] = reasoning.effort.value
    if output_config:
        body["output_config"] = output_config
    if reasoning is not None and reasoning.budget_tokens is not None:
        if reasoning.budget_tokens >= body["max_tokens"]:
            raise InvalidArgument.one(
                "config.reasoning.budget_tokens", f"must be below max_tokens ({body['max_tokens']}) on Anthropic models"
            )
        body["thinking"] = {"type": "enabled", "budget_tokens": reasoning.budget_tokens}
    if request.metadata is not None and request.metadata.end_user_id:
        body["metadata"] = {"user_id": request.metadata.end_user_id}
    if request.provider_options is not None and request.provider_options.anthropic:
        # Checked against the allow-list, which holds nothing set above.
        body.update(wire_value(request.provider_options.anthropic))
    return body


_TOOL_CHOICE_TYPES = {
    ToolChoiceMode.AUTO: "auto",
    ToolChoiceMode.NONE: "none",
    ToolChoiceMode.REQUIRED: "any",
    ToolChoiceMode.TOOL: "tool",
}


def _tool_choice(choice: ToolChoice | None, parallel: bool | None) -> dict[str, Any] | None:
    """Anthropic's tool_choice; parallel calls are turned off on it
    (`disable_parallel_tool_use`), which `none` does not take."""
    if choice is None and parallel is None:
        return None
    mode = choice.mode if choice is not None else ToolChoiceMode.AUTO
    out: dict[str, Any] = {"type": _TOOL_CHOICE_TYPES[mode]}
    if mode is ToolChoiceMode.TOOL and choice is not None:
        out["name"] = choice.tool_name
    if parallel is False and mode is not ToolChoiceMode.NONE:
        out["disable_parallel_tool_use"] = True
    return out


def _output_format(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    """Anthropic's structured outputs take a JSON schema and always enforce
    it (`strict` changes nothing); a JSON object is the schema of any object."""
    if response_format is None or response_format.type is ResponseFormatType.TEXT:
        return None
    if response_format.type is ResponseFormatType.JSON_OBJECT:
        return {"type": "json_schema", "schema": {"type": "object"}}
    return {"type": "json_schema", "schema": response_format.schema}


def _tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    # Anthropic requires an object schema; OpenAI-style tools may leave parameters empty.
    schema = parameters if parameters.get("type") else {"type": "object", **parameters}
    tool: dict[str, Any] = {"name": name, "input_schema": schema}
    if description:
        tool["description"] = description
    return tool


Content: TypeAlias = str | list[dict[str, Any]]


def _messages(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """System text (every system message, joined) and the user/assistant turns.

    Anthropic has no tool role: tool results are `tool_result` blocks in a user
    turn, and assistant tool calls are `tool_use` blocks. Consecutive turns of
    one role become one turn (as the model sees them anyway), which is where the
    API wants tool results: together, right after the assistant's tool calls."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = message.role
        content: Content
        if role is Role.SYSTEM:
            if message.text:
                system.append(message.text)
            continue
        if role is Role.TOOL:
            api_role = "user"
            result: Content = _part_blocks(message) if message.parts else message.content
            content = [{"type": "tool_result", "tool_use_id": message.tool_call_id, "content": result}]
        elif role is Role.ASSISTANT:
            api_role = "assistant"
            content = _assistant_content(index, message)
        else:
            api_role = "user"
            content = _part_blocks(message) if message.parts else message.content
        if turns and turns[-1]["role"] == api_role:
            turns[-1]["content"] = _merge(api_role, turns[-1]["content"], content)
        else:
            turns.append({"role": api_role, "content": content})
    if not turns:
        raise InvalidArgument.one("messages", "Anthropic models need at least one user or assistant message")
    return "\n\n".join(system), turns


def _assistant_content(index: int, message: Message) -> Content:
    if not message.tool_calls:
        return _part_blocks(message) if message.parts else message.content
    blocks = _part_blocks(message)
    for position, call in enumerate(message.tool_calls):
        tool_input = _tool_input(call.arguments_json, f"messages[{index}].tool_calls[{position}].arguments_json")
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input})
    return blocks


def _tool_input(arguments_json: str, field_path: str) -> dict[str, Any]:
    if not arguments_json.strip():
        return {}
    try:
        value = json.loads(arguments_json)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidArgument.one(field_path, "must be a JSON object: Anthropic models take tool arguments as one")
    return value


def _part_blocks(message: Message) -> list[dict[str, Any]]:
    """`content` (its first text) and the parts as content blocks: images as
    `image` blocks with a `url` or `base64` source. Anthropic takes no
    image detail: it is not sent."""
    blocks = _blocks(message.content)
    for part in message.parts:
        if type(part) is TextPart:
            blocks.append({"type": "text", "text": part.text})
        elif type(part) is ImagePart:
            source = (
                {"type": "url", "url": part.url}
                if part.url
                else {"type": "base64", "media_type": part.mime_type, "data": base64.b64encode(part.data).decode()}
            )
            blocks.append({"type": "image", "source": source})
    return blocks


def _blocks(content: Content) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return content
    # The API rejects empty text blocks.
    return [{"type": "text", "text": content}] if content else []


def _merge(role: str, first: Content, second: Content) -> list[dict[str, Any]]:
    merged = _blocks(first) + _blocks(second)
    if role == "user":
        # In a user turn the API wants tool results before any text (stable sort).
        merged.sort(key=lambda block: block["type"] != "tool_result")
    return merged
