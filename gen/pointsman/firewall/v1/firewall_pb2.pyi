import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from pointsman.type.v1 import firewall_pb2 as _firewall_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ScanDetector(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCAN_DETECTOR_UNSPECIFIED: _ClassVar[ScanDetector]
    SCAN_DETECTOR_PII: _ClassVar[ScanDetector]
    SCAN_DETECTOR_SECRETS: _ClassVar[ScanDetector]
    SCAN_DETECTOR_TOXICITY: _ClassVar[ScanDetector]
    SCAN_DETECTOR_RULES: _ClassVar[ScanDetector]

class RuleKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_KIND_UNSPECIFIED: _ClassVar[RuleKind]
    RULE_KIND_BLOCK: _ClassVar[RuleKind]
    RULE_KIND_ALLOW: _ClassVar[RuleKind]

class MatchType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MATCH_TYPE_UNSPECIFIED: _ClassVar[MatchType]
    MATCH_TYPE_SUBSTRING: _ClassVar[MatchType]
    MATCH_TYPE_REGEX: _ClassVar[MatchType]
    MATCH_TYPE_TOPIC: _ClassVar[MatchType]

class RuleScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_SCOPE_UNSPECIFIED: _ClassVar[RuleScope]
    RULE_SCOPE_INPUT: _ClassVar[RuleScope]
    RULE_SCOPE_OUTPUT: _ClassVar[RuleScope]
    RULE_SCOPE_BOTH: _ClassVar[RuleScope]

class ChangeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_TYPE_UNSPECIFIED: _ClassVar[ChangeType]
    CHANGE_TYPE_CREATED: _ClassVar[ChangeType]
    CHANGE_TYPE_UPDATED: _ClassVar[ChangeType]
    CHANGE_TYPE_DELETED: _ClassVar[ChangeType]
SCAN_DETECTOR_UNSPECIFIED: ScanDetector
SCAN_DETECTOR_PII: ScanDetector
SCAN_DETECTOR_SECRETS: ScanDetector
SCAN_DETECTOR_TOXICITY: ScanDetector
SCAN_DETECTOR_RULES: ScanDetector
RULE_KIND_UNSPECIFIED: RuleKind
RULE_KIND_BLOCK: RuleKind
RULE_KIND_ALLOW: RuleKind
MATCH_TYPE_UNSPECIFIED: MatchType
MATCH_TYPE_SUBSTRING: MatchType
MATCH_TYPE_REGEX: MatchType
MATCH_TYPE_TOPIC: MatchType
RULE_SCOPE_UNSPECIFIED: RuleScope
RULE_SCOPE_INPUT: RuleScope
RULE_SCOPE_OUTPUT: RuleScope
RULE_SCOPE_BOTH: RuleScope
CHANGE_TYPE_UNSPECIFIED: ChangeType
CHANGE_TYPE_CREATED: ChangeType
CHANGE_TYPE_UPDATED: ChangeType
CHANGE_TYPE_DELETED: ChangeType

class ScanRequest(_message.Message):
    __slots__ = ("text", "direction", "detectors")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DETECTORS_FIELD_NUMBER: _ClassVar[int]
    text: str
    direction: _firewall_pb2.Direction
    detectors: _containers.RepeatedScalarFieldContainer[ScanDetector]
    def __init__(self, text: _Optional[str] = ..., direction: _Optional[_Union[_firewall_pb2.Direction, str]] = ..., detectors: _Optional[_Iterable[_Union[ScanDetector, str]]] = ...) -> None: ...

class ScanResponse(_message.Message):
    __slots__ = ("verdict",)
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    verdict: _firewall_pb2.Verdict
    def __init__(self, verdict: _Optional[_Union[_firewall_pb2.Verdict, _Mapping]] = ...) -> None: ...

class ScanStreamRequest(_message.Message):
    __slots__ = ("item_id", "text", "direction", "detectors")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DETECTORS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    text: str
    direction: _firewall_pb2.Direction
    detectors: _containers.RepeatedScalarFieldContainer[ScanDetector]
    def __init__(self, item_id: _Optional[str] = ..., text: _Optional[str] = ..., direction: _Optional[_Union[_firewall_pb2.Direction, str]] = ..., detectors: _Optional[_Iterable[_Union[ScanDetector, str]]] = ...) -> None: ...

class ScanStreamResponse(_message.Message):
    __slots__ = ("item_id", "verdict")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    verdict: _firewall_pb2.Verdict
    def __init__(self, item_id: _Optional[str] = ..., verdict: _Optional[_Union[_firewall_pb2.Verdict, _Mapping]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("name", "kind", "match_type", "pattern", "keywords", "description", "enabled", "scope", "create_time", "update_time", "examples", "threshold")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MATCH_TYPE_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    KEYWORDS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: RuleKind
    match_type: MatchType
    pattern: str
    keywords: _containers.RepeatedScalarFieldContainer[str]
    description: str
    enabled: bool
    scope: RuleScope
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    examples: _containers.RepeatedScalarFieldContainer[str]
    threshold: float
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[RuleKind, str]] = ..., match_type: _Optional[_Union[MatchType, str]] = ..., pattern: _Optional[str] = ..., keywords: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., enabled: _Optional[bool] = ..., scope: _Optional[_Union[RuleScope, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., examples: _Optional[_Iterable[str]] = ..., threshold: _Optional[float] = ...) -> None: ...

class CreateRuleRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class CreateRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class GetRuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class ListRulesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRulesResponse(_message.Message):
    __slots__ = ("rules", "next_page_token")
    RULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    next_page_token: str
    def __init__(self, rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateRuleRequest(_message.Message):
    __slots__ = ("rule", "update_mask")
    RULE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateRuleResponse(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: Rule
    def __init__(self, rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class DeleteRuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteRuleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchRulesResponse(_message.Message):
    __slots__ = ("snapshot", "change")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    snapshot: RuleSnapshot
    change: RuleChange
    def __init__(self, snapshot: _Optional[_Union[RuleSnapshot, _Mapping]] = ..., change: _Optional[_Union[RuleChange, _Mapping]] = ...) -> None: ...

class RuleSnapshot(_message.Message):
    __slots__ = ("rules", "has_more")
    RULES_FIELD_NUMBER: _ClassVar[int]
    HAS_MORE_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    has_more: bool
    def __init__(self, rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., has_more: _Optional[bool] = ...) -> None: ...

class RuleChange(_message.Message):
    __slots__ = ("change_type", "rule")
    CHANGE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    change_type: ChangeType
    rule: Rule
    def __init__(self, change_type: _Optional[_Union[ChangeType, str]] = ..., rule: _Optional[_Union[Rule, _Mapping]] = ...) -> None: ...

class ListDecisionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "action", "direction", "category", "start_time", "end_time")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    action: _firewall_pb2.Action
    direction: _firewall_pb2.Direction
    category: _firewall_pb2.Category
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., action: _Optional[_Union[_firewall_pb2.Action, str]] = ..., direction: _Optional[_Union[_firewall_pb2.Direction, str]] = ..., category: _Optional[_Union[_firewall_pb2.Category, str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDecisionsResponse(_message.Message):
    __slots__ = ("decisions", "next_page_token")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    next_page_token: str
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("name", "create_time", "principal", "organisation", "direction", "action", "findings", "content_sha256", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ORGANISATION_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    create_time: _timestamp_pb2.Timestamp
    principal: str
    organisation: str
    direction: _firewall_pb2.Direction
    action: _firewall_pb2.Action
    findings: _containers.RepeatedCompositeFieldContainer[_firewall_pb2.Finding]
    content_sha256: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., principal: _Optional[str] = ..., organisation: _Optional[str] = ..., direction: _Optional[_Union[_firewall_pb2.Direction, str]] = ..., action: _Optional[_Union[_firewall_pb2.Action, str]] = ..., findings: _Optional[_Iterable[_Union[_firewall_pb2.Finding, _Mapping]]] = ..., content_sha256: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...
