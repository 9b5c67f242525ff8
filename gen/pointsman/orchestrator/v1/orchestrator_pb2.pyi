import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from pointsman.type.v1 import chat_pb2 as _chat_pb2
from pointsman.type.v1 import firewall_pb2 as _firewall_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_DECISION_UNSPECIFIED: _ClassVar[RouteDecision]
    ROUTE_DECISION_KEYWORD: _ClassVar[RouteDecision]
    ROUTE_DECISION_EMBEDDING: _ClassVar[RouteDecision]
    ROUTE_DECISION_CLASSIFIER_MODEL: _ClassVar[RouteDecision]
    ROUTE_DECISION_CLASSIFIER_FALLBACK: _ClassVar[RouteDecision]

class CacheSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CACHE_SOURCE_UNSPECIFIED: _ClassVar[CacheSource]
    CACHE_SOURCE_EXACT: _ClassVar[CacheSource]
    CACHE_SOURCE_SEMANTIC: _ClassVar[CacheSource]

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_TOOL_CALLS: _ClassVar[FinishReason]
    FINISH_REASON_CONTENT_FILTER: _ClassVar[FinishReason]

class Provider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVIDER_UNSPECIFIED: _ClassVar[Provider]
    PROVIDER_BUILTIN: _ClassVar[Provider]
    PROVIDER_OPENAI: _ClassVar[Provider]
    PROVIDER_ANTHROPIC: _ClassVar[Provider]

class CircuitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIRCUIT_STATE_UNSPECIFIED: _ClassVar[CircuitState]
    CIRCUIT_STATE_CLOSED: _ClassVar[CircuitState]
    CIRCUIT_STATE_OPEN: _ClassVar[CircuitState]
    CIRCUIT_STATE_HALF_OPEN: _ClassVar[CircuitState]

class RoutingStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTING_STRATEGY_UNSPECIFIED: _ClassVar[RoutingStrategy]
    ROUTING_STRATEGY_PRIORITY: _ClassVar[RoutingStrategy]
    ROUTING_STRATEGY_WEIGHTED: _ClassVar[RoutingStrategy]
    ROUTING_STRATEGY_LATENCY: _ClassVar[RoutingStrategy]

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_CHAT: _ClassVar[ModelKind]
    MODEL_KIND_EMBEDDING: _ClassVar[ModelKind]

class BatchState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_STATE_UNSPECIFIED: _ClassVar[BatchState]
    BATCH_STATE_RUNNING: _ClassVar[BatchState]
    BATCH_STATE_DONE: _ClassVar[BatchState]
    BATCH_STATE_CANCELLING: _ClassVar[BatchState]
    BATCH_STATE_CANCELLED: _ClassVar[BatchState]
ROUTE_DECISION_UNSPECIFIED: RouteDecision
ROUTE_DECISION_KEYWORD: RouteDecision
ROUTE_DECISION_EMBEDDING: RouteDecision
ROUTE_DECISION_CLASSIFIER_MODEL: RouteDecision
ROUTE_DECISION_CLASSIFIER_FALLBACK: RouteDecision
CACHE_SOURCE_UNSPECIFIED: CacheSource
CACHE_SOURCE_EXACT: CacheSource
CACHE_SOURCE_SEMANTIC: CacheSource
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_TOOL_CALLS: FinishReason
FINISH_REASON_CONTENT_FILTER: FinishReason
PROVIDER_UNSPECIFIED: Provider
PROVIDER_BUILTIN: Provider
PROVIDER_OPENAI: Provider
PROVIDER_ANTHROPIC: Provider
CIRCUIT_STATE_UNSPECIFIED: CircuitState
CIRCUIT_STATE_CLOSED: CircuitState
CIRCUIT_STATE_OPEN: CircuitState
CIRCUIT_STATE_HALF_OPEN: CircuitState
ROUTING_STRATEGY_UNSPECIFIED: RoutingStrategy
ROUTING_STRATEGY_PRIORITY: RoutingStrategy
ROUTING_STRATEGY_WEIGHTED: RoutingStrategy
ROUTING_STRATEGY_LATENCY: RoutingStrategy
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_CHAT: ModelKind
MODEL_KIND_EMBEDDING: ModelKind
BATCH_STATE_UNSPECIFIED: BatchState
BATCH_STATE_RUNNING: BatchState
BATCH_STATE_DONE: BatchState
BATCH_STATE_CANCELLING: BatchState
BATCH_STATE_CANCELLED: BatchState

class ChatRequest(_message.Message):
    __slots__ = ("model", "messages", "config", "cache", "metadata", "provider_options")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    config: _chat_pb2.GenerationConfig
    cache: CacheControl
    metadata: RequestMetadata
    provider_options: ProviderOptions
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_chat_pb2.ChatMessage, _Mapping]]] = ..., config: _Optional[_Union[_chat_pb2.GenerationConfig, _Mapping]] = ..., cache: _Optional[_Union[CacheControl, _Mapping]] = ..., metadata: _Optional[_Union[RequestMetadata, _Mapping]] = ..., provider_options: _Optional[_Union[ProviderOptions, _Mapping]] = ...) -> None: ...

class CacheControl(_message.Message):
    __slots__ = ("bypass", "ttl")
    BYPASS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    bypass: bool
    ttl: _duration_pb2.Duration
    def __init__(self, bypass: _Optional[bool] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RequestMetadata(_message.Message):
    __slots__ = ("end_user_id", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    END_USER_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    end_user_id: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, end_user_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ProviderOptions(_message.Message):
    __slots__ = ("openai", "anthropic")
    OPENAI_FIELD_NUMBER: _ClassVar[int]
    ANTHROPIC_FIELD_NUMBER: _ClassVar[int]
    openai: _struct_pb2.Struct
    anthropic: _struct_pb2.Struct
    def __init__(self, openai: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., anthropic: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ChatResponse(_message.Message):
    __slots__ = ("start", "text_delta", "tool_call_delta", "firewall_notice", "usage", "finish", "reasoning_delta")
    START_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_DELTA_FIELD_NUMBER: _ClassVar[int]
    FIREWALL_NOTICE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    REASONING_DELTA_FIELD_NUMBER: _ClassVar[int]
    start: ChatStart
    text_delta: TextDelta
    tool_call_delta: ToolCallDelta
    firewall_notice: FirewallNotice
    usage: _chat_pb2.Usage
    finish: ChatFinish
    reasoning_delta: ReasoningDelta
    def __init__(self, start: _Optional[_Union[ChatStart, _Mapping]] = ..., text_delta: _Optional[_Union[TextDelta, _Mapping]] = ..., tool_call_delta: _Optional[_Union[ToolCallDelta, _Mapping]] = ..., firewall_notice: _Optional[_Union[FirewallNotice, _Mapping]] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., finish: _Optional[_Union[ChatFinish, _Mapping]] = ..., reasoning_delta: _Optional[_Union[ReasoningDelta, _Mapping]] = ...) -> None: ...

class ReasoningDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ChatStart(_message.Message):
    __slots__ = ("request_id", "model", "deployment", "cached", "cache_source", "route_class", "routed_model", "route_decision")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    CACHE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CLASS_FIELD_NUMBER: _ClassVar[int]
    ROUTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_DECISION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    deployment: Deployment
    cached: bool
    cache_source: CacheSource
    route_class: str
    routed_model: str
    route_decision: RouteDecision
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., deployment: _Optional[_Union[Deployment, _Mapping]] = ..., cached: _Optional[bool] = ..., cache_source: _Optional[_Union[CacheSource, str]] = ..., route_class: _Optional[str] = ..., routed_model: _Optional[str] = ..., route_decision: _Optional[_Union[RouteDecision, str]] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class ToolCallDelta(_message.Message):
    __slots__ = ("index", "id", "name", "arguments_delta")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_DELTA_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    name: str
    arguments_delta: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., name: _Optional[str] = ..., arguments_delta: _Optional[str] = ...) -> None: ...

class FirewallNotice(_message.Message):
    __slots__ = ("direction", "verdict", "reasoning")
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    direction: _firewall_pb2.Direction
    verdict: _firewall_pb2.Verdict
    reasoning: bool
    def __init__(self, direction: _Optional[_Union[_firewall_pb2.Direction, str]] = ..., verdict: _Optional[_Union[_firewall_pb2.Verdict, _Mapping]] = ..., reasoning: _Optional[bool] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("time_to_first_token", "total")
    TIME_TO_FIRST_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    time_to_first_token: _duration_pb2.Duration
    total: _duration_pb2.Duration
    def __init__(self, time_to_first_token: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., total: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ChatFinish(_message.Message):
    __slots__ = ("reason", "timings", "schema_valid")
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VALID_FIELD_NUMBER: _ClassVar[int]
    reason: FinishReason
    timings: Timings
    schema_valid: bool
    def __init__(self, reason: _Optional[_Union[FinishReason, str]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., schema_valid: _Optional[bool] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("name", "provider", "model", "endpoint", "weight", "timeout", "state")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    provider: Provider
    model: str
    endpoint: str
    weight: int
    timeout: _duration_pb2.Duration
    state: DeploymentState
    def __init__(self, name: _Optional[str] = ..., provider: _Optional[_Union[Provider, str]] = ..., model: _Optional[str] = ..., endpoint: _Optional[str] = ..., weight: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., state: _Optional[_Union[DeploymentState, _Mapping]] = ...) -> None: ...

class DeploymentState(_message.Message):
    __slots__ = ("circuit", "latency", "consecutive_failures")
    CIRCUIT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    circuit: CircuitState
    latency: _duration_pb2.Duration
    consecutive_failures: int
    def __init__(self, circuit: _Optional[_Union[CircuitState, str]] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., consecutive_failures: _Optional[int] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("model", "messages", "config", "cache", "metadata", "provider_options")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    config: _chat_pb2.GenerationConfig
    cache: CacheControl
    metadata: RequestMetadata
    provider_options: ProviderOptions
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_chat_pb2.ChatMessage, _Mapping]]] = ..., config: _Optional[_Union[_chat_pb2.GenerationConfig, _Mapping]] = ..., cache: _Optional[_Union[CacheControl, _Mapping]] = ..., metadata: _Optional[_Union[RequestMetadata, _Mapping]] = ..., provider_options: _Optional[_Union[ProviderOptions, _Mapping]] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("start", "message", "usage", "finish", "firewall_notices", "reasoning")
    START_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    FIREWALL_NOTICES_FIELD_NUMBER: _ClassVar[int]
    REASONING_FIELD_NUMBER: _ClassVar[int]
    start: ChatStart
    message: _chat_pb2.ChatMessage
    usage: _chat_pb2.Usage
    finish: ChatFinish
    firewall_notices: _containers.RepeatedCompositeFieldContainer[FirewallNotice]
    reasoning: str
    def __init__(self, start: _Optional[_Union[ChatStart, _Mapping]] = ..., message: _Optional[_Union[_chat_pb2.ChatMessage, _Mapping]] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., finish: _Optional[_Union[ChatFinish, _Mapping]] = ..., firewall_notices: _Optional[_Iterable[_Union[FirewallNotice, _Mapping]]] = ..., reasoning: _Optional[str] = ...) -> None: ...

class ConverseRequest(_message.Message):
    __slots__ = ("setup", "turn", "cancel")
    SETUP_FIELD_NUMBER: _ClassVar[int]
    TURN_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    setup: ConversationSetup
    turn: UserTurn
    cancel: CancelTurn
    def __init__(self, setup: _Optional[_Union[ConversationSetup, _Mapping]] = ..., turn: _Optional[_Union[UserTurn, _Mapping]] = ..., cancel: _Optional[_Union[CancelTurn, _Mapping]] = ...) -> None: ...

class ConversationSetup(_message.Message):
    __slots__ = ("model", "system_prompt", "config", "conversation", "metadata", "provider_options")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    system_prompt: str
    config: _chat_pb2.GenerationConfig
    conversation: str
    metadata: RequestMetadata
    provider_options: ProviderOptions
    def __init__(self, model: _Optional[str] = ..., system_prompt: _Optional[str] = ..., config: _Optional[_Union[_chat_pb2.GenerationConfig, _Mapping]] = ..., conversation: _Optional[str] = ..., metadata: _Optional[_Union[RequestMetadata, _Mapping]] = ..., provider_options: _Optional[_Union[ProviderOptions, _Mapping]] = ...) -> None: ...

class UserTurn(_message.Message):
    __slots__ = ("turn_id", "content", "tool_results")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULTS_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    content: str
    tool_results: _containers.RepeatedCompositeFieldContainer[ToolResult]
    def __init__(self, turn_id: _Optional[str] = ..., content: _Optional[str] = ..., tool_results: _Optional[_Iterable[_Union[ToolResult, _Mapping]]] = ...) -> None: ...

class ToolResult(_message.Message):
    __slots__ = ("tool_call_id", "content")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    content: str
    def __init__(self, tool_call_id: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class CancelTurn(_message.Message):
    __slots__ = ("turn_id",)
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    def __init__(self, turn_id: _Optional[str] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("turn_id", "started", "start", "text_delta", "tool_call_delta", "firewall_notice", "usage", "finish", "error", "reasoning_delta")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_DELTA_FIELD_NUMBER: _ClassVar[int]
    FIREWALL_NOTICE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASONING_DELTA_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    started: ConversationStarted
    start: ChatStart
    text_delta: TextDelta
    tool_call_delta: ToolCallDelta
    firewall_notice: FirewallNotice
    usage: _chat_pb2.Usage
    finish: ChatFinish
    error: TurnError
    reasoning_delta: ReasoningDelta
    def __init__(self, turn_id: _Optional[str] = ..., started: _Optional[_Union[ConversationStarted, _Mapping]] = ..., start: _Optional[_Union[ChatStart, _Mapping]] = ..., text_delta: _Optional[_Union[TextDelta, _Mapping]] = ..., tool_call_delta: _Optional[_Union[ToolCallDelta, _Mapping]] = ..., firewall_notice: _Optional[_Union[FirewallNotice, _Mapping]] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., finish: _Optional[_Union[ChatFinish, _Mapping]] = ..., error: _Optional[_Union[TurnError, _Mapping]] = ..., reasoning_delta: _Optional[_Union[ReasoningDelta, _Mapping]] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetConversationResponse(_message.Message):
    __slots__ = ("name", "messages")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    def __init__(self, name: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_chat_pb2.ChatMessage, _Mapping]]] = ...) -> None: ...

class DeleteConversationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteConversationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConversationStarted(_message.Message):
    __slots__ = ("conversation", "history_length")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    HISTORY_LENGTH_FIELD_NUMBER: _ClassVar[int]
    conversation: str
    history_length: int
    def __init__(self, conversation: _Optional[str] = ..., history_length: _Optional[int] = ...) -> None: ...

class TurnError(_message.Message):
    __slots__ = ("code", "reason", "message", "incomplete")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: str
    message: str
    incomplete: bool
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., incomplete: _Optional[bool] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("models", "messages", "config", "judge_model", "metadata", "provider_options")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    JUDGE_MODEL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedScalarFieldContainer[str]
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    config: _chat_pb2.GenerationConfig
    judge_model: str
    metadata: RequestMetadata
    provider_options: ProviderOptions
    def __init__(self, models: _Optional[_Iterable[str]] = ..., messages: _Optional[_Iterable[_Union[_chat_pb2.ChatMessage, _Mapping]]] = ..., config: _Optional[_Union[_chat_pb2.GenerationConfig, _Mapping]] = ..., judge_model: _Optional[str] = ..., metadata: _Optional[_Union[RequestMetadata, _Mapping]] = ..., provider_options: _Optional[_Union[ProviderOptions, _Mapping]] = ...) -> None: ...

class CompareResponse(_message.Message):
    __slots__ = ("model", "synthesis", "start", "text_delta", "tool_call_delta", "usage", "finish", "error", "reasoning_delta")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYNTHESIS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_DELTA_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REASONING_DELTA_FIELD_NUMBER: _ClassVar[int]
    model: str
    synthesis: bool
    start: ChatStart
    text_delta: TextDelta
    tool_call_delta: ToolCallDelta
    usage: _chat_pb2.Usage
    finish: ChatFinish
    error: TurnError
    reasoning_delta: ReasoningDelta
    def __init__(self, model: _Optional[str] = ..., synthesis: _Optional[bool] = ..., start: _Optional[_Union[ChatStart, _Mapping]] = ..., text_delta: _Optional[_Union[TextDelta, _Mapping]] = ..., tool_call_delta: _Optional[_Union[ToolCallDelta, _Mapping]] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., finish: _Optional[_Union[ChatFinish, _Mapping]] = ..., error: _Optional[_Union[TurnError, _Mapping]] = ..., reasoning_delta: _Optional[_Union[ReasoningDelta, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("name", "alias", "deployments", "builtin", "strategy", "available", "kind", "dimensions", "router")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    alias: str
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    builtin: bool
    strategy: RoutingStrategy
    available: bool
    kind: ModelKind
    dimensions: int
    router: ModelRouter
    def __init__(self, name: _Optional[str] = ..., alias: _Optional[str] = ..., deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., builtin: _Optional[bool] = ..., strategy: _Optional[_Union[RoutingStrategy, str]] = ..., available: _Optional[bool] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., dimensions: _Optional[int] = ..., router: _Optional[_Union[ModelRouter, _Mapping]] = ...) -> None: ...

class ModelRouter(_message.Message):
    __slots__ = ("default_model", "classes", "classifier_model")
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_MODEL_FIELD_NUMBER: _ClassVar[int]
    default_model: str
    classes: _containers.RepeatedCompositeFieldContainer[RouterClass]
    classifier_model: str
    def __init__(self, default_model: _Optional[str] = ..., classes: _Optional[_Iterable[_Union[RouterClass, _Mapping]]] = ..., classifier_model: _Optional[str] = ...) -> None: ...

class RouterClass(_message.Message):
    __slots__ = ("name", "model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("model", "inputs", "dimensions")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    inputs: _containers.RepeatedScalarFieldContainer[str]
    dimensions: int
    def __init__(self, model: _Optional[str] = ..., inputs: _Optional[_Iterable[str]] = ..., dimensions: _Optional[int] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("model", "deployment", "embeddings", "usage")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    model: str
    deployment: Deployment
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    usage: _chat_pb2.Usage
    def __init__(self, model: _Optional[str] = ..., deployment: _Optional[_Union[Deployment, _Mapping]] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("index", "values")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    index: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, index: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class BatchItem(_message.Message):
    __slots__ = ("custom_id", "model", "messages", "config", "metadata", "provider_options")
    CUSTOM_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPTIONS_FIELD_NUMBER: _ClassVar[int]
    custom_id: str
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    config: _chat_pb2.GenerationConfig
    metadata: RequestMetadata
    provider_options: ProviderOptions
    def __init__(self, custom_id: _Optional[str] = ..., model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_chat_pb2.ChatMessage, _Mapping]]] = ..., config: _Optional[_Union[_chat_pb2.GenerationConfig, _Mapping]] = ..., metadata: _Optional[_Union[RequestMetadata, _Mapping]] = ..., provider_options: _Optional[_Union[ProviderOptions, _Mapping]] = ...) -> None: ...

class CreateBatchRequest(_message.Message):
    __slots__ = ("items", "max_concurrency")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BatchItem]
    max_concurrency: int
    def __init__(self, items: _Optional[_Iterable[_Union[BatchItem, _Mapping]]] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class CreateBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("name", "state", "total_items", "succeeded_items", "failed_items", "create_time", "cancelled_items")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    FAILED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: BatchState
    total_items: int
    succeeded_items: int
    failed_items: int
    create_time: _timestamp_pb2.Timestamp
    cancelled_items: int
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[BatchState, str]] = ..., total_items: _Optional[int] = ..., succeeded_items: _Optional[int] = ..., failed_items: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cancelled_items: _Optional[int] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class WatchBatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelBatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: Batch
    def __init__(self, batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class ListBatchesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBatchesResponse(_message.Message):
    __slots__ = ("batches", "next_page_token")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[Batch]
    next_page_token: str
    def __init__(self, batches: _Optional[_Iterable[_Union[Batch, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchBatchResponse(_message.Message):
    __slots__ = ("result", "done")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    result: BatchResult
    done: Batch
    def __init__(self, result: _Optional[_Union[BatchResult, _Mapping]] = ..., done: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class BatchResult(_message.Message):
    __slots__ = ("custom_id", "response", "error")
    CUSTOM_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    custom_id: str
    response: CompleteResponse
    error: TurnError
    def __init__(self, custom_id: _Optional[str] = ..., response: _Optional[_Union[CompleteResponse, _Mapping]] = ..., error: _Optional[_Union[TurnError, _Mapping]] = ...) -> None: ...

class ListCallsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "model", "principal", "status_code", "start_time", "end_time", "end_user_id", "tags", "route_class")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    END_USER_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CLASS_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    model: str
    principal: str
    status_code: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    end_user_id: str
    tags: _containers.ScalarMap[str, str]
    route_class: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., model: _Optional[str] = ..., principal: _Optional[str] = ..., status_code: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_user_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., route_class: _Optional[str] = ...) -> None: ...

class ListCallsResponse(_message.Message):
    __slots__ = ("calls", "next_page_token")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[Call]
    next_page_token: str
    def __init__(self, calls: _Optional[_Iterable[_Union[Call, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Call(_message.Message):
    __slots__ = ("name", "create_time", "request_id", "principal", "model", "deployment", "status_code", "input_tokens", "output_tokens", "latency_ms", "time_to_first_token_ms", "cache_hit", "cost_usd", "end_user_id", "tags", "route_class", "routed_model", "route_decision")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_MS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    END_USER_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CLASS_FIELD_NUMBER: _ClassVar[int]
    ROUTED_MODEL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_DECISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    create_time: _timestamp_pb2.Timestamp
    request_id: str
    principal: str
    model: str
    deployment: str
    status_code: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    time_to_first_token_ms: float
    cache_hit: bool
    cost_usd: float
    end_user_id: str
    tags: _containers.ScalarMap[str, str]
    route_class: str
    routed_model: str
    route_decision: RouteDecision
    def __init__(self, name: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., principal: _Optional[str] = ..., model: _Optional[str] = ..., deployment: _Optional[str] = ..., status_code: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., latency_ms: _Optional[float] = ..., time_to_first_token_ms: _Optional[float] = ..., cache_hit: _Optional[bool] = ..., cost_usd: _Optional[float] = ..., end_user_id: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., route_class: _Optional[str] = ..., routed_model: _Optional[str] = ..., route_decision: _Optional[_Union[RouteDecision, str]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ("window", "tag_keys", "by_end_user", "max_groups", "by_route_class")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    TAG_KEYS_FIELD_NUMBER: _ClassVar[int]
    BY_END_USER_FIELD_NUMBER: _ClassVar[int]
    MAX_GROUPS_FIELD_NUMBER: _ClassVar[int]
    BY_ROUTE_CLASS_FIELD_NUMBER: _ClassVar[int]
    window: _duration_pb2.Duration
    tag_keys: _containers.RepeatedScalarFieldContainer[str]
    by_end_user: bool
    max_groups: int
    by_route_class: bool
    def __init__(self, window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., tag_keys: _Optional[_Iterable[str]] = ..., by_end_user: _Optional[bool] = ..., max_groups: _Optional[int] = ..., by_route_class: _Optional[bool] = ...) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("start_time", "end_time", "requests", "failed_requests", "input_tokens", "output_tokens", "cache_hits", "cache_hit_ratio", "tokens_saved", "deployments", "firewall", "active_conversations", "cost_usd", "cost_saved_usd", "semantic_cache_hits", "semantic_tokens_saved", "semantic_cost_saved_usd", "messages_processed", "llm_calls", "llm_calls_skipped", "average_response_time_ms", "tags", "end_users", "groups_truncated", "route_classes")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    TOKENS_SAVED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    FIREWALL_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    COST_SAVED_USD_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_TOKENS_SAVED_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_COST_SAVED_USD_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    LLM_CALLS_FIELD_NUMBER: _ClassVar[int]
    LLM_CALLS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_RESPONSE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    END_USERS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CLASSES_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    requests: int
    failed_requests: int
    input_tokens: int
    output_tokens: int
    cache_hits: int
    cache_hit_ratio: float
    tokens_saved: int
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentStats]
    firewall: _containers.RepeatedCompositeFieldContainer[FirewallCategoryStats]
    active_conversations: int
    cost_usd: float
    cost_saved_usd: float
    semantic_cache_hits: int
    semantic_tokens_saved: int
    semantic_cost_saved_usd: float
    messages_processed: int
    llm_calls: int
    llm_calls_skipped: int
    average_response_time_ms: float
    tags: _containers.RepeatedCompositeFieldContainer[SpendStats]
    end_users: _containers.RepeatedCompositeFieldContainer[SpendStats]
    groups_truncated: bool
    route_classes: _containers.RepeatedCompositeFieldContainer[SpendStats]
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., requests: _Optional[int] = ..., failed_requests: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cache_hit_ratio: _Optional[float] = ..., tokens_saved: _Optional[int] = ..., deployments: _Optional[_Iterable[_Union[DeploymentStats, _Mapping]]] = ..., firewall: _Optional[_Iterable[_Union[FirewallCategoryStats, _Mapping]]] = ..., active_conversations: _Optional[int] = ..., cost_usd: _Optional[float] = ..., cost_saved_usd: _Optional[float] = ..., semantic_cache_hits: _Optional[int] = ..., semantic_tokens_saved: _Optional[int] = ..., semantic_cost_saved_usd: _Optional[float] = ..., messages_processed: _Optional[int] = ..., llm_calls: _Optional[int] = ..., llm_calls_skipped: _Optional[int] = ..., average_response_time_ms: _Optional[float] = ..., tags: _Optional[_Iterable[_Union[SpendStats, _Mapping]]] = ..., end_users: _Optional[_Iterable[_Union[SpendStats, _Mapping]]] = ..., groups_truncated: _Optional[bool] = ..., route_classes: _Optional[_Iterable[_Union[SpendStats, _Mapping]]] = ...) -> None: ...

class DeploymentStats(_message.Message):
    __slots__ = ("deployment", "requests", "failed_requests", "latency_p50_ms", "latency_p99_ms", "time_to_first_token_p50_ms", "cost_usd")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FIRST_TOKEN_P50_MS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    requests: int
    failed_requests: int
    latency_p50_ms: float
    latency_p99_ms: float
    time_to_first_token_p50_ms: float
    cost_usd: float
    def __init__(self, deployment: _Optional[str] = ..., requests: _Optional[int] = ..., failed_requests: _Optional[int] = ..., latency_p50_ms: _Optional[float] = ..., latency_p99_ms: _Optional[float] = ..., time_to_first_token_p50_ms: _Optional[float] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class SpendStats(_message.Message):
    __slots__ = ("tag_key", "value", "requests", "failed_requests", "input_tokens", "output_tokens", "cache_hits", "cost_usd", "router")
    TAG_KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HITS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    tag_key: str
    value: str
    requests: int
    failed_requests: int
    input_tokens: int
    output_tokens: int
    cache_hits: int
    cost_usd: float
    router: str
    def __init__(self, tag_key: _Optional[str] = ..., value: _Optional[str] = ..., requests: _Optional[int] = ..., failed_requests: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cache_hits: _Optional[int] = ..., cost_usd: _Optional[float] = ..., router: _Optional[str] = ...) -> None: ...

class FirewallCategoryStats(_message.Message):
    __slots__ = ("category", "blocked", "redacted", "logged")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    REDACTED_FIELD_NUMBER: _ClassVar[int]
    LOGGED_FIELD_NUMBER: _ClassVar[int]
    category: _firewall_pb2.Category
    blocked: int
    redacted: int
    logged: int
    def __init__(self, category: _Optional[_Union[_firewall_pb2.Category, str]] = ..., blocked: _Optional[int] = ..., redacted: _Optional[int] = ..., logged: _Optional[int] = ...) -> None: ...
