"""Domain answers as OpenAI response bodies and stream chunks."""

from __future__ import annotations

import array
import base64
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..domain import chat
from ..domain.embeddings import EmbedResult
from ..domain.orchestrator import CompletedAnswer
from .extension import NAME as EXTENSION
from .extension import extension

FINISH_REASONS = {
    chat.FinishReason.STOP: "stop",
    chat.FinishReason.LENGTH: "length",
    chat.FinishReason.TOOL_CALLS: "tool_calls",
    chat.FinishReason.CONTENT_FILTER: "content_filter",
}


def usage_json(usage: chat.Usage | None) -> dict[str, Any]:
    if usage is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        # As OpenAI reports them: of the prompt, read from the provider's cache; of the answer, spent reasoning.
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _tool_call_json(call: chat.ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments_json}}


def completion_json(answer: CompletedAnswer, model: str, request_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None}
    if answer.tool_calls:
        message["tool_calls"] = [_tool_call_json(c) for c in answer.tool_calls]
        message["content"] = answer.content or None
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning_text  # as vLLM, DeepSeek and OpenRouter name it
    finish = answer.finish.reason if answer.finish is not None else chat.FinishReason.STOP
    body = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH_REASONS[finish]}],
        "usage": usage_json(answer.usage),
    }
    ours = extension(answer.notices, answer.finish)
    if ours is not None:
        body[EXTENSION] = ours
    return body


class ChunkFramer:
    """`data: {chat.completion.chunk}` frames of one stream; the fields every
    chunk repeats are serialised once."""

    __slots__ = ("_head",)

    def __init__(self, model: str, request_id: str) -> None:
        common = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": int(time.time())}
        common["model"] = model
        self._head = b"data: " + json.dumps(common)[:-1].encode() + b', "choices": '

    def delta(
        self, delta: dict[str, Any], finish_reason: str | None = None, ours: dict[str, Any] | None = None
    ) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        if ours is not None:  # the `pointsman` object (http/extension.py), after the choices
            return (
                self._head
                + json.dumps([choice]).encode()
                + b', "'
                + EXTENSION.encode()
                + b'": '
                + json.dumps(ours).encode()
                + b"}\n\n"
            )
        return self._head + json.dumps([choice]).encode() + b"}\n\n"

    def reasoning(self, text: str) -> bytes:
        return self.delta({"reasoning_content": text})

    def text(self, text: str) -> bytes:
        # The hot path: one small string per delta, no dict to encode.
        return (
            self._head
            + b'[{"index": 0, "delta": {"content": '
            + json.dumps(text).encode()
            + b'}, "logprobs": null, "finish_reason": null}]}\n\n'
        )

    def tool_call(self, event: chat.ToolCallDelta) -> bytes:
        call: dict[str, Any] = {"index": event.index}
        if event.id:
            call["id"] = event.id
            call["type"] = "function"
        function: dict[str, str] = {"arguments": event.arguments_delta}
        if event.name:
            function["name"] = event.name
        call["function"] = function
        return self.delta({"tool_calls": [call]})

    def usage(self, usage: chat.Usage | None) -> bytes:
        return self._head + b'[], "usage": ' + json.dumps(usage_json(usage)).encode() + b"}\n\n"


DONE = b"data: [DONE]\n\n"


def models_json(aliases: Sequence[str]) -> dict[str, Any]:
    return {"object": "list", "data": [model_json(a) for a in aliases]}


def model_json(alias: str) -> dict[str, Any]:
    return {"id": alias, "object": "model", "created": 0, "owned_by": "pointsman"}


def _base64_floats(values: Sequence[float]) -> str:
    """Little-endian float32, as OpenAI's base64 encoding (the openai SDK's default)."""
    packed = array.array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def embeddings_json(result: EmbedResult, as_base64: bool) -> dict[str, Any]:
    data = [
        {"object": "embedding", "index": i, "embedding": _base64_floats(v) if as_base64 else list(v)}
        for i, v in enumerate(result.vectors.vectors)
    ]
    tokens = result.usage.input_tokens
    return {
        "object": "list",
        "data": data,
        "model": result.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
