"""What the agents and tools files define, held so a reload swaps them whole."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..ports.tools import SEPARATOR, ToolServer


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    model: str
    system_prompt: str = ""
    # Qualified tool names ({server}__{tool}), or {server}__* for all of a server's tools.
    tools: tuple[str, ...] = ()
    max_steps: int = 8
    step_timeout_seconds: float = 60.0
    token_budget: int = 0  # input + output tokens over the run; 0: no budget
    description: str = ""

    def allows(self, qualified: str) -> bool:
        server = qualified.split(SEPARATOR, 1)[0]
        return qualified in self.tools or f"{server}{SEPARATOR}*" in self.tools


@dataclass(frozen=True, slots=True)
class StepSpec:
    name: str
    kind: str  # classify, chat, agent, compare, branch
    model: str = ""  # chat
    agent: str = ""  # agent
    models: tuple[str, ...] = ()  # compare; empty: every chat model
    judge: str = ""  # compare; empty: the first model
    prompt: str = "{input}"  # template: {input}, {steps.NAME}
    system_prompt: str = ""  # chat
    # classify: label -> keywords (any in the input, case-insensitive); first match wins.
    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    default_label: str = ""  # classify: when no rule matches
    source: str = ""  # branch: the classify step whose label it reads
    branches: tuple[tuple[str, str], ...] = ()  # branch: label -> step
    default_branch: str = ""  # branch: when no label matches; empty: end
    next: str = ""  # empty: the next step in the list; END: none


END = "end"


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    name: str
    steps: tuple[StepSpec, ...]
    description: str = ""
    max_steps: int = 20
    timeout_seconds: float = 300.0
    builtin: bool = False

    def step(self, name: str) -> StepSpec | None:
        return next((s for s in self.steps if s.name == name), None)


@dataclass(frozen=True, slots=True)
class Definitions:
    servers: Mapping[str, ToolServer] = field(default_factory=dict)
    agents: Mapping[str, AgentSpec] = field(default_factory=dict)
    workflows: Mapping[str, WorkflowSpec] = field(default_factory=dict)


class DefinitionsHolder:
    """The definitions in force. A reload replaces them in one assignment, so a
    run that started keeps the agent it was given."""

    def __init__(self, definitions: Definitions) -> None:
        self.current = definitions
        self.version = 1

    def replace(self, definitions: Definitions) -> None:
        self.current = definitions
        self.version += 1
