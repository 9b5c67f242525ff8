"""Fake Anthropic Messages upstream (aiohttp) with fault injection, for tests and benchmarks.

Same fault names, counters and lifecycle as `openai_upstream` (see its docstring); only the
wire format differs. Give the SDK `base_url=fake.base_url`, which has no /v1 suffix.

Two more model-name tokens, for Anthropic-only behaviour:

    stop-<reason>     report this stop_reason whatever the answer was (stop-refusal, stop-pause_turn)
    tools-all         when calling tools, say a sentence first, then call every tool offered
                      (content blocks: text, tool_use, tool_use, ...)
    fault-early-eof   end the stream cleanly without message_delta and message_stop
                      (non-streaming: a message whose stop_reason is null)

Like the real API, a user turn that answers tool calls with `tool_result` blocks gets a text
answer ("Echo: <the tool results>") instead of another tool call.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

try:
    from .openai_upstream import (
        JSON,
        Answer,
        BadRequest,
        FakeUpstream,
        Prompt,
        StreamPlan,
        count_words,
        last_user_text,
        message_text,
        run_standalone,
        split_words,
    )
except ImportError:  # run as a script: python tests/fakes/anthropic_upstream.py
    from openai_upstream import (  # type: ignore[no-redef,import-not-found]
        JSON,
        Answer,
        BadRequest,
        FakeUpstream,
        Prompt,
        StreamPlan,
        count_words,
        last_user_text,
        message_text,
        run_standalone,
        split_words,
    )

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}

_STOP_REASONS = {
    "end": "end_turn",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool": "tool_use",
}

_MODELS = ("claude-fake", "claude-fake-haiku")

_FORCED_STOP_RE = re.compile(r"stop-([a-z_]+)")
_EARLY_EOF = "fault-early-eof"
_ALL_TOOLS = "tools-all"
_ALL_TOOLS_PREFACE = "Calling the tools."
_BLOCK_TYPES = ("text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking")


@dataclass(frozen=True)
class AnthropicPrompt(Prompt):
    tool_names: tuple[str, ...] = ()  # every tool offered, in order


class FakeAnthropic(FakeUpstream):
    """Fake Anthropic Messages server: POST /v1/messages and GET /v1/models."""

    base_path = ""  # the anthropic SDK appends /v1/... itself
    completion_path = "/v1/messages"

    def _routes(self) -> list[web.RouteDef]:
        return [*super()._routes(), web.get("/v1/models", self._models)]

    async def _models(self, request: web.Request) -> web.Response:
        self._note(request)
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in _MODELS]
        return web.json_response({"data": data, "has_more": False, "first_id": _MODELS[0], "last_id": _MODELS[-1]})

    def _auth_of(self, request: web.Request) -> str | None:
        return request.headers.get("x-api-key") or request.headers.get("Authorization")

    def _error_body(self, status: int, message: str | None = None) -> JSON:
        kind, default = _ERRORS.get(
            status, ("api_error" if status >= 500 else "invalid_request_error", f"Fault {status}.")
        )
        return {"type": "error", "error": {"type": kind, "message": message or default}}

    def _parse(self, body: JSON) -> Prompt:
        # Reject what the real API rejects, so translation bugs in a gateway surface as 400s.
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("messages: must be a non-empty list")
        if not isinstance(body.get("max_tokens"), int):
            raise BadRequest("max_tokens: Field required")
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                raise BadRequest("messages: roles must be 'user' or 'assistant'")
        system = body.get("system")
        if system is not None and not isinstance(system, str | list):
            raise BadRequest("system: must be a string or a list of text blocks")
        stops = body.get("stop_sequences") or []
        if not isinstance(stops, list):
            raise BadRequest("stop_sequences: must be a list of strings")
        # API version 2026-10-21 (what the installed SDK sends) has no sampling parameters.
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                raise BadRequest(f"{name}: Extra inputs are not permitted")
        _check_turns(messages)
        _check_tools(body.get("tools"))
        results = _tool_results(messages[-1])
        texts = [message_text(system), *(message_text(m.get("content")) for m in messages), *results]
        return AnthropicPrompt(
            model=str(body.get("model") or ""),
            user_text=" ".join(results) if results else last_user_text(messages),
            prompt_tokens=count_words(texts),
            stream=bool(body.get("stream")),
            max_tokens=body["max_tokens"],
            stop=tuple(str(s) for s in stops),
            # After tool results the model answers in text, as the real one would.
            tool_name=None if results else _anthropic_tool(body),
            tool_names=tuple(str(t.get("name")) for t in body.get("tools") or ()),
            structured=_anthropic_structured(body.get("output_config")),
        )

    def _content(self, prompt: Prompt, answer: Answer) -> list[JSON]:
        if answer.tool_name is None:
            return [{"type": "text", "text": answer.text}]
        tool_input = json.loads(answer.tool_arguments)
        if _ALL_TOOLS in _tokens(prompt) and isinstance(prompt, AnthropicPrompt):
            calls = [
                {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": tool_input}
                for i, name in enumerate(prompt.tool_names, 1)
            ]
            return [{"type": "text", "text": _ALL_TOOLS_PREFACE}, *calls]
        return [{"type": "tool_use", "id": "toolu_1", "name": answer.tool_name, "input": tool_input}]

    def _message(self, prompt: Prompt, content: list[JSON], output_tokens: int) -> JSON:
        return {
            "id": f"msg_fake_{self._next_id()}",
            "type": "message",
            "role": "assistant",
            "model": prompt.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": prompt.prompt_tokens,
                "output_tokens": output_tokens,
                **({"cache_read_input_tokens": self.cached_tokens} if self.cached_tokens else {}),
                **self._thinking_details(),
            },
        }

    def _thinking_details(self) -> JSON:
        if not self.reasoning_tokens:
            return {}
        return {"output_tokens_details": {"thinking_tokens": self.reasoning_tokens}}

    def _render(self, prompt: Prompt, answer: Answer) -> JSON:
        message = self._message(prompt, self._content(prompt, answer), answer.completion_tokens)
        message["stop_reason"] = None if _EARLY_EOF in _tokens(prompt) else _stop_reason(prompt, answer)
        message["stop_sequence"] = answer.stop_sequence
        return message

    def _plan_stream(self, prompt: Prompt, answer: Answer) -> StreamPlan:
        # The real API reports output_tokens=1 at message_start and the total at message_delta.
        start = self._message(prompt, [], 1)
        frames = [_event("message_start", {"type": "message_start", "message": start})]
        for index, block in enumerate(self._content(prompt, answer)):
            if block["type"] == "text":
                opened: JSON = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": c} for c in split_words(block["text"])]
            else:
                opened = {**block, "input": {}}
                # Like the real API, the JSON arrives in fragments, the first one empty.
                pieces = ["", *split_words(json.dumps(block["input"]))]
                deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
            frames.append(
                _event("content_block_start", {"type": "content_block_start", "index": index, "content_block": opened})
            )
            if index == 0:
                frames.append(_event("ping", {"type": "ping"}))
            frames.extend(
                _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                for d in deltas
            )
            frames.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        frames += [
            _event("message_delta", {
                "type": "message_delta",
                "delta": {"stop_reason": _stop_reason(prompt, answer),
                          "stop_sequence": answer.stop_sequence},
                "usage": {"output_tokens": answer.completion_tokens, **self._thinking_details()},
            }),
            _event("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        if _EARLY_EOF in _tokens(prompt):
            del frames[-2:]  # no message_delta, no message_stop: a clean but early end
        return StreamPlan(
            frames=frames,
            first_chunk=3,
            malformed=b'event: content_block_delta\ndata: {"type": "content_block_delta", "in\n\n',
            error=_event("error", self._error_body(529)),
        )


def _event(name: str, data: Any) -> bytes:
    # The SDK dispatches on the `event:` line and skips frames without one.
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def _tokens(prompt: Prompt) -> list[str]:
    return prompt.model.split("+")


def _stop_reason(prompt: Prompt, answer: Answer) -> str:
    for token in _tokens(prompt):
        if m := _FORCED_STOP_RE.fullmatch(token):
            return m.group(1)
    return _STOP_REASONS[answer.reason]


def _tool_results(message: Any) -> list[str]:
    """Text of the tool_result blocks in a user turn (empty if it has none)."""
    content = message.get("content") if message.get("role") == "user" else None
    if not isinstance(content, list):
        return []
    return [message_text(b.get("content")) for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def _check_turns(messages: list[Any]) -> None:
    """The content rules the real API enforces, with its wording where known."""
    pending: set[str] = set()  # tool_use ids of the previous assistant turn, still to be answered
    for i, m in enumerate(messages):
        content = m.get("content")
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}]
        elif isinstance(content, list) and content:
            blocks = content
        else:
            raise BadRequest(f"messages.{i}.content: must be a string or a non-empty list of blocks")
        answered: set[str] = set()
        seen_other = False
        for j, b in enumerate(blocks):
            kind = b.get("type") if isinstance(b, dict) else None
            if kind not in _BLOCK_TYPES:
                raise BadRequest(f"messages.{i}.content.{j}: unknown block type {kind!r}")
            if kind == "text" and not b.get("text"):
                raise BadRequest("messages: text content blocks must be non-empty")
            if kind == "image":
                _check_image_source(b.get("source"), f"messages.{i}.content.{j}.image.source")
            if kind == "tool_use":
                if m["role"] != "assistant" or not b.get("id") or not b.get("name"):
                    raise BadRequest(f"messages.{i}.content.{j}: tool_use needs id and name, in an assistant turn")
                if not isinstance(b.get("input"), dict):
                    raise BadRequest(f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary")
            if kind == "tool_result":
                if m["role"] != "user" or seen_other:
                    raise BadRequest(f"messages.{i}: tool_result blocks must come first in a user turn")
                if b.get("tool_use_id") not in pending:
                    raise BadRequest(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks. Each "
                        "`tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )
                answered.add(b["tool_use_id"])
            else:
                seen_other = True
        if pending - answered:
            raise BadRequest(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks immediately after"
            )
        pending = {b["id"] for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"}


_IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def _check_image_source(source: Any, path: str) -> None:
    """An image block's source as the API takes it: base64 data of a known type, or a URL."""
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64":
        if source.get("media_type") not in _IMAGE_MEDIA_TYPES:
            raise BadRequest(f"{path}.base64.media_type: Input should be {', '.join(_IMAGE_MEDIA_TYPES)}")
        try:
            base64.b64decode(source.get("data") or "", validate=True)
        except ValueError:
            raise BadRequest(f"{path}.base64.data: invalid base64 data") from None
    elif kind == "url":
        if not str(source.get("url") or "").startswith(("https://", "http://")):
            raise BadRequest(f"{path}.url.url: must be a URL")
    else:
        raise BadRequest(f"{path}: unknown source type {kind!r}")


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise BadRequest("tools: Input should be a valid list")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not tool.get("name"):
            raise BadRequest(f"tools.{i}.custom.name: Field required")
        if tool.get("type", "custom") != "custom":
            continue  # a server tool (web search, code execution...): no schema of its own
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise BadRequest(f"tools.{i}.custom.input_schema.type: Input should be 'object'")


def _anthropic_structured(output_config: Any) -> bool:
    """Whether the request asks for JSON (output_config.format); malformed is a 400."""
    if output_config is None:
        return False
    output_format = output_config.get("format") if isinstance(output_config, dict) else None
    if output_format is None:
        return False
    if output_format.get("type") != "json_schema" or not isinstance(output_format.get("schema"), dict):
        raise BadRequest("output_config.format: must be {'type': 'json_schema', 'schema': {...}}")
    return True


def _anthropic_tool(body: JSON) -> str | None:
    """Name of the tool the fake calls: the forced one, else the first; None if tools are off."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {}
    if not tools or choice.get("type") == "none":
        return None
    if choice.get("type") == "tool" and choice.get("name"):
        return str(choice["name"])
    return str(tools[0].get("name") or "tool")


if __name__ == "__main__":
    run_standalone(FakeAnthropic)
