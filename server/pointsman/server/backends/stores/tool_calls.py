"""The tool-call log: one row per tool call an agent made, paged newest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...domain.ports.stores import require_organisation
from ...domain.ports.tools import ToolCallFilter, ToolCallRecord, ToolOutcome
from .dialects import Database, Kind, Row, Table
from .sql import _AppendOnlyLog, _page

TOOL_CALLS = Table(
    "tool_calls",
    (
        ("organisation", Kind.TEXT),
        ("id", Kind.TEXT),
        ("create_time", Kind.TIME),
        ("request_id", Kind.TEXT),
        ("principal", Kind.TEXT),
        ("agent", Kind.TEXT),
        ("tool", Kind.TEXT),
        ("arguments_sha256", Kind.TEXT),
        ("duration_ms", Kind.REAL),
        ("outcome", Kind.TEXT),
    ),
)


def _tool_call(db: Database, row: Row) -> ToolCallRecord:
    return ToolCallRecord(
        id=row["id"],
        create_time=db.read_time(row["create_time"]),
        organisation=row["organisation"],
        request_id=row["request_id"],
        principal=row["principal"],
        agent=row["agent"],
        tool=row["tool"],
        arguments_sha256=row["arguments_sha256"],
        duration_ms=row["duration_ms"],
        outcome=ToolOutcome(row["outcome"]),
    )


class SqlToolCallLog(_AppendOnlyLog[ToolCallRecord]):
    table = TOOL_CALLS

    def _rows(self, entries: Sequence[ToolCallRecord]) -> list[tuple[Any, ...]]:
        time = self._db.time
        return [
            (
                require_organisation(e.organisation),
                e.id,
                time(e.create_time),
                e.request_id,
                e.principal,
                e.agent,
                e.tool,
                e.arguments_sha256,
                e.duration_ms,
                e.outcome.value,
            )
            for e in entries
        ]

    async def list_tool_calls(
        self, organisation: str, where: ToolCallFilter, page_size: int, after_id: str | None
    ) -> tuple[list[ToolCallRecord], str | None]:
        db = self._db
        conditions = self._page_filter(organisation, after_id, None, None)
        if where.agent is not None:
            conditions.add("agent = ?", where.agent)
        if where.tool is not None:
            conditions.add("tool = ?", where.tool)
        return await _page(db, TOOL_CALLS.name, conditions, page_size, lambda row: _tool_call(db, row))
