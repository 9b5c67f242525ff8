"""The response cache's key: what makes two requests the same question."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .chat import ChatRequest, Message, Tool

# Part of every key: changing how requests are normalised changes this, so
# entries written under the old rules are never read under the new ones.
KEY_VERSION = "v1"


def cache_key(request: ChatRequest) -> str:
    """SHA-256 over the request as the model sees it: the alias, every
    message (role, content, name, tool call id, tool calls) and the generation
    config. Normalised so that requests that mean the same thing share a key:
    JSON arguments and schemas compared by value (key order ignored), floats
    as floats (1 == 1.0), stop sequences as a set. The organisation is not
    part of it: caches partition by organisation themselves."""
    config = request.config
    plain = [
        KEY_VERSION,
        request.model,
        [_message(m) for m in request.messages],
        None if config.temperature is None else float(config.temperature),
        None if config.top_p is None else float(config.top_p),
        config.max_tokens,
        sorted(set(config.stop)) if config.stop else [],
        config.seed,
        [_tool(t) for t in config.tools],
    ]
    text = _KEY_ENCODER.encode(plain)
    return hashlib.sha256(text.encode()).hexdigest()


# What json.dumps(plain, ensure_ascii=False, separators=(",", ":"),
# sort_keys=True) would build anew for every key.
_KEY_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _message(message: Message) -> list[Any]:
    calls = [[c.id, c.name, _json_value(c.arguments_json)] for c in message.tool_calls]
    return [message.role.value, message.content, message.name, message.tool_call_id, calls]


def _tool(tool: Tool) -> list[Any]:
    return [tool.name, tool.description, tool.parameters]


def _json_value(text: str) -> Any:
    # Arguments that are not JSON are kept as the text they are.
    try:
        return {"json": json.loads(text)}
    except ValueError:
        return {"text": text}
