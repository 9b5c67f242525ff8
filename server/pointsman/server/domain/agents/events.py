"""The events of an agent's run, in the order a client sees them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..chat import Usage
from ..errors import DomainError
from ..ports.tools import ToolOutcome


class StopReason(enum.Enum):
    ANSWERED = "answered"
    MAX_STEPS = "max_steps"
    TOKEN_BUDGET = "token_budget"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RunStarted:
    request_id: str
    agent: str
    model: str


@dataclass(frozen=True, slots=True)
class StepText:
    step: int
    text: str


@dataclass(frozen=True, slots=True)
class ToolStarted:
    step: int
    call_id: str
    tool: str
    arguments_json: str


@dataclass(frozen=True, slots=True)
class ToolFinished:
    step: int
    call_id: str
    tool: str
    outcome: ToolOutcome
    duration_seconds: float
    result: str  # what the model was given
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class StepUsed:
    step: int
    usage: Usage
    deployment: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    reason: StopReason
    answer: str
    usage: Usage
    steps: int
    tool_calls: int
    error: DomainError | None = None


AgentEvent = RunStarted | StepText | ToolStarted | ToolFinished | StepUsed | RunFinished
