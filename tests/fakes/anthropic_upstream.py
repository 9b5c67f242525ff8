"""Fake Anthropic Messages upstream (aiohttp) with fault injection, for tests and benchmarks.

Same fault names, counters and lifecycle as `openai_upstream` (see its docstring); only the
wire format differs. Give the SDK `base_url=fake.base_url`, which has no /v1 suffix.
"""

from __future__ import annotations

import json
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
        texts = [message_text(system), *(message_text(m.get("content")) for m in messages)]
        return Prompt(
            model=str(body.get("model") or ""),
            user_text=last_user_text(messages),
            prompt_tokens=count_words(texts),
            stream=bool(body.get("stream")),
            max_tokens=body["max_tokens"],
            stop=tuple(str(s) for s in stops),
            tool_name=_anthropic_tool(body),
        )

    def _content(self, answer: Answer) -> list[JSON]:
        if answer.tool_name is None:
            return [{"type": "text", "text": answer.text}]
        tool_input = json.loads(answer.tool_arguments)
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
            "usage": {"input_tokens": prompt.prompt_tokens, "output_tokens": output_tokens},
        }

    def _render(self, prompt: Prompt, answer: Answer) -> JSON:
        message = self._message(prompt, self._content(answer), answer.completion_tokens)
        message["stop_reason"] = _STOP_REASONS[answer.reason]
        message["stop_sequence"] = answer.stop_sequence
        return message

    def _plan_stream(self, prompt: Prompt, answer: Answer) -> StreamPlan:
        # The real API reports output_tokens=1 at message_start and the total at message_delta.
        start = self._message(prompt, [], 1)
        if answer.tool_name is None:
            block: JSON = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": c} for c in answer.chunks]
        else:
            block = {"type": "tool_use", "id": "toolu_1", "name": answer.tool_name, "input": {}}
            # Like the real API, the JSON arrives in fragments, the first one empty.
            pieces = ["", *split_words(answer.tool_arguments)]
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
        frames = [
            _event("message_start", {"type": "message_start", "message": start}),
            _event("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": block}),
            _event("ping", {"type": "ping"}),
            *(_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                             "delta": d}) for d in deltas),
            _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _event("message_delta", {
                "type": "message_delta",
                "delta": {"stop_reason": _STOP_REASONS[answer.reason],
                          "stop_sequence": answer.stop_sequence},
                "usage": {"output_tokens": answer.completion_tokens},
            }),
            _event("message_stop", {"type": "message_stop"}),
        ]  # fmt: skip
        return StreamPlan(
            frames=frames,
            first_chunk=3,
            malformed=b'event: content_block_delta\ndata: {"type": "content_block_delta", "in\n\n',
            error=_event("error", self._error_body(529)),
        )


def _event(name: str, data: Any) -> bytes:
    # The SDK dispatches on the `event:` line and skips frames without one.
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


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
