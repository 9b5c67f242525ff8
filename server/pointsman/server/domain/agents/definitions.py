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
class Definitions:
    servers: Mapping[str, ToolServer] = field(default_factory=dict)
    agents: Mapping[str, AgentSpec] = field(default_factory=dict)


class DefinitionsHolder:
    """The definitions in force. A reload replaces them in one assignment, so a
    run that started keeps the agent it was given."""

    def __init__(self, definitions: Definitions) -> None:
        self.current = definitions
        self.version = 1

    def replace(self, definitions: Definitions) -> None:
        self.current = definitions
        self.version += 1
