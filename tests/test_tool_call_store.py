"""The tool-call log on SQLite and PostgreSQL: rows round-trip, page newest
first within one organisation, filter by agent and tool, and are deleted by retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from test_stores import backend, clock, org, other_org, postgres_url, stores  # noqa: F401  (fixtures)

from pointsman.server.backends.stores import Stores
from pointsman.server.domain.ports.tools import ToolCallFilter, ToolCallRecord, ToolOutcome


def _record(opened: Stores, organisation: str, agent: str, tool: str, when: datetime) -> ToolCallRecord:
    return ToolCallRecord(
        id=opened.tool_calls.new_id(),
        create_time=when,
        organisation=organisation,
        request_id="req-1",
        principal="users/u1",
        agent=agent,
        tool=tool,
        arguments_sha256="ab" * 32,
        duration_ms=12.5,
        outcome=ToolOutcome.TIMEOUT,
    )


async def test_tool_calls_round_trip_page_and_filter(stores: Stores, org: str, other_org: str) -> None:  # noqa: F811
    now = datetime.now(UTC).replace(microsecond=0)
    first = _record(stores, org, "helper", "calc__add", now)
    second = _record(stores, org, "other", "calc__echo", now + timedelta(seconds=1))
    await stores.tool_calls.record_many([first, second, _record(stores, other_org, "helper", "calc__add", now)])
    page, after = await stores.tool_calls.list_tool_calls(org, ToolCallFilter(), 1, None)
    assert [r.id for r in page] == [second.id] and after == second.id
    page, after = await stores.tool_calls.list_tool_calls(org, ToolCallFilter(), 10, after)
    assert page == [first] and after is None
    assert [
        r.id for r in (await stores.tool_calls.list_tool_calls(org, ToolCallFilter(agent="helper"), 10, None))[0]
    ] == [first.id]
    assert [
        r.id for r in (await stores.tool_calls.list_tool_calls(org, ToolCallFilter(tool="calc__echo"), 10, None))[0]
    ] == [second.id]
    assert await stores.tool_calls.delete_before(now + timedelta(seconds=1), 100) == 2
