"""The response cache's key: what makes two requests the same question."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Callable
from typing import Any

from .chat import ChatRequest
from .images import image_digest

# Part of every key: changing how requests are normalised changes this, so
# entries written under the old rules are never read under the new ones.
KEY_VERSION = "v2"

# Fields of a ChatRequest, and of what it holds, that do not change the answer,
# as "Class.field": the only ones left out of the key. Every other field is in
# it, a field added later included, so forgetting to list one costs a cache
# miss, never a wrong answer (tests/test_cache_key.py walks the proto contract).
# The request's metadata (end user, tags) is for attribution: the same
# question from another end user or team shares the answer.
ANSWER_NEUTRAL_FIELDS = frozenset(
    {
        "ChatRequest.cache_bypass",
        "ChatRequest.cache_ttl_seconds",
        "ChatRequest.metadata",
        "RequestMetadata.end_user_id",
        "RequestMetadata.tags",
    }
)


def _as_set(values: Any) -> Any:
    return sorted(set(values))


def _json_value(text: str) -> Any:
    # Arguments that are not JSON are kept as the text they are.
    try:
        return {"json": json.loads(text)}
    except ValueError:
        return {"text": text}


# Fields compared by what they mean rather than as written: stop sequences as
# a set, JSON arguments by value (key order ignored), an inline image by the
# SHA-256 of its bytes (the key's text stays small).
_NORMALISED: dict[str, Callable[[Any], Any]] = {
    "GenerationConfig.stop": _as_set,
    "ToolCall.arguments_json": _json_value,
    "ImagePart.data": image_digest,
}


def cache_key(request: ChatRequest) -> str:
    """SHA-256 over the request as the model sees it: every field of the
    request and of the messages, tool calls, config and tools it holds, except
    those on ANSWER_NEUTRAL_FIELDS. Normalised so that requests that mean the
    same thing share a key: numbers by value (1 == 1.0), JSON objects whatever
    their key order, and `_NORMALISED`. The organisation is not part of it:
    caches partition by organisation themselves."""
    text = _KEY_ENCODER.encode([KEY_VERSION, _plain(request)])
    return hashlib.sha256(text.encode()).hexdigest()


# What json.dumps(plain, ensure_ascii=False, separators=(",", ":"),
# sort_keys=True) would build anew for every key.
_KEY_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _plain(value: Any) -> Any:
    """The value as JSON-encodable lists, dicts and scalars; a dataclass as
    the list of its key fields, in declaration order."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return int(value) if value.is_integer() else value
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if kind is dict:
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    fields = []
    for name, normalise in _key_fields(kind):
        field = getattr(value, name)
        if normalise is not None:
            field = normalise(field)
        # Most fields are text: no call for them (a key is made per request).
        fields.append(field if type(field) is str else _plain(field))
    return fields


_KeyFields = tuple[tuple[str, Callable[[Any], Any] | None], ...]
_KEY_FIELDS: dict[type, _KeyFields] = {}


def _key_fields(kind: type) -> _KeyFields:
    """The fields of a dataclass that are part of the key, each with its
    normaliser (None: as it is); worked out once per class."""
    fields = _KEY_FIELDS.get(kind)
    if fields is None:
        if not dataclasses.is_dataclass(kind):
            # A new kind of value in a request: say how it belongs in a key.
            raise TypeError(f"a cache key cannot hold a {kind.__name__}")
        paths = ((f"{kind.__name__}.{f.name}", f.name) for f in dataclasses.fields(kind))
        fields = tuple((name, _NORMALISED.get(path)) for path, name in paths if path not in ANSWER_NEUTRAL_FIELDS)
        _KEY_FIELDS[kind] = fields
    return fields
