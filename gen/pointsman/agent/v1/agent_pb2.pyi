import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from pointsman.type.v1 import chat_pb2 as _chat_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolCallOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_CALL_OUTCOME_UNSPECIFIED: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_OK: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_TOOL_ERROR: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_PERMISSION_DENIED: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_INVALID_ARGUMENTS: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_TIMEOUT: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_UNAVAILABLE: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_BLOCKED: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_TOO_LARGE: _ClassVar[ToolCallOutcome]
    TOOL_CALL_OUTCOME_CANCELLED: _ClassVar[ToolCallOutcome]

class StopReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STOP_REASON_UNSPECIFIED: _ClassVar[StopReason]
    STOP_REASON_ANSWERED: _ClassVar[StopReason]
    STOP_REASON_MAX_STEPS: _ClassVar[StopReason]
    STOP_REASON_TOKEN_BUDGET: _ClassVar[StopReason]
    STOP_REASON_TIMEOUT: _ClassVar[StopReason]
    STOP_REASON_CANCELLED: _ClassVar[StopReason]
    STOP_REASON_ERROR: _ClassVar[StopReason]
TOOL_CALL_OUTCOME_UNSPECIFIED: ToolCallOutcome
TOOL_CALL_OUTCOME_OK: ToolCallOutcome
TOOL_CALL_OUTCOME_TOOL_ERROR: ToolCallOutcome
TOOL_CALL_OUTCOME_PERMISSION_DENIED: ToolCallOutcome
TOOL_CALL_OUTCOME_INVALID_ARGUMENTS: ToolCallOutcome
TOOL_CALL_OUTCOME_TIMEOUT: ToolCallOutcome
TOOL_CALL_OUTCOME_UNAVAILABLE: ToolCallOutcome
TOOL_CALL_OUTCOME_BLOCKED: ToolCallOutcome
TOOL_CALL_OUTCOME_TOO_LARGE: ToolCallOutcome
TOOL_CALL_OUTCOME_CANCELLED: ToolCallOutcome
STOP_REASON_UNSPECIFIED: StopReason
STOP_REASON_ANSWERED: StopReason
STOP_REASON_MAX_STEPS: StopReason
STOP_REASON_TOKEN_BUDGET: StopReason
STOP_REASON_TIMEOUT: StopReason
STOP_REASON_CANCELLED: StopReason
STOP_REASON_ERROR: StopReason

class ToolInfo(_message.Message):
    __slots__ = ("server", "name", "description", "input_schema_json", "qualified_name")
    SERVER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    QUALIFIED_NAME_FIELD_NUMBER: _ClassVar[int]
    server: str
    name: str
    description: str
    input_schema_json: str
    qualified_name: str
    def __init__(self, server: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., input_schema_json: _Optional[str] = ..., qualified_name: _Optional[str] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ("server",)
    SERVER_FIELD_NUMBER: _ClassVar[int]
    server: str
    def __init__(self, server: _Optional[str] = ...) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools", "unavailable_servers")
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_SERVERS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[ToolInfo]
    unavailable_servers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tools: _Optional[_Iterable[_Union[ToolInfo, _Mapping]]] = ..., unavailable_servers: _Optional[_Iterable[str]] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("name", "model", "system_prompt", "tools", "max_steps", "step_timeout", "token_budget", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    STEP_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BUDGET_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    system_prompt: str
    tools: _containers.RepeatedScalarFieldContainer[str]
    max_steps: int
    step_timeout: _duration_pb2.Duration
    token_budget: int
    description: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., system_prompt: _Optional[str] = ..., tools: _Optional[_Iterable[str]] = ..., max_steps: _Optional[int] = ..., step_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., token_budget: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    def __init__(self, agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ...) -> None: ...

class RunAgentRequest(_message.Message):
    __slots__ = ("agent", "prompt", "history")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    agent: str
    prompt: str
    history: _containers.RepeatedCompositeFieldContainer[_chat_pb2.ChatMessage]
    def __init__(self, agent: _Optional[str] = ..., prompt: _Optional[str] = ..., history: _Optional[_Iterable[_Union[_chat_pb2.ChatMessage, _Mapping]]] = ...) -> None: ...

class RunAgentResponse(_message.Message):
    __slots__ = ("start", "text_delta", "tool_call_started", "tool_call_finished", "step_usage", "finish")
    START_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_STARTED_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FINISHED_FIELD_NUMBER: _ClassVar[int]
    STEP_USAGE_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    start: AgentStart
    text_delta: AgentTextDelta
    tool_call_started: ToolCallStarted
    tool_call_finished: ToolCallFinished
    step_usage: StepUsage
    finish: AgentFinish
    def __init__(self, start: _Optional[_Union[AgentStart, _Mapping]] = ..., text_delta: _Optional[_Union[AgentTextDelta, _Mapping]] = ..., tool_call_started: _Optional[_Union[ToolCallStarted, _Mapping]] = ..., tool_call_finished: _Optional[_Union[ToolCallFinished, _Mapping]] = ..., step_usage: _Optional[_Union[StepUsage, _Mapping]] = ..., finish: _Optional[_Union[AgentFinish, _Mapping]] = ...) -> None: ...

class AgentStart(_message.Message):
    __slots__ = ("request_id", "agent", "model")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    agent: str
    model: str
    def __init__(self, request_id: _Optional[str] = ..., agent: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class AgentTextDelta(_message.Message):
    __slots__ = ("step", "text")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    step: int
    text: str
    def __init__(self, step: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class ToolCallStarted(_message.Message):
    __slots__ = ("step", "call_id", "tool", "arguments_json")
    STEP_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    step: int
    call_id: str
    tool: str
    arguments_json: str
    def __init__(self, step: _Optional[int] = ..., call_id: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_json: _Optional[str] = ...) -> None: ...

class ToolCallFinished(_message.Message):
    __slots__ = ("step", "call_id", "tool", "outcome", "duration", "result", "truncated")
    STEP_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    step: int
    call_id: str
    tool: str
    outcome: ToolCallOutcome
    duration: _duration_pb2.Duration
    result: str
    truncated: bool
    def __init__(self, step: _Optional[int] = ..., call_id: _Optional[str] = ..., tool: _Optional[str] = ..., outcome: _Optional[_Union[ToolCallOutcome, str]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., result: _Optional[str] = ..., truncated: _Optional[bool] = ...) -> None: ...

class StepUsage(_message.Message):
    __slots__ = ("step", "usage", "deployment")
    STEP_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    step: int
    usage: _chat_pb2.Usage
    deployment: str
    def __init__(self, step: _Optional[int] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., deployment: _Optional[str] = ...) -> None: ...

class AgentFinish(_message.Message):
    __slots__ = ("reason", "answer", "total_usage", "steps", "tool_calls", "error_code", "error_reason", "error_message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_USAGE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: StopReason
    answer: str
    total_usage: _chat_pb2.Usage
    steps: int
    tool_calls: int
    error_code: str
    error_reason: str
    error_message: str
    def __init__(self, reason: _Optional[_Union[StopReason, str]] = ..., answer: _Optional[str] = ..., total_usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., steps: _Optional[int] = ..., tool_calls: _Optional[int] = ..., error_code: _Optional[str] = ..., error_reason: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...

class ListToolCallsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "agent", "tool")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    agent: str
    tool: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., agent: _Optional[str] = ..., tool: _Optional[str] = ...) -> None: ...

class ListToolCallsResponse(_message.Message):
    __slots__ = ("tool_calls", "next_page_token")
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCallRecord]
    next_page_token: str
    def __init__(self, tool_calls: _Optional[_Iterable[_Union[ToolCallRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ToolCallRecord(_message.Message):
    __slots__ = ("name", "create_time", "request_id", "principal", "agent", "tool", "arguments_sha256", "duration", "outcome")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    name: str
    create_time: _timestamp_pb2.Timestamp
    request_id: str
    principal: str
    agent: str
    tool: str
    arguments_sha256: str
    duration: _duration_pb2.Duration
    outcome: ToolCallOutcome
    def __init__(self, name: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., principal: _Optional[str] = ..., agent: _Optional[str] = ..., tool: _Optional[str] = ..., arguments_sha256: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., outcome: _Optional[_Union[ToolCallOutcome, str]] = ...) -> None: ...

class WorkflowStep(_message.Message):
    __slots__ = ("name", "kind", "model", "agent", "models", "judge", "prompt", "labels", "branches", "next")
    class BranchesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    model: str
    agent: str
    models: _containers.RepeatedScalarFieldContainer[str]
    judge: str
    prompt: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    branches: _containers.ScalarMap[str, str]
    next: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., model: _Optional[str] = ..., agent: _Optional[str] = ..., models: _Optional[_Iterable[str]] = ..., judge: _Optional[str] = ..., prompt: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., branches: _Optional[_Mapping[str, str]] = ..., next: _Optional[str] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("name", "description", "steps", "max_steps", "timeout", "builtin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    steps: _containers.RepeatedCompositeFieldContainer[WorkflowStep]
    max_steps: int
    timeout: _duration_pb2.Duration
    builtin: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[WorkflowStep, _Mapping]]] = ..., max_steps: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., builtin: _Optional[bool] = ...) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows", "default_workflow")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[Workflow]
    default_workflow: str
    def __init__(self, workflows: _Optional[_Iterable[_Union[Workflow, _Mapping]]] = ..., default_workflow: _Optional[str] = ...) -> None: ...

class RunWorkflowRequest(_message.Message):
    __slots__ = ("workflow", "input")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    workflow: str
    input: str
    def __init__(self, workflow: _Optional[str] = ..., input: _Optional[str] = ...) -> None: ...

class RunWorkflowResponse(_message.Message):
    __slots__ = ("step", "start", "step_started", "text_delta", "step_finished", "finish")
    STEP_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STEP_STARTED_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    STEP_FINISHED_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    step: str
    start: WorkflowStart
    step_started: WorkflowStepStarted
    text_delta: WorkflowTextDelta
    step_finished: WorkflowStepFinished
    finish: WorkflowFinish
    def __init__(self, step: _Optional[str] = ..., start: _Optional[_Union[WorkflowStart, _Mapping]] = ..., step_started: _Optional[_Union[WorkflowStepStarted, _Mapping]] = ..., text_delta: _Optional[_Union[WorkflowTextDelta, _Mapping]] = ..., step_finished: _Optional[_Union[WorkflowStepFinished, _Mapping]] = ..., finish: _Optional[_Union[WorkflowFinish, _Mapping]] = ...) -> None: ...

class WorkflowStart(_message.Message):
    __slots__ = ("request_id", "workflow")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workflow: str
    def __init__(self, request_id: _Optional[str] = ..., workflow: _Optional[str] = ...) -> None: ...

class WorkflowStepStarted(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    def __init__(self, kind: _Optional[str] = ...) -> None: ...

class WorkflowTextDelta(_message.Message):
    __slots__ = ("source", "text", "synthesis")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SYNTHESIS_FIELD_NUMBER: _ClassVar[int]
    source: str
    text: str
    synthesis: bool
    def __init__(self, source: _Optional[str] = ..., text: _Optional[str] = ..., synthesis: _Optional[bool] = ...) -> None: ...

class WorkflowStepFinished(_message.Message):
    __slots__ = ("output", "duration", "usage")
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    output: str
    duration: _duration_pb2.Duration
    usage: _chat_pb2.Usage
    def __init__(self, output: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ...) -> None: ...

class WorkflowFinish(_message.Message):
    __slots__ = ("reason", "answer", "total_usage", "steps", "error_code", "error_reason", "error_message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_USAGE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: StopReason
    answer: str
    total_usage: _chat_pb2.Usage
    steps: int
    error_code: str
    error_reason: str
    error_message: str
    def __init__(self, reason: _Optional[_Union[StopReason, str]] = ..., answer: _Optional[str] = ..., total_usage: _Optional[_Union[_chat_pb2.Usage, _Mapping]] = ..., steps: _Optional[int] = ..., error_code: _Optional[str] = ..., error_reason: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...
