"""Decision writes per second on PostgreSQL: the store's `record_many` (COPY,
or the idempotent unnest INSERT, through the dialect) beside SQLAlchemy Core 2
(`insert(...).on_conflict_do_nothing()`, executemany with its insertmanyvalues
batching), on the same asyncpg driver, database and decisions, with the
client's CPU per decision. The measurement behind docs/stores.md's choice of
hand-written SQL. SQLAlchemy is not a project dependency:

    .venv/bin/python -m pip install 'sqlalchemy[asyncio]>=2.0,<2.2'
    .venv/bin/python bench/store_sqlalchemy.py [--seconds 3] [--batch 500] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from sqlalchemy import Column, DateTime, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import create_async_engine
from store_writes import decisions

from pointsman.server.backends.stores import open_stores
from pointsman.server.backends.stores.codec import decision_categories, findings_to_json
from pointsman.server.domain.firewall.verdict import Decision

DECISIONS = Table(
    "decisions",
    MetaData(),
    Column("organisation", Text, primary_key=True),
    Column("id", Text, primary_key=True),
    Column("create_time", DateTime(timezone=True)),
    Column("principal", Text),
    Column("direction", Text),
    Column("action", Text),
    Column("categories", ARRAY(Text)),
    Column("findings", JSONB),
    Column("content_sha256", Text),
    Column("request_id", Text),
    Column("details", JSONB),
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sustained(
    label: str, write: Callable[[Sequence[Decision]], Awaitable[None]], pool: list[Decision], args: argparse.Namespace
) -> None:
    written = 0
    started, cpu = time.perf_counter(), cpu_seconds()
    while time.perf_counter() - started < args.seconds and written + args.batch <= len(pool):
        await write(pool[written : written + args.batch])
        written += args.batch
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    print(f"{label:30s} {written / elapsed:9,.0f} decisions/s   client CPU {cpu / written * 1e6:5.1f} us each")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"pointsman_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(urlsplit(args.postgres)._replace(path=f"/{name}"))
        stores = await open_stores(url, ".")
        engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=2)
        statement = insert(DECISIONS).on_conflict_do_nothing()

        async def through_sqlalchemy(chunk: Sequence[Decision]) -> None:
            rows = [
                {
                    "organisation": d.organisation,
                    "id": d.id,
                    "create_time": d.create_time,
                    "principal": d.principal,
                    "direction": d.direction.value,
                    "action": d.action.value,
                    "categories": decision_categories(d),
                    "findings": json.loads(findings_to_json(d.findings)),
                    "content_sha256": d.content_sha256,
                    "request_id": d.request_id,
                    "details": {},
                }
                for d in chunk
            ]
            async with engine.begin() as connection:
                await connection.execute(statement, rows)

        enough = int(args.seconds * 80_000)
        for round_ in range(args.rounds):
            await sustained("store record_many", stores.decisions.record_many, decisions(enough, round_), args)
            await sustained("SQLAlchemy Core executemany", through_sqlalchemy, decisions(enough, 100 + round_), args)
        await engine.dispose()
        await stores.aclose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
