"""Retention: the stores delete what is older than a cutoff, in every
organisation and in batches, on SQLite and PostgreSQL; the server does it at
start when POINTSMAN_RETENTION_DAYS is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import test_stores
from test_stats import call, decision

from pointsman.server.app.retention import Retention
from pointsman.server.backends.stores import RequestFilter, Stores, open_stores
from pointsman.server.domain.firewall.verdict import Action, Category
from pointsman.server.domain.ports.stores import DecisionFilter

from server_fixtures import eventually

# The conformance suite's fixtures: SQLite and a fresh PostgreSQL database.
backend, clock, org, other_org, postgres_url, stores = (
    test_stores.backend,
    test_stores.clock,
    test_stores.org,
    test_stores.other_org,
    test_stores.postgres_url,
    test_stores.stores,
)
START = test_stores.START
DAY = timedelta(days=1)


async def remaining(stores: Stores, organisation: str) -> tuple[int, int]:
    requests, _ = await stores.requests.list_requests(organisation, RequestFilter(), 1000, None)
    decisions, _ = await stores.decisions.list_decisions(organisation, DecisionFilter(), 1000, None)
    return len(requests), len(decisions)


async def test_retention_deletes_what_is_older_than_the_period_in_every_organisation(
    stores: Stores, org: str, other_org: str
) -> None:
    # 7 rows of each kind per organisation a day and a half old, 2 from the last hour.
    for organisation in (org, other_org):
        old = [-1.5 * DAY.total_seconds() + i for i in range(7)]
        recent = [-3600.0, -60.0]
        await stores.requests.record_many([call(organisation, at) for at in (*old, *recent)])
        await stores.decisions.record_many(
            [decision(organisation, Action.REDACT, Category.PII, at_seconds=at) for at in (*old, *recent)]
        )
    # A batch of 3: several batches per table. The database is shared: the cutoff is this test's.
    retention = Retention(stores, days=1, batch_rows=3, now=lambda: START)
    deleted = await retention.run_once()
    assert deleted["decisions"] >= 14 and deleted["request log"] >= 14
    assert await remaining(stores, org) == (2, 2)
    assert await remaining(stores, other_org) == (2, 2)
    assert await retention.run_once() == {"decisions": 0, "request log": 0, "tool calls": 0}


async def test_the_server_applies_retention_at_start(start_server: Any, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'state.db'}"
    stores = await open_stores(database, str(tmp_path))
    now = datetime.now(UTC)
    try:
        await stores.requests.record_many(
            [
                call("default", (now - START).total_seconds() - 40 * DAY.total_seconds()),
                call("default", (now - START).total_seconds() - 60),
            ]
        )
    finally:
        await stores.aclose()
    server = await start_server(DATABASE_URL=database, POINTSMAN_RETENTION_DAYS=30)

    async def only_the_recent_one_left() -> bool:
        rows, _ = await server.stores.requests.list_requests("default", RequestFilter(), 10, None)
        return len(rows) == 1 and rows[0].create_time > now - DAY

    await eventually(only_the_recent_one_left)
