"""Domain dataclasses to and from JSON, driven by their type hints, so a field
added to a dataclass is stored without a migration. Fields at their default are
left out; unknown keys are ignored and missing ones take the default, so
records written by an older or newer version still read."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

from ...domain.firewall.verdict import Decision, Finding

T = TypeVar("T")


# One encoder: json.dumps builds a new one per call when given separators.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode
_SCALARS = frozenset({str, int, float, bool, type(None)})
_NO_DEFAULT = object()


def to_plain(value: Any) -> Any:
    if type(value) in _SCALARS:  # most values: decisions are encoded on every call
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclass_to_plain(value)
    return value


@cache
def _fields_and_defaults(cls: type) -> tuple[tuple[str, Any], ...]:
    """Each field's name and default (a factory's value), or _NO_DEFAULT."""
    fields = []
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = _NO_DEFAULT
        fields.append((field.name, default))
    return tuple(fields)


def dataclass_to_plain(value: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for name, default in _fields_and_defaults(type(value)):  # type: ignore[arg-type]  # a class is hashable
        if name in skip:
            continue
        item = getattr(value, name)
        if default is not _NO_DEFAULT and item == default:
            continue
        plain[name] = to_plain(item)
    return plain


@cache
def _hints(cls: Any) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_plain(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return from_plain(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        (item, *_) = typing.get_args(hint) or (Any,)
        return tuple(from_plain(item, v) for v in value)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [from_plain(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(hint) or (Any, Any)
        return {k: from_plain(item, v) for k, v in value.items()}
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return hint(value)
        if hint is datetime:
            return datetime.fromisoformat(value)
        if hint is float and isinstance(value, int):
            return float(value)
        if dataclasses.is_dataclass(hint):
            return dataclass_from_plain(hint, value)
    return value


def dataclass_from_plain(cls: type[T], plain: dict[str, Any], **given: Any) -> T:
    hints = _hints(cls)  # type: ignore[arg-type]  # a class is hashable
    values = dict(given)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name not in values and field.name in plain:
            values[field.name] = from_plain(hints[field.name], plain[field.name])
    return cls(**values)


def findings_to_json(findings: tuple[Finding, ...]) -> str:
    if not findings:  # most decisions: written for every call, so no encoder for them
        return "[]"
    return _compact_json([dataclass_to_plain(f) for f in findings])


def findings_from_json(text: str) -> tuple[Finding, ...]:
    return tuple(dataclass_from_plain(Finding, f) for f in json.loads(text))


# Decision fields with a column of their own; any other field (one added
# later) travels in the `details` JSON column.
DECISION_COLUMNS = frozenset(
    {
        "id",
        "create_time",
        "organisation",
        "principal",
        "direction",
        "action",
        "findings",
        "content_sha256",
        "request_id",
    }
)


# None today: every field has its column, and a decision's details are "{}".
_DETAIL_FIELDS = tuple(f.name for f in dataclasses.fields(Decision) if f.name not in DECISION_COLUMNS)


def decision_details_to_json(decision: Decision) -> str:
    if not _DETAIL_FIELDS:  # written for every decision: no encoder when there is nothing to encode
        return "{}"
    return _compact_json(dataclass_to_plain(decision, skip=DECISION_COLUMNS))


def decision_categories(decision: Decision) -> list[str]:
    if not decision.findings:
        return []
    return sorted({f.category.value for f in decision.findings})
