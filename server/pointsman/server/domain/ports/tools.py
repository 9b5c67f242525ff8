"""The ports agents run on: a ToolRunner that reaches tool servers (MCP), and
the tool-call log. Records only; the loop is in domain/agents/."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# Model-visible tool names are {server}{SEPARATOR}{tool}: providers allow
# only letters, digits, "_" and "-" in a function's name.
SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class ToolServer:
    """One MCP server of the tools file: a stdio command, or a streamable HTTP URL."""

    name: str
    command: str = ""
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    url: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    connect_timeout_seconds: float = 10.0
    call_timeout_seconds: float = 30.0
    # Organisations that may use its tools; empty: every organisation.
    organisations: tuple[str, ...] = ()
    # Longest tool result given to a model, in characters.
    max_result_chars: int = 65_536
    # Past max_result_chars: "truncate" (cut, marked) or "refuse" (the model is told).
    oversize: str = "truncate"

    def serves(self, organisation: str) -> bool:
        return not self.organisations or organisation in self.organisations


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as its server lists it."""

    server: str
    name: str
    description: str
    input_schema: dict[str, Any] = field(default_factory=dict)

    @property
    def qualified_name(self) -> str:
        return f"{self.server}{SEPARATOR}{self.name}"


@dataclass(frozen=True, slots=True)
class ToolResult:
    text: str
    is_error: bool = False


class ToolUnavailable(Exception):
    """The tool's server cannot be reached, or failed mid-call. The message is safe to show."""


class ToolRunner(Protocol):
    """Reaches the tool servers. Calls may come from many tasks at once."""

    async def list_tools(self, server: ToolServer) -> list[ToolSpec]:
        """Raises ToolUnavailable when the server cannot be reached."""
        ...

    async def call_tool(self, server: ToolServer, tool: str, arguments: dict[str, Any]) -> ToolResult:
        """Raises ToolUnavailable; the caller bounds it in time and may cancel it."""
        ...

    async def forget(self, server: str) -> None:
        """Closes the server's connection (its definition changed or went away)."""
        ...

    async def aclose(self) -> None: ...


class ToolOutcome(enum.Enum):
    OK = "ok"
    TOOL_ERROR = "tool_error"
    PERMISSION_DENIED = "permission_denied"
    INVALID_ARGUMENTS = "invalid_arguments"
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    BLOCKED = "blocked"
    TOO_LARGE = "too_large"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call, as the tool-call log keeps it: never the arguments or the
    result, only the arguments' digest."""

    id: str
    create_time: datetime
    organisation: str
    request_id: str
    principal: str
    agent: str
    tool: str  # qualified: {server}__{tool}
    arguments_sha256: str
    duration_ms: float
    outcome: ToolOutcome


@dataclass(frozen=True, slots=True)
class ToolCallFilter:
    agent: str | None = None
    tool: str | None = None


class ToolCallLog(Protocol):
    def new_id(self) -> str: ...
    async def record_many(self, entries: Sequence[ToolCallRecord]) -> None: ...
    async def list_tool_calls(
        self, organisation: str, where: ToolCallFilter, page_size: int, after_id: str | None
    ) -> tuple[list[ToolCallRecord], str | None]: ...

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        """Deletes up to `limit` rows made before `cutoff` (retention); how many it deleted."""
        ...
