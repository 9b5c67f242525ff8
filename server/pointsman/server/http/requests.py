"""OpenAI request bodies to domain requests. Every problem is collected,
named by its JSON path (`messages[1].content`), and reported at once; fields
OpenAI accepts that change nothing here are tolerated, as OpenAI tolerates
unknown ones; fields the contract cannot honour yet are refused, never
silently dropped."""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from ..domain import chat
from ..domain.embedding import EmbedRequest
from ..domain.errors import ViolationCollector
from ..domain.provider_options import OPENAI_OPTIONS
from ..domain.request_metadata import check_end_user_id, check_tags
from .features import features_from_json

ROLES = {
    "system": chat.Role.SYSTEM,
    "developer": chat.Role.SYSTEM,  # OpenAI's newer name for system instructions
    "user": chat.Role.USER,
    "assistant": chat.Role.ASSISTANT,
    "tool": chat.Role.TOOL,
}
_MAX_STOP = 4  # as OpenAI
_DEFAULT_CONFIG = chat.GenerationConfig()


def _string(value: Any, path: str, errors: ViolationCollector, *, required: bool = False) -> str:
    if value is None:
        if required:
            errors.add(path, "is required")
        return ""
    if not isinstance(value, str):
        errors.add(path, "must be a string")
        return ""
    return value


def _number(body: dict[str, Any], name: str, errors: ViolationCollector) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        errors.add(name, "must be a finite number")
        return None
    return float(value)


def _integer(body: dict[str, Any], name: str, errors: ViolationCollector) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        errors.add(name, "must be an integer")
        return None
    return value


def _content(value: Any, path: str, errors: ViolationCollector) -> tuple[str, tuple[chat.ContentPart, ...]]:
    """A message's content: a string, null, or an array of `text` and
    `image_url` parts. Text alone is joined into the content; with images the
    parts stay in order, so `messages[i].parts[j]` in a later error is
    `messages[i].content[j]` here."""
    if value is None or isinstance(value, str):
        return value or "", ()
    if not isinstance(value, list):
        errors.add(path, "must be a string or an array of content parts")
        return "", ()
    parts: list[chat.ContentPart] = []
    for index, part in enumerate(value):
        part_path = f"{path}[{index}]"
        if not isinstance(part, dict):
            errors.add(part_path, "must be a content part object")
        elif part.get("type") == "text":
            parts.append(chat.TextPart(_string(part.get("text"), f"{part_path}.text", errors, required=True)))
        elif part.get("type") == "image_url":
            parts.append(_image_part(part.get("image_url"), f"{part_path}.image_url", errors))
        else:
            kind = str(part.get("type"))[:32]
            errors.add(f"{part_path}.type", f"content part type {kind!r} is not supported; use 'text' or 'image_url'")
    if not any(type(p) is chat.ImagePart for p in parts):
        return "".join(p.text for p in parts if type(p) is chat.TextPart), ()
    return "", tuple(parts)


_DETAILS = {d.value: d for d in chat.ImageDetail}
# data:[<mime type>][;base64],<data>; only base64 data URLs carry images.
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*),(?P<data>.*)", re.DOTALL)


def _image_part(value: Any, path: str, errors: ViolationCollector) -> chat.ImagePart:
    """OpenAI's `image_url` {url, detail}: an https URL, or a base64 data:
    URL decoded to inline bytes (checked by the domain like any image)."""
    if not isinstance(value, dict):
        errors.add(path, "is required: {url, detail}")
        return chat.ImagePart()
    detail = None
    if value.get("detail") is not None:
        detail = _DETAILS.get(value["detail"]) if isinstance(value["detail"], str) else None
        if detail is None:
            errors.add(f"{path}.detail", f"must be one of {', '.join(_DETAILS)}")
    url = _string(value.get("url"), f"{path}.url", errors, required=True)
    if not url.startswith("data:"):
        return chat.ImagePart(url=url, detail=detail)
    match = _DATA_URL.fullmatch(url)
    if match is None or ";base64" not in match["params"] or not match["mime"]:
        errors.add(f"{path}.url", "a data: URL must be data:<image type>;base64,<data>")
        return chat.ImagePart(detail=detail)
    try:
        data = base64.b64decode(match["data"], validate=True)
    except ValueError:
        errors.add(f"{path}.url", "the data: URL's data is not valid base64")
        return chat.ImagePart(detail=detail)
    if not data:
        errors.add(f"{path}.url", "the data: URL holds no data")
    return chat.ImagePart(data=data, mime_type=match["mime"].lower(), detail=detail)


def _tool_calls(value: Any, path: str, errors: ViolationCollector) -> tuple[chat.ToolCall, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.add(path, "must be an array")
        return ()
    calls = []
    for index, call in enumerate(value):
        call_path = f"{path}[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            errors.add(f"{call_path}.function", "is required: {name, arguments}")
            continue
        calls.append(
            chat.ToolCall(
                _string(call.get("id"), f"{call_path}.id", errors),
                _string(function.get("name"), f"{call_path}.function.name", errors, required=True),
                _string(function.get("arguments"), f"{call_path}.function.arguments", errors) or "{}",
            )
        )
    return tuple(calls)


def messages_from_json(value: Any, errors: ViolationCollector) -> list[chat.Message]:
    if not isinstance(value, list):
        errors.add("messages", "is required: an array of messages" if value is None else "must be an array")
        return []
    out = []
    for index, m in enumerate(value):
        path = f"messages[{index}]"
        if not isinstance(m, dict):
            errors.add(path, "must be a message object")
            continue
        role = ROLES.get(m.get("role"))  # type: ignore[arg-type]
        if role is None:
            errors.add(f"{path}.role", f"must be one of {', '.join(ROLES)}")
            role = chat.Role.USER
        content, parts = _content(m.get("content"), f"{path}.content", errors)
        out.append(
            chat.Message(
                role,
                content,
                _string(m.get("name"), f"{path}.name", errors),
                _string(m.get("tool_call_id"), f"{path}.tool_call_id", errors),
                _tool_calls(m.get("tool_calls"), f"{path}.tool_calls", errors),
                parts,
            )
        )
    return out


def _tools(value: Any, errors: ViolationCollector) -> tuple[chat.Tool, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.add("tools", "must be an array")
        return ()
    tools = []
    for index, tool in enumerate(value):
        path = f"tools[{index}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
            errors.add(path, "must be {type: 'function', function: {name, description, parameters}}")
            continue
        parameters = function.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        elif not isinstance(parameters, dict):
            errors.add(f"{path}.function.parameters", "must be a JSON schema object")
            parameters = {}
        tools.append(
            chat.Tool(
                _string(function.get("name"), f"{path}.function.name", errors, required=True),
                _string(function.get("description"), f"{path}.function.description", errors),
                parameters,
            )
        )
    return tuple(tools)


def _stop(value: Any, errors: ViolationCollector) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        errors.add("stop", "must be a string or an array of strings")
        return ()
    if len(stops) > _MAX_STOP:
        errors.add("stop", f"at most {_MAX_STOP} sequences")
    return tuple(stops)


def _refuse_unsupported(body: dict[str, Any], errors: ViolationCollector) -> None:
    """Fields whose non-default values the contract cannot honour yet: refused
    by name, so an app never gets an answer that ignored what it asked for."""
    n = body.get("n")
    if n is not None and n != 1:
        errors.add("n", "only one choice per request is supported")
    if body.get("logprobs"):
        errors.add("logprobs", "log probabilities are not supported")
    if body.get("audio") is not None or body.get("modalities") not in (None, ["text"]):
        errors.add("modalities", "only text output is supported")


def chat_request_from_json(body: dict[str, Any], errors: ViolationCollector) -> tuple[chat.ChatRequest, bool, bool]:
    """The domain request, whether to stream, and whether the stream ends with usage."""
    model = _string(body.get("model"), "model", errors, required=True)
    messages = messages_from_json(body.get("messages"), errors)
    max_tokens = _integer(body, "max_completion_tokens", errors)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", errors)
    config = chat.GenerationConfig(
        temperature=_number(body, "temperature", errors),
        top_p=_number(body, "top_p", errors),
        max_tokens=max_tokens,
        stop=_stop(body.get("stop"), errors),
        seed=_integer(body, "seed", errors),
        tools=_tools(body.get("tools"), errors),
        **features_from_json(body, errors),
    )
    _refuse_unsupported(body, errors)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        errors.add("stream", "must be a boolean")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            errors.add("stream_options", "must be an object")
        else:
            include_usage = options.get("include_usage") is True
    request = chat.ChatRequest(model, messages, config if config != _DEFAULT_CONFIG else _DEFAULT_CONFIG)
    request.metadata = _metadata(body, errors)
    request.provider_options = _provider_options(body, errors)
    return request, stream is True, include_usage


def _metadata(body: dict[str, Any], errors: ViolationCollector) -> chat.RequestMetadata | None:
    """OpenAI's `user` as the end user and its `metadata` map as the tags,
    checked here so problems are named as the app wrote them; only a valid
    pair reaches the request (the orchestrator would name its own fields)."""
    user, tags = body.get("user"), body.get("metadata")
    if user is None and tags is None:
        return None
    found = len(errors.violations)
    end_user_id = _string(user, "user", errors)
    check_end_user_id(end_user_id, errors, "user")
    if tags is not None and (not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())):
        errors.add("metadata", "must be an object of string values")
        tags = {}
    check_tags(tags or {}, errors, "metadata")
    return chat.RequestMetadata(end_user_id, dict(tags or {})) if len(errors.violations) == found else None


def _provider_options(body: dict[str, Any], errors: ViolationCollector) -> chat.ProviderOptions | None:
    """OpenAI's own parameters on the allow-list (presence_penalty,
    logit_bias, service_tier...) passed through to OpenAI deployments; a
    model with none refuses them (docs/http.md)."""
    # `metadata` is the tags here (`_metadata`), as apps on the SDK mean it.
    given = {name: body[name] for name in OPENAI_OPTIONS if name != "metadata" and body.get(name) is not None}
    if not given:
        return None
    found = len(errors.violations)
    for name, value in given.items():
        OPENAI_OPTIONS[name](value, errors, name)
    return chat.ProviderOptions(openai=given) if len(errors.violations) == found else None


def embed_request_from_json(body: dict[str, Any], errors: ViolationCollector) -> tuple[EmbedRequest, bool]:
    """The domain request, and whether vectors go back as base64 (the openai SDK's default)."""
    model = _string(body.get("model"), "model", errors, required=True)
    value = body.get("input")
    inputs: list[str] = []
    if isinstance(value, str):
        inputs = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        inputs = list(value)
    elif value is None:
        errors.add("input", "is required: a string or an array of strings")
    else:
        errors.add("input", "must be a string or an array of strings (token arrays are not supported)")
    dimensions = _integer(body, "dimensions", errors)
    encoding = body.get("encoding_format")
    if encoding not in (None, "float", "base64"):
        errors.add("encoding_format", "must be 'float' or 'base64'")
    return EmbedRequest(model, inputs, dimensions), encoding == "base64"
