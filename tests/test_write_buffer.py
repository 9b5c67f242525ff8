"""The write buffer in front of the decision store, against a real
PostgreSQL: callers never wait; an outage (the test database refusing
connections) loses nothing that fits the buffer; overflow is counted; close
writes what is left."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from pointsman.server.backends.stores import Stores, open_stores
from pointsman.server.backends.write_buffer import WriteBuffer
from pointsman.server.domain.firewall.verdict import Action, Category, Decision, Direction, Finding
from pointsman.server.domain.ports.stores import DecisionFilter

from server_fixtures import eventually

ADMIN_URL = os.environ.get("POINTSMAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ORG = "org-buffer"


@pytest.fixture
async def database() -> AsyncIterator[tuple[str, str]]:
    name = f"pointsman_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name, urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def stores(database: tuple[str, str], tmp_path: object) -> AsyncIterator[Stores]:
    opened = await open_stores(database[1], tmp_path)  # type: ignore[arg-type]
    yield opened
    await opened.aclose()


def decision(stores: Stores, n: int) -> Decision:
    return Decision(
        id=stores.decisions.new_id(),
        create_time=datetime.now(UTC),
        organisation=ORG,
        principal=f"user-{n}",
        direction=Direction.INPUT,
        action=Action.BLOCK,
        findings=(Finding(Category.SECRET, "AWS_ACCESS_KEY", start=0, end=20),),
        content_sha256="0" * 64,
    )


async def stored(stores: Stores) -> int:
    count, token = 0, None
    while True:
        page, token = await stores.decisions.list_decisions(ORG, DecisionFilter(), 1000, token)
        count += len(page)
        if not token:
            return count


async def set_outage(name: str, down: bool) -> None:
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if down else "true"}')
        if down:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
    finally:
        await admin.close()


async def test_batches_reach_the_database(stores: Stores) -> None:
    buffer = WriteBuffer(stores.decisions.record_many, name="decisions", batch_size=50)
    buffer.start()
    for n in range(120):
        buffer.add(decision(stores, n))
    await eventually(lambda: buffer.written == 120)
    assert await stored(stores) == 120
    await buffer.close()


async def test_an_outage_loses_nothing_and_the_backlog_is_written_on_recovery(
    stores: Stores, database: tuple[str, str]
) -> None:
    buffer = WriteBuffer(stores.decisions.record_many, name="decisions", flush_interval_seconds=0.01)
    buffer.start()
    await set_outage(database[0], down=True)
    try:
        for n in range(300):
            buffer.add(decision(stores, n))  # never waits, database or not
        await eventually(lambda: buffer.failures > 0)
        assert not buffer.healthy and buffer.pending == 300 and buffer.dropped == 0
    finally:
        await set_outage(database[0], down=False)
    await eventually(lambda: buffer.written == 300, timeout=20)
    assert buffer.healthy and await stored(stores) == 300
    await buffer.close()


async def test_overflow_is_counted_and_memory_stays_bounded(stores: Stores, database: tuple[str, str]) -> None:
    buffer = WriteBuffer(stores.decisions.record_many, name="decisions", capacity=100)
    buffer.start()
    await set_outage(database[0], down=True)
    try:
        for n in range(250):
            buffer.add(decision(stores, n))
        assert buffer.pending == 100 and buffer.dropped == 150
    finally:
        await set_outage(database[0], down=False)
    await buffer.close(timeout_seconds=20)
    assert await stored(stores) == 100


async def test_close_writes_what_is_left(stores: Stores) -> None:
    buffer = WriteBuffer(stores.decisions.record_many, name="decisions", flush_interval_seconds=60)
    buffer.start()
    for n in range(7):
        buffer.add(decision(stores, n))
    await buffer.close()
    assert buffer.pending == 0 and await stored(stores) == 7


async def test_a_record_the_database_refuses_is_set_aside_and_the_rest_written(stores: Stores) -> None:
    # PostgreSQL cannot store NUL in text: this record fails on its own, every time.
    poison = replace(decision(stores, 0), principal="user-\x00")
    buffer = WriteBuffer(stores.decisions.record_many, name="decisions", batch_size=50)
    buffer.start()
    for n in range(20):
        buffer.add(decision(stores, n))
    buffer.add(poison)
    for n in range(20, 40):
        buffer.add(decision(stores, n))
    await eventually(lambda: buffer.pending == 0)
    assert buffer.rejected == 1 and buffer.written == 40 and buffer.healthy
    assert await stored(stores) == 40
    # Later records of every organisation keep flowing.
    for n in range(40, 45):
        buffer.add(decision(stores, n))
    await eventually(lambda: buffer.written == 45)
    assert await stored(stores) == 45 and buffer.rejected == 1
    await buffer.close()
