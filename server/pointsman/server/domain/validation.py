"""Checks on chat requests that do not depend on the transport. Field paths
match the proto field names so clients can point at the culprit."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .chat import GenerationConfig, Message, Role, TextPart, ToolChoiceMode
from .errors import ViolationCollector
from .images import ImageLimits, check_request_images
from .structured_output import check_response_format

MAX_STOP_SEQUENCES = 4
MAX_TOOLS = 128
MAX_LOGGED_CHARS = 256
# Anthropic's floor for a thinking budget.
MIN_REASONING_BUDGET = 1024

# C0 and C1 controls (NUL among them, which PostgreSQL cannot store in text)
# and the Unicode line and paragraph separators, which forge log lines.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# The same, less tab, line feed and carriage return: for free text such as
# a rule's description or pattern, where line breaks are meant.
_CONTROL_CHARACTERS_BUT_LINE_BREAKS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def has_control_characters(text: str) -> bool:
    return _CONTROL_CHARACTERS.search(text) is not None


def check_text(
    text: str, errors: ViolationCollector, path: str, *, max_chars: int | None = None, multiline: bool = False
) -> None:
    """The one check for caller-chosen text that is stored or logged (names,
    filters, rule patterns, labels): at most `max_chars`, and no control
    characters, which PostgreSQL cannot store (NUL) or which forge log lines.
    `multiline` text may hold tabs and line breaks."""
    if max_chars is not None and len(text) > max_chars:
        errors.add(path, f"must be at most {max_chars} characters")
    elif multiline:
        if _CONTROL_CHARACTERS_BUT_LINE_BREAKS.search(text) is not None:
            errors.add(path, "must not contain control characters other than tabs and line breaks")
    elif _CONTROL_CHARACTERS.search(text) is not None:
        errors.add(path, "must not contain control characters")


def loggable(text: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """Caller-chosen text as a log or a stored record may hold it, even when
    the request was refused for it: control characters replaced by U+FFFD,
    at most `limit` characters."""
    return _CONTROL_CHARACTERS.sub("\ufffd", text[:limit])


class ChatLimits:
    """Size limits on a chat request, from settings."""

    __slots__ = ("images", "max_input_chars", "max_messages")

    def __init__(self, max_messages: int, max_input_chars: int, images: ImageLimits | None = None) -> None:
        self.max_messages = max_messages
        self.max_input_chars = max_input_chars
        self.images = images or ImageLimits()


def check_messages(
    messages: Sequence[Message], limits: ChatLimits, errors: ViolationCollector, path: str = "messages"
) -> None:
    if not messages:
        errors.add(path, "at least one message is required")
        return
    if len(messages) > limits.max_messages:
        errors.add(path, f"at most {limits.max_messages} messages are allowed")
    total_chars = 0
    with_parts = False
    for index, message in enumerate(messages):
        total_chars += len(message.content)
        if message.parts:
            with_parts = True
            total_chars += _check_text_parts(message, errors, f"{path}[{index}].parts")
        elif not message.content and not message.tool_calls:
            errors.add(f"{path}[{index}].content", "must not be empty")
        if message.role is Role.TOOL and not message.tool_call_id:
            errors.add(f"{path}[{index}].tool_call_id", "is required for tool messages")
    if with_parts:
        check_request_images(messages, limits.images, errors, path)
    if total_chars > limits.max_input_chars:
        errors.add(path, f"total content is {total_chars} characters; the limit is {limits.max_input_chars}")


def _check_text_parts(message: Message, errors: ViolationCollector, path: str) -> int:
    """Adds a violation for each empty text part (providers refuse them);
    returns the characters of text the parts hold."""
    chars = 0
    for position, part in enumerate(message.parts):
        if type(part) is TextPart:
            chars += len(part.text)
            if not part.text:
                errors.add(f"{path}[{position}].text", "must not be empty")
    return chars


def check_config(config: GenerationConfig, errors: ViolationCollector, path: str = "config") -> None:
    if config.temperature is not None and not 0.0 <= config.temperature <= 2.0:
        errors.add(f"{path}.temperature", "must be between 0 and 2")
    if config.top_p is not None and not 0.0 <= config.top_p <= 1.0:
        errors.add(f"{path}.top_p", "must be between 0 and 1")
    if config.max_tokens is not None and config.max_tokens < 1:
        errors.add(f"{path}.max_tokens", "must be at least 1")
    if len(config.stop) > MAX_STOP_SEQUENCES:
        errors.add(f"{path}.stop", f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
    if any(not s for s in config.stop):
        errors.add(f"{path}.stop", "stop sequences must not be empty")
    if len(config.tools) > MAX_TOOLS:
        errors.add(f"{path}.tools", f"at most {MAX_TOOLS} tools are allowed")
    for index, tool in enumerate(config.tools):
        if not tool.name:
            errors.add(f"{path}.tools[{index}].name", "is required")
    check_response_format(config.response_format, errors, f"{path}.response_format")
    _check_tool_choice(config, errors, f"{path}.tool_choice")
    reasoning = config.reasoning
    if reasoning is not None and reasoning.budget_tokens is not None:
        if reasoning.budget_tokens < MIN_REASONING_BUDGET:
            errors.add(f"{path}.reasoning.budget_tokens", f"must be at least {MIN_REASONING_BUDGET}")


def _check_tool_choice(config: GenerationConfig, errors: ViolationCollector, path: str) -> None:
    choice = config.tool_choice
    if choice is None or choice.mode in {ToolChoiceMode.AUTO, ToolChoiceMode.NONE}:
        return
    if not config.tools:
        errors.add(f"{path}.mode", f"{choice.mode.value} needs tools in config.tools")
    elif choice.mode is ToolChoiceMode.TOOL and choice.tool_name not in {t.name for t in config.tools}:
        errors.add(f"{path}.tool_name", "must name one of config.tools")


def check_model(model: str, errors: ViolationCollector, path: str = "model") -> None:
    if not model:
        errors.add(path, "is required")
    elif len(model) > 256:
        errors.add(path, "must be at most 256 characters")
    elif has_control_characters(model):
        errors.add(path, "must not contain control characters")
