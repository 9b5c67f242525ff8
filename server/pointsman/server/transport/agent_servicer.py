"""AgentService: tools, agents, agent runs and the tool-call record on the wire."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import grpc
from google.protobuf import duration_pb2

from pointsman.agent.v1 import agent_pb2 as pb
from pointsman.agent.v1 import agent_pb2_grpc

from ..domain.agents.definitions import AgentSpec, DefinitionsHolder, WorkflowSpec
from ..domain.agents.events import (
    AgentEvent,
    RunFinished,
    RunStarted,
    StepText,
    StepUsed,
    StopReason,
    ToolFinished,
    ToolStarted,
)
from ..domain.agents.loop import AgentLoop
from ..domain.agents.toolbox import Toolbox
from ..domain.agents.workflow import (
    StepDelta,
    StepFinished,
    StepStarted,
    WorkflowEvent,
    WorkflowFinished,
    WorkflowRunner,
    WorkflowStarted,
)
from ..domain.errors import InvalidArgument, NotFound, ViolationCollector
from ..domain.ports.tools import ToolCallFilter, ToolCallLog, ToolCallRecord, ToolOutcome
from . import convert
from .calls import CallContext
from .errors import status_code_for
from .resources import decode_token, encode_token, page_size, resource_id

MAX_PROMPT_CHARS = 400_000
_RECORD_ID = re.compile(r"[0-9a-f]{24}")

OUTCOMES = {
    ToolOutcome.OK: pb.TOOL_CALL_OUTCOME_OK,
    ToolOutcome.TOOL_ERROR: pb.TOOL_CALL_OUTCOME_TOOL_ERROR,
    ToolOutcome.PERMISSION_DENIED: pb.TOOL_CALL_OUTCOME_PERMISSION_DENIED,
    ToolOutcome.INVALID_ARGUMENTS: pb.TOOL_CALL_OUTCOME_INVALID_ARGUMENTS,
    ToolOutcome.TIMEOUT: pb.TOOL_CALL_OUTCOME_TIMEOUT,
    ToolOutcome.UNAVAILABLE: pb.TOOL_CALL_OUTCOME_UNAVAILABLE,
    ToolOutcome.BLOCKED: pb.TOOL_CALL_OUTCOME_BLOCKED,
    ToolOutcome.TOO_LARGE: pb.TOOL_CALL_OUTCOME_TOO_LARGE,
    ToolOutcome.CANCELLED: pb.TOOL_CALL_OUTCOME_CANCELLED,
}
STOP_REASONS = {
    StopReason.ANSWERED: pb.STOP_REASON_ANSWERED,
    StopReason.MAX_STEPS: pb.STOP_REASON_MAX_STEPS,
    StopReason.TOKEN_BUDGET: pb.STOP_REASON_TOKEN_BUDGET,
    StopReason.TIMEOUT: pb.STOP_REASON_TIMEOUT,
    StopReason.CANCELLED: pb.STOP_REASON_CANCELLED,
    StopReason.ERROR: pb.STOP_REASON_ERROR,
}


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


def agent_to_proto(agent: AgentSpec) -> pb.Agent:
    return pb.Agent(
        name=f"agents/{agent.name}",
        model=agent.model,
        system_prompt=agent.system_prompt,
        tools=list(agent.tools),
        max_steps=agent.max_steps,
        step_timeout=_duration(agent.step_timeout_seconds),
        token_budget=agent.token_budget,
        description=agent.description,
    )


def event_to_proto(event: AgentEvent) -> pb.RunAgentResponse:
    match event:
        case RunStarted():
            return pb.RunAgentResponse(
                start=pb.AgentStart(request_id=event.request_id, agent=f"agents/{event.agent}", model=event.model)
            )
        case StepText():
            return pb.RunAgentResponse(text_delta=pb.AgentTextDelta(step=event.step, text=event.text))
        case ToolStarted():
            return pb.RunAgentResponse(
                tool_call_started=pb.ToolCallStarted(
                    step=event.step, call_id=event.call_id, tool=event.tool, arguments_json=event.arguments_json
                )
            )
        case ToolFinished():
            return pb.RunAgentResponse(
                tool_call_finished=pb.ToolCallFinished(
                    step=event.step,
                    call_id=event.call_id,
                    tool=event.tool,
                    outcome=OUTCOMES[event.outcome],
                    duration=_duration(event.duration_seconds),
                    result=event.result,
                    truncated=event.truncated,
                )
            )
        case StepUsed():
            return pb.RunAgentResponse(
                step_usage=pb.StepUsage(
                    step=event.step, usage=convert.usage_to_proto(event.usage), deployment=event.deployment
                )
            )
        case RunFinished():
            finish = pb.AgentFinish(
                reason=STOP_REASONS[event.reason],
                answer=event.answer,
                total_usage=convert.usage_to_proto(event.usage),
                steps=event.steps,
                tool_calls=event.tool_calls,
            )
            if event.error is not None:
                finish.error_code = status_code_for(event.error).name
                finish.error_reason = event.error.reason
                finish.error_message = event.error.message
            return pb.RunAgentResponse(finish=finish)
    raise TypeError(f"not an agent event: {event!r}")


def _record(record: ToolCallRecord) -> pb.ToolCallRecord:
    return pb.ToolCallRecord(
        name=f"toolCalls/{record.id}",
        create_time=convert.timestamp(record.create_time),
        request_id=record.request_id,
        principal=record.principal,
        agent=f"agents/{record.agent}",
        tool=record.tool,
        arguments_sha256=record.arguments_sha256,
        duration=_duration(record.duration_ms / 1000),
        outcome=OUTCOMES[record.outcome],
    )


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        definitions: DefinitionsHolder,
        toolbox: Toolbox,
        loop: AgentLoop,
        call_log: ToolCallLog,
        calls: CallContext,
        workflows: WorkflowRunner | None = None,
        default_workflow: str = "comparative",
    ) -> None:
        self._workflows = workflows
        self._default_workflow = default_workflow
        self._definitions = definitions
        self._toolbox = toolbox
        self._loop = loop
        self._call_log = call_log
        self._calls = calls

    def _agent(self, name: str, field: str = "agent") -> AgentSpec:
        agent_id = resource_id(name, "agents", field)
        agent = self._definitions.current.agents.get(agent_id)
        if agent is None:
            raise NotFound(f"agent {name} does not exist", reason="AGENT_NOT_FOUND", metadata={"agent": name})
        return agent

    async def ListTools(self, request: pb.ListToolsRequest, context: grpc.aio.ServicerContext) -> pb.ListToolsResponse:
        if request.server and request.server not in self._definitions.current.servers:
            raise NotFound(
                f"tool server {request.server} does not exist",
                reason="TOOL_SERVER_NOT_FOUND",
                metadata={"server": request.server},
            )
        listing = await self._toolbox.listing(self._calls.caller().organisation, request.server)
        return pb.ListToolsResponse(
            tools=[
                pb.ToolInfo(
                    server=t.server,
                    name=t.name,
                    description=t.description,
                    input_schema_json=convert_schema(t.input_schema),
                    qualified_name=t.qualified_name,
                )
                for t in listing.tools
            ],
            unavailable_servers=listing.unavailable,
        )

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        agents = self._definitions.current.agents
        return pb.ListAgentsResponse(agents=[agent_to_proto(agents[name]) for name in sorted(agents)])

    async def RunAgent(
        self, request: pb.RunAgentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunAgentResponse]:
        errors = ViolationCollector()
        if not request.agent:
            errors.add("agent", "is required")
        if not request.prompt.strip():
            errors.add("prompt", "is required")
        elif len(request.prompt) > MAX_PROMPT_CHARS:
            errors.add("prompt", f"must be at most {MAX_PROMPT_CHARS} characters")
        history = convert.messages_from_proto(request.history, errors, "history")
        errors.raise_if_any()
        agent = self._agent(request.agent)
        async for event in self._loop.run(agent, request.prompt, history, self._calls.caller()):
            yield event_to_proto(event)

    async def ListToolCalls(
        self, request: pb.ListToolCallsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListToolCallsResponse:
        agent = resource_id(request.agent, "agents", "agent") if request.agent else None
        if len(request.tool) > 256:
            raise InvalidArgument.one("tool", "must be at most 256 characters")
        after_id = decode_token(request.page_token)
        if after_id is not None and not _RECORD_ID.fullmatch(after_id):
            raise InvalidArgument.one("page_token", "is not a token this server issued")
        page, after = await self._call_log.list_tool_calls(
            self._calls.caller().organisation,
            ToolCallFilter(agent=agent, tool=request.tool or None),
            page_size(request.page_size),
            after_id,
        )
        return pb.ListToolCallsResponse(
            tool_calls=[_record(r) for r in page], next_page_token=encode_token(after) if after else ""
        )

    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowsResponse:
        workflows = self._workflows.all() if self._workflows is not None else {}
        return pb.ListWorkflowsResponse(
            workflows=[workflow_to_proto(workflows[name]) for name in sorted(workflows)],
            default_workflow=f"workflows/{self._default_workflow}",
        )

    async def RunWorkflow(
        self, request: pb.RunWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunWorkflowResponse]:
        if not request.input.strip():
            raise InvalidArgument.one("input", "is required")
        if len(request.input) > MAX_PROMPT_CHARS:
            raise InvalidArgument.one("input", f"must be at most {MAX_PROMPT_CHARS} characters")
        name = resource_id(request.workflow, "workflows", "workflow") if request.workflow else self._default_workflow
        workflows = self._workflows.all() if self._workflows is not None else {}
        workflow = workflows.get(name)
        if workflow is None or self._workflows is None:
            named = request.workflow or f"workflows/{name} (ORCHESTRATOR_DEFAULT_ANALYSIS)"
            raise NotFound(
                f"workflow {named} does not exist",
                reason="WORKFLOW_NOT_FOUND",
                metadata={"workflow": request.workflow},
            )
        async for event in self._workflows.run(workflow, request.input, self._calls.caller()):
            yield workflow_event_to_proto(event)


def workflow_to_proto(workflow: WorkflowSpec) -> pb.Workflow:
    return pb.Workflow(
        name=f"workflows/{workflow.name}",
        description=workflow.description,
        max_steps=workflow.max_steps,
        timeout=_duration(workflow.timeout_seconds),
        builtin=workflow.builtin,
        steps=[
            pb.WorkflowStep(
                name=s.name,
                kind=s.kind,
                model=s.model,
                agent=f"agents/{s.agent}" if s.agent else "",
                models=list(s.models),
                judge=s.judge,
                prompt=s.prompt,
                labels=[label for label, _ in s.rules],
                branches=dict(s.branches),
                next=s.next,
            )
            for s in workflow.steps
        ],
    )


def workflow_event_to_proto(event: WorkflowEvent) -> pb.RunWorkflowResponse:
    match event:
        case WorkflowStarted():
            return pb.RunWorkflowResponse(
                start=pb.WorkflowStart(request_id=event.request_id, workflow=f"workflows/{event.workflow}")
            )
        case StepStarted():
            return pb.RunWorkflowResponse(step=event.step, step_started=pb.WorkflowStepStarted(kind=event.kind))
        case StepDelta():
            return pb.RunWorkflowResponse(
                step=event.step,
                text_delta=pb.WorkflowTextDelta(source=event.source, text=event.text, synthesis=event.synthesis),
            )
        case StepFinished():
            return pb.RunWorkflowResponse(
                step=event.step,
                step_finished=pb.WorkflowStepFinished(
                    output=event.output,
                    duration=_duration(event.duration_seconds),
                    usage=convert.usage_to_proto(event.usage),
                ),
            )
        case WorkflowFinished():
            finish = pb.WorkflowFinish(
                reason=STOP_REASONS[event.reason],
                answer=event.answer,
                total_usage=convert.usage_to_proto(event.usage),
                steps=event.steps,
            )
            if event.error is not None:
                finish.error_code = status_code_for(event.error).name
                finish.error_reason = event.error.reason
                finish.error_message = event.error.message
            return pb.RunWorkflowResponse(finish=finish)
    raise TypeError(f"not a workflow event: {event!r}")


def convert_schema(schema: dict[str, object]) -> str:
    return json.dumps(schema, sort_keys=True)
