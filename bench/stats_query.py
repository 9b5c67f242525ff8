"""How long GetStats takes over 100,000 request-log rows, on PostgreSQL and on
SQLite: the RPC through a real server, and the store queries under it.

    .venv/bin/python bench/stats_query.py [--rows 100000] [--decisions 20000] [--repeat 20]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Two organisations per database: `busy`, whose rows all fall in the last hour
(the worst case: the window holds every row), and `steady`, whose rows are
spread over 30 days (the common case: the index finds the last hour's share).
Then the time indexes are dropped and the store queries timed again, to show
what they are for. Creates a PostgreSQL database with a random name and drops
it at the end; SQLite lives in a temporary directory. Writes
bench/results/stats_query.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]  # no stubs shipped

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as pb
from pointsman.server.app.server import open_server
from pointsman.server.backends.stores import RequestRecord, Stores, open_stores
from pointsman.server.domain.firewall.verdict import Action, Category, Decision, Direction, Finding
from pointsman.server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
HOUR = timedelta(hours=1)
DEPLOYMENTS = [("openai/gpt-4o-mini", 0.6), ("openai/gpt-4o", 0.25), ("anthropic/claude", 0.1), ("local/llama", 0.05)]


def calls(organisation: str, count: int, span: timedelta, seed: int) -> list[RequestRecord]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    names, weights = zip(*DEPLOYMENTS, strict=True)
    made = []
    for _ in range(count):
        cached = rng.random() < 0.05
        failed = not cached and rng.random() < 0.02
        latency = rng.lognormvariate(6.0, 0.6)  # ~400 ms median, a long tail
        made.append(
            RequestRecord(
                id=f"{time.time_ns():016x}{secrets.token_hex(4)}",
                create_time=now - span * rng.random(),
                organisation=organisation,
                request_id=secrets.token_hex(8),
                principal=f"users/u{rng.randrange(200)}",
                model="fast",
                deployment=rng.choices(names, weights)[0],
                status_code="UNAVAILABLE" if failed else "OK",
                input_tokens=rng.randrange(20, 2000),
                output_tokens=0 if failed else rng.randrange(10, 800),
                latency_ms=0.8 if cached else latency,
                time_to_first_token_ms=None if failed or cached else latency * rng.uniform(0.1, 0.4),
                cache_hit=cached,
            )
        )
    return made


def decisions(organisation: str, count: int, span: timedelta, seed: int) -> list[Decision]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    kinds = [Category.PII, Category.SECRET, Category.TOXICITY, Category.BLOCK_RULE]
    made = []
    for i in range(count):
        categories = rng.sample(kinds, rng.choice((0, 0, 0, 1, 1, 2)))
        action = rng.choice((Action.BLOCK, Action.REDACT, Action.LOG)) if categories else Action.ALLOW
        made.append(
            Decision(
                id=f"{time.time_ns():016x}{secrets.token_hex(4)}",
                create_time=now - span * rng.random(),
                organisation=organisation,
                principal="users/u1",
                direction=rng.choice((Direction.INPUT, Direction.OUTPUT)),
                action=action,
                findings=tuple(Finding(c, type="T", start=0, end=5) for c in categories),
                content_sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                request_id=secrets.token_hex(8),
            )
        )
    return made


async def fill(stores: Stores, args: argparse.Namespace) -> None:
    for organisation, span, seed in (("busy", timedelta(minutes=50), 1), ("steady", timedelta(days=30), 2)):
        rows = calls(organisation, args.rows, span, seed)
        for start in range(0, len(rows), 5000):
            await stores.requests.record_many(rows[start : start + 5000])
        made = decisions(organisation, args.decisions, span, seed)
        for start in range(0, len(made), 5000):
            await stores.decisions.record_many(made[start : start + 5000])


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> dict[str, float]:
    await call()  # warm: plans and pages cached, as for a dashboard polling
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 2),
        "min_ms": round(samples[0], 2),
        "max_ms": round(samples[-1], 2),
    }


async def store_queries(stores: Stores, repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for organisation in ("busy", "steady"):

        def window() -> tuple[datetime, datetime]:
            end = datetime.now(UTC)
            return end - HOUR, end

        async def summarise(organisation: str = organisation) -> Any:
            return await stores.requests.summarise(organisation, *window())

        async def count(organisation: str = organisation) -> Any:
            return await stores.decisions.count_by_category(organisation, *window())

        summary = await summarise()
        results[organisation] = {
            "rows_in_window": summary.requests,
            "summarise": await timed(summarise, repeat),
            "count_by_category": await timed(count, repeat),
        }
    return results


async def grpc_get_stats(database_url: str, data_dir: str, repeat: int) -> dict[str, float]:
    env: dict[str, Any] = {  # as the environment would give them
        "POINTSMAN_ADDRESS": "127.0.0.1:0",
        "POINTSMAN_DATA_DIR": data_dir,
        "DATABASE_URL": database_url,
        "REDIS_URL": None,
        "ORG_ID": "busy",
        "POINTSMAN_DEV_MODE": True,
        "LOG_LEVEL": "WARNING",
    }
    settings = Settings(**env)
    server = await open_server(settings)
    await server.start()
    try:
        async with AsyncClient(server.address, timeout=30) as client:
            stats = await client.orchestrator.GetStats(pb.GetStatsRequest())
            print(f"  GetStats: {stats.requests} requests, {len(stats.deployments)} deployments")
            return await timed(lambda: client.orchestrator.GetStats(pb.GetStatsRequest()), repeat)
    finally:
        await server.stop(grace=0)


async def drop_time_indexes(stores: Stores, database_url: str | None, data_dir: str) -> None:
    sql = ["DROP INDEX request_log_by_time", "DROP INDEX decisions_by_time"]
    if database_url is None:
        import aiosqlite

        async with aiosqlite.connect(Path(data_dir) / "pointsman.db") as connection:
            for statement in sql:
                await connection.execute(statement)
            await connection.commit()
    else:
        connection = await asyncpg.connect(database_url)
        try:
            for statement in sql:
                await connection.execute(statement)
        finally:
            await connection.close()


async def bench(name: str, database_url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        stores = await open_stores(database_url, data_dir)
        try:
            started = time.perf_counter()
            await fill(stores, args)
            print(f"{name}: filled in {time.perf_counter() - started:.1f} s")
            result: dict[str, Any] = {"store": await store_queries(stores, args.repeat)}
            url = database_url or f"sqlite://{Path(data_dir) / 'pointsman.db'}"
            result["GetStats over gRPC (busy)"] = await grpc_get_stats(url, data_dir, args.repeat)
            await drop_time_indexes(stores, database_url, data_dir)
            result["store, without the time indexes"] = await store_queries(stores, max(3, args.repeat // 4))
        finally:
            await stores.aclose()
    print(json.dumps({name: result}, indent=2))
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="request-log rows per organisation")
    parser.add_argument("--decisions", type=int, default=20_000, help="decisions per organisation")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "rows_per_organisation": args.rows,
        "decisions_per_organisation": args.decisions,
    }
    name = f"pointsman_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(urlsplit(args.postgres)._replace(path=f"/{name}"))
        results["postgres"] = await bench("postgres", url, args)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    results["sqlite"] = await bench("sqlite", None, args)
    out = ROOT / "bench" / "results" / "stats_query.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main())
