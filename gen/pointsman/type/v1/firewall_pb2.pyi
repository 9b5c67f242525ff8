from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_INPUT: _ClassVar[Direction]
    DIRECTION_OUTPUT: _ClassVar[Direction]

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_ALLOW: _ClassVar[Action]
    ACTION_REDACT: _ClassVar[Action]
    ACTION_BLOCK: _ClassVar[Action]
    ACTION_LOG: _ClassVar[Action]

class Category(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CATEGORY_UNSPECIFIED: _ClassVar[Category]
    CATEGORY_BLOCK_RULE: _ClassVar[Category]
    CATEGORY_NOT_ALLOWED: _ClassVar[Category]
    CATEGORY_PII: _ClassVar[Category]
    CATEGORY_SECRET: _ClassVar[Category]
    CATEGORY_TOXICITY: _ClassVar[Category]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_INPUT: Direction
DIRECTION_OUTPUT: Direction
ACTION_UNSPECIFIED: Action
ACTION_ALLOW: Action
ACTION_REDACT: Action
ACTION_BLOCK: Action
ACTION_LOG: Action
CATEGORY_UNSPECIFIED: Category
CATEGORY_BLOCK_RULE: Category
CATEGORY_NOT_ALLOWED: Category
CATEGORY_PII: Category
CATEGORY_SECRET: Category
CATEGORY_TOXICITY: Category

class Finding(_message.Message):
    __slots__ = ("category", "type", "rule", "start", "end", "score", "preview")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    category: Category
    type: str
    rule: str
    start: int
    end: int
    score: float
    preview: str
    def __init__(self, category: _Optional[_Union[Category, str]] = ..., type: _Optional[str] = ..., rule: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., score: _Optional[float] = ..., preview: _Optional[str] = ...) -> None: ...

class Verdict(_message.Message):
    __slots__ = ("action", "findings", "redacted_text", "decision")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    REDACTED_TEXT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    action: Action
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    redacted_text: str
    decision: str
    def __init__(self, action: _Optional[_Union[Action, str]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., redacted_text: _Optional[str] = ..., decision: _Optional[str] = ...) -> None: ...
