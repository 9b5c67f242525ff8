"""OpenAI's structured output, tool choice and reasoning fields as the
domain's generation settings, and the domain's field paths back as OpenAI's
parameter names (an error names the field the client sent)."""

from __future__ import annotations

import re
from typing import Any

from ..domain import chat
from ..domain.errors import FieldViolation, InvalidArgument, ViolationCollector

_EFFORTS = {e.value: e for e in chat.ReasoningEffort}
# OpenAI's newer models also take "minimal"; the contract has three levels, so the
# lowest stands for it. "none" (no reasoning at all) has no level and is refused.
_EFFORT_ALIASES = {"minimal": chat.ReasoningEffort.LOW}
_CHOICE_MODES = {
    "auto": chat.ToolChoiceMode.AUTO,
    "none": chat.ToolChoiceMode.NONE,
    "required": chat.ToolChoiceMode.REQUIRED,
}


def features_from_json(body: dict[str, Any], errors: ViolationCollector) -> dict[str, Any]:
    """The GenerationConfig fields set by `response_format`, `tool_choice`,
    `parallel_tool_calls`, `reasoning_effort` and `reasoning` (OpenRouter's
    `{effort, max_tokens}`, the one way to ask for a thinking budget here)."""
    fields: dict[str, Any] = {}
    response_format = _response_format(body.get("response_format"), errors)
    if response_format is not None:
        fields["response_format"] = response_format
    tool_choice = _tool_choice(body.get("tool_choice"), errors)
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if isinstance(parallel, bool):
            fields["parallel_tool_calls"] = parallel
        else:
            errors.add("parallel_tool_calls", "must be a boolean")
    reasoning = _reasoning(body, errors)
    if reasoning is not None:
        fields["reasoning"] = reasoning
    return fields


def _response_format(value: Any, errors: ViolationCollector) -> chat.ResponseFormat | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return chat.ResponseFormat(chat.ResponseFormatType.JSON_OBJECT)
    if kind != "json_schema":
        errors.add("response_format.type", "must be 'text', 'json_object' or 'json_schema'")
        return None
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        errors.add("response_format.json_schema", "is required with type 'json_schema': {name, schema, strict}")
        return None
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        # OpenAI requires it; the domain checks its characters.
        errors.add("response_format.json_schema.name", "is required: a string")
        name = ""
    schema = spec.get("schema")
    if not isinstance(schema, dict) or not schema:
        errors.add("response_format.json_schema.schema", "is required: a JSON Schema object")
        schema = {}
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        errors.add("response_format.json_schema.strict", "must be a boolean")
    # The schema itself is checked by the domain (domain/structured_output.py),
    # as for a gRPC call; its error's path comes back under this name.
    return chat.ResponseFormat(chat.ResponseFormatType.JSON_SCHEMA, name, schema, strict is True)


def _tool_choice(value: Any, errors: ViolationCollector) -> chat.ToolChoice | None:
    if value is None:
        return None
    if isinstance(value, str):
        mode = _CHOICE_MODES.get(value)
        if mode is None:
            errors.add("tool_choice", "must be 'auto', 'none', 'required' or {type: 'function', function: {name}}")
            return None
        return chat.ToolChoice(mode)
    function = value.get("function") if isinstance(value, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(value, dict) or value.get("type") != "function" or not isinstance(name, str) or not name:
        errors.add("tool_choice", "must be 'auto', 'none', 'required' or {type: 'function', function: {name}}")
        return None
    return chat.ToolChoice(chat.ToolChoiceMode.TOOL, name)


def _effort(value: Any, path: str, errors: ViolationCollector) -> chat.ReasoningEffort | None:
    if value is None:
        return None
    effort = (_EFFORTS.get(value) or _EFFORT_ALIASES.get(value)) if isinstance(value, str) else None
    if effort is None:
        errors.add(path, "must be 'minimal', 'low', 'medium' or 'high'")
    return effort


def _reasoning(body: dict[str, Any], errors: ViolationCollector) -> chat.Reasoning | None:
    effort = _effort(body.get("reasoning_effort"), "reasoning_effort", errors)
    budget = None
    extra = body.get("reasoning")
    if extra is not None:
        if not isinstance(extra, dict):
            errors.add("reasoning", "must be an object: {effort, max_tokens}")
        else:
            effort = _effort(extra.get("effort"), "reasoning.effort", errors) or effort
            budget = extra.get("max_tokens")
            if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
                errors.add("reasoning.max_tokens", "must be an integer")
                budget = None
    if effort is None and budget is None:
        return None
    return chat.Reasoning(effort, budget)


# -- the domain's field paths as OpenAI's parameter names --------------------

# The domain checks a request by the gRPC contract's paths (`config.top_p`);
# an HTTP client sent OpenAI's names. Longest prefix first.
_PARAMS = [
    ("config.response_format.schema_name", "response_format.json_schema.name"),
    ("config.response_format.schema", "response_format.json_schema.schema"),
    ("config.response_format", "response_format"),
    ("config.tool_choice.tool_name", "tool_choice.function.name"),
    ("config.tool_choice", "tool_choice"),
    ("config.reasoning.budget_tokens", "reasoning.max_tokens"),
    ("config.reasoning.effort", "reasoning_effort"),
    ("config.reasoning", "reasoning_effort"),
    ("config.max_tokens", "max_completion_tokens"),
    ("config.parallel_tool_calls", "parallel_tool_calls"),
]
_TOOL_NAME = re.compile(r"^config\.tools\[(\d+)\]\.name")
# Content parts: the door keeps them in order, so `parts[j]` is `content[j]`;
# an image's url, bytes and type all came from its `image_url.url`.
_PART = re.compile(r"^(messages\[\d+\])\.parts(\[\d+\])(?:\.image(?:\.(url|data|mime_type|detail))?)?")


def openai_param(path: str) -> str:
    """`path` as the OpenAI parameter it came from; other paths as they are."""
    for domain_path, param in _PARAMS:
        if path == domain_path or path.startswith(domain_path + ".") or path.startswith(domain_path + "["):
            return param
    part = _PART.match(path)
    if part is not None:
        message, index, image_field = part.groups()
        if part.group(0).endswith(".image"):
            return f"{message}.content{index}.image_url" + path[part.end() :]
        if image_field is not None:
            leaf = "detail" if image_field == "detail" else "url"
            return f"{message}.content{index}.image_url.{leaf}" + path[part.end() :]
        return f"{message}.content{index}" + path[part.end() :]
    tool = _TOOL_NAME.match(path)
    if tool is not None:
        return f"tools[{tool.group(1)}].function.name" + path[tool.end() :]
    if path.startswith("config."):
        return path[len("config.") :]
    return path


def with_openai_params(error: InvalidArgument) -> InvalidArgument:
    """The error with its violations named as OpenAI's parameters, and its
    summary (when it was built from them) rebuilt to match."""
    violations = [FieldViolation(openai_param(v.field), v.description) for v in error.violations]
    if violations == error.violations:
        return error
    summary = "; ".join(f"{v.field}: {v.description}" for v in error.violations)
    translated = InvalidArgument(violations, None if error.message == summary else error.message)
    translated.reason = error.reason
    translated.metadata = error.metadata
    return translated
