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
    ToolChoiceMode,
    Usage,
)

BUILTIN_MODEL_ID = "pointsman-builtin-echo"
BUILTIN_PREAMBLE = "[pointsman built-in deterministic model, not a real LLM] You said: "


def count_tokens(text: str) -> int:
    """Whitespace words: a deterministic stand-in for a tokenizer."""
    return len(text.split())


TOOL_DIRECTIVE = "call tool "
KEEP_CALLING = "keep calling"
TOOL_ANSWER_PREAMBLE = "The tools said: "


def tool_directives(text: str) -> list[tuple[str, str]]:
    """`call tool NAME {json}` in a user message, as (name, arguments): each
    directive is one tool call, all made in one turn. Arguments that are not
    JSON are passed on as written (up to the next directive), so a test can
    send the gateway bad arguments."""
    calls: list[tuple[str, str]] = []
    decoder = json.JSONDecoder()
    position = 0
    while (start := text.find(TOOL_DIRECTIVE, position)) != -1:
        name_start = start + len(TOOL_DIRECTIVE)
        name_end = text.find(" ", name_start)
        name_end = len(text) if name_end == -1 else name_end
        name = text[name_start:name_end]
        begin = name_end
        while begin < len(text) and text[begin].isspace():
            begin += 1
        try:
            value, end = decoder.raw_decode(text, begin)
            arguments = json.dumps(value)
        except ValueError:
            following = text.find(TOOL_DIRECTIVE, begin)
            end = len(text) if following == -1 else following
            arguments = text[begin:end].strip()
        if name:
            calls.append((name, arguments))
        position = max(end, name_start)
    return calls


def json_answer(text: str) -> str:
    """The answer to a request for JSON: the user's text itself when it is a
    JSON object (so a client can try schemas offline), else `{"answer": text}`."""
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    return json.dumps(value if isinstance(value, dict) else {"answer": text})


class BuiltinProvider:
    """Echoes the last user message word by word after a fixed preamble.

    With tools in the request (and no tool result yet) it calls the first tool
    with the user's text, so tool-calling clients can be exercised offline.
    A user message with `call tool NAME {json}` directives calls those tools
    instead (several at once); after their results it answers with them
    (or, with "keep calling" in the message, calls them again). Asked for
    JSON, it answers with `json_answer`. It follows `tool_choice` (none: no
    calls; a named tool: that one) and, with parallel calls off, makes only
    the first directive's call.
    """

    async def stream(
        self, deployment: Deployment, request: ChatRequest, *, incremental: bool = True
    ) -> AsyncGenerator[ProviderEvent, None]:
        input_tokens = sum(count_tokens(m.text) for m in request.messages)
        last_user = next((m.text for m in reversed(request.messages) if m.role is Role.USER), "")
        config = request.config
        answered_tool = request.messages[-1].role is Role.TOOL
        choice = config.tool_choice
        no_tools = choice is not None and choice.mode is ToolChoiceMode.NONE
        directives = [] if no_tools else tool_directives(last_user)
        if config.parallel_tool_calls is False:
            directives = directives[:1]
        if directives and (not answered_tool or KEEP_CALLING in last_user):
            step = sum(1 for m in request.messages if m.role is Role.ASSISTANT)
            for index, (name, arguments) in enumerate(directives):
                yield ToolCallDelta(index=index, id=f"call_builtin_{step}_{index}", name=name, arguments_delta="")
                yield ToolCallDelta(index=index, id="", name="", arguments_delta=arguments)
            yield Usage(input_tokens, len(directives))
            yield Finish(FinishReason.TOOL_CALLS)
            return
        if directives:
            results = []
            for message in reversed(request.messages):
                if message.role is not Role.TOOL:
                    break
                results.append(message.text)
            last_user = TOOL_ANSWER_PREAMBLE + " | ".join(reversed(results))
        if config.tools and not answered_tool and not directives and not no_tools:
            arguments = json.dumps({"input": last_user})
            named = choice is not None and choice.mode is ToolChoiceMode.TOOL
            name = choice.tool_name if named and choice is not None else config.tools[0].name
            yield ToolCallDelta(index=0, id="call_builtin_0", name=name, arguments_delta="")
            yield ToolCallDelta(index=0, id="", name="", arguments_delta=arguments)
            yield Usage(input_tokens, 1)
            yield Finish(FinishReason.TOOL_CALLS)
            return

        if config.response_format is not None and config.response_format.wants_json:
            text = json_answer(last_user)
        else:
            text = last_user if directives else BUILTIN_PREAMBLE + last_user
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
