"""The built-in deterministic model: no network, the same answer for the same
request, so the whole path can be tried offline and tested exactly."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

from ..domain.chat import (
    ChatRequest,
    Deployment,
    Finish,
    FinishReason,
    ProviderEvent,
    Role,
    TextDelta,
    ToolCallDelta,
    Usage,
)

BUILTIN_MODEL_ID = "pointsman-builtin-echo"
BUILTIN_PREAMBLE = "[pointsman built-in deterministic model, not a real LLM] You said: "


def count_tokens(text: str) -> int:
    """Whitespace words: a deterministic stand-in for a tokenizer."""
    return len(text.split())


class BuiltinProvider:
    """Echoes the last user message word by word after a fixed preamble.

    With tools in the request (and no tool result yet) it calls the first tool
    with the user's text, so tool-calling clients can be exercised offline.
    """

    async def stream(
        self, deployment: Deployment, request: ChatRequest, *, incremental: bool = True
    ) -> AsyncGenerator[ProviderEvent, None]:
        input_tokens = sum(count_tokens(m.content) for m in request.messages)
        last_user = next((m.content for m in reversed(request.messages) if m.role is Role.USER), "")
        config = request.config
        answered_tool = request.messages[-1].role is Role.TOOL
        if config.tools and not answered_tool:
            arguments = json.dumps({"input": last_user})
            yield ToolCallDelta(index=0, id="call_builtin_0", name=config.tools[0].name, arguments_delta="")
            yield ToolCallDelta(index=0, id="", name="", arguments_delta=arguments)
            yield Usage(input_tokens, 1)
            yield Finish(FinishReason.TOOL_CALLS)
            return

        text = BUILTIN_PREAMBLE + last_user
        reason = FinishReason.STOP
        for stop in config.stop:
            cut = text.find(stop)
            if cut != -1:
                text = text[:cut]
        words = text.split(" ")
        if config.max_tokens is not None and len(words) > config.max_tokens:
            words = words[: config.max_tokens]
            reason = FinishReason.LENGTH
        output_tokens = 0
        for index, word in enumerate(words):
            piece = word if index == len(words) - 1 else word + " "
            if piece:
                output_tokens += 1
                yield TextDelta(piece)
        yield Usage(input_tokens, output_tokens)
        yield Finish(reason)

    async def aclose(self) -> None:
        return None
