"""Decision writes per second into PostgreSQL (and SQLite for comparison), as
the batched decision writer would do them: batches of realistic decisions
(0-3 findings each) written back to back for a fixed time.

    .venv/bin/python bench/store_writes.py [--seconds 5] [--batch 500] [--writers 1]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Creates a database with a random name on that server and drops it at the end.
Methods compared on PostgreSQL: the store's `record_many` (COPY for batches
of 32 or more; when a key is stored already, a retried batch, one INSERT over
unnest'ed arrays, ON CONFLICT DO NOTHING, writes the rest), `executemany` of
that INSERT, and bare `copy_records_to_table` (one duplicate fails the whole
batch); plus unbatched `record` for scale.
Writes bench/results/store_writes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pointsman.server.backends.stores import Stores, open_stores
from pointsman.server.backends.stores.sql import decision_rows
from pointsman.server.domain.firewall.verdict import Action, Category, Decision, Direction, Finding

ROOT = Path(__file__).resolve().parent.parent
ORGANISATIONS = [f"org-{i}" for i in range(20)]


def decisions(count: int, seed: int = 7) -> list[Decision]:
    rng = random.Random(seed)
    kinds = [
        Finding(Category.PII, type="EMAIL_ADDRESS", start=10, end=31, score=0.85),
        Finding(Category.PII, type="PHONE_NUMBER", start=40, end=52, score=0.6),
        Finding(Category.SECRET, type="OPENAI_KEY", start=5, end=56, preview="sk-…cdef", digest="ab" * 32),
        Finding(Category.BLOCK_RULE, rule="rules/0123456789abcdef", start=0, end=9),
        Finding(Category.TOXICITY, type="profanity", start=0, end=120, score=0.93),
    ]
    made = []
    for i in range(count):
        findings = tuple(rng.sample(kinds, rng.choice((0, 0, 1, 1, 2, 3))))
        made.append(
            Decision(
                id=f"{time.time_ns():016x}{secrets.token_hex(4)}",
                create_time=datetime.now(UTC),
                organisation=rng.choice(ORGANISATIONS),
                principal=f"users/u{rng.randrange(500)}",
                direction=rng.choice((Direction.INPUT, Direction.OUTPUT)),
                action=Action.BLOCK if findings else Action.ALLOW,
                findings=findings,
                content_sha256=hashlib.sha256(str(i).encode()).hexdigest(),
                request_id=secrets.token_hex(8),
            )
        )
    return made


async def sustained(
    write: Callable[[Sequence[Decision]], Awaitable[None]],
    pool: list[Decision],
    seconds: float,
    batch: int,
    writers: int,
) -> dict[str, float]:
    """Writes batches back to back from `writers` tasks for `seconds`."""
    written = 0
    cursor = 0
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []

    async def writer() -> None:
        nonlocal written, cursor
        while time.perf_counter() < deadline:
            if cursor + batch > len(pool):
                break  # every fresh decision written: the rate is over the time it took
            chunk = pool[cursor : cursor + batch]
            cursor += batch
            started = time.perf_counter()
            await write(chunk)
            latencies.append(time.perf_counter() - started)
            written += len(chunk)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "decisions": written,
        "seconds": round(elapsed, 2),
        "per_second": round(written / elapsed),
        "batch_p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "batch_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


_EXECUTEMANY = (
    "INSERT INTO decisions (organisation, id, create_time, principal, direction, action, categories, findings,"
    " content_sha256, request_id, details) VALUES ($1, $2, $3, $4, $5, $6, string_to_array($7, ','), $8::jsonb,"
    " $9, $10, $11::jsonb) ON CONFLICT DO NOTHING"
)
_COLUMNS = [
    "organisation",
    "id",
    "create_time",
    "principal",
    "direction",
    "action",
    "categories",
    "findings",
    "content_sha256",
    "request_id",
    "details",
]


async def bench_postgres(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    name = f"pointsman_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    results: dict[str, Any] = {}
    try:
        url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        stores = await open_stores(url, ".", pool_size=max(args.writers, 2))
        database = stores.decisions._db  # type: ignore[attr-defined]
        pool = database.pool
        # Enough fresh decisions per method for 60,000 a second.
        total = int(args.seconds * 60_000 * args.writers) + args.batch * args.writers

        async def executemany(chunk: Sequence[Decision]) -> None:
            rows = [(*row[:6], ",".join(row[6]), *row[7:]) for row in decision_rows(database, chunk)]
            await pool.executemany(_EXECUTEMANY, rows)

        async def copy(chunk: Sequence[Decision]) -> None:
            rows = [(*row[:6], list(row[6]), *row[7:]) for row in decision_rows(database, chunk)]
            async with pool.acquire() as connection:
                await connection.copy_records_to_table("decisions", records=rows, columns=_COLUMNS)

        # Fresh decisions per method: none is slowed (or helped) by conflicts.
        for label, write in (
            ("record_many (store)", stores.decisions.record_many),
            ("executemany", executemany),
            ("copy_records_to_table", copy),
        ):
            result = await sustained(write, decisions(total), args.seconds, args.batch, args.writers)
            results[label] = result
            print(f"postgres {label:24s} {result}")

        unbatched = decisions(5_000, seed=11)

        async def one_by_one(chunk: Sequence[Decision]) -> None:
            for decision in chunk:
                await stores.decisions.record(decision)

        results["record (one per call)"] = await sustained(one_by_one, unbatched, min(args.seconds, 2), 1, 1)
        print(f"postgres {'record (one per call)':24s} {results['record (one per call)']}")
        count = await pool.fetchval("SELECT count(*) FROM decisions")
        print(f"postgres rows written: {count}")
        await stores.aclose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return results


async def bench_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        stores: Stores = await open_stores(None, data_dir)
        made = decisions(int(args.seconds * 60_000) + args.batch, seed=13)
        result = await sustained(stores.decisions.record_many, made, args.seconds, args.batch, 1)
        print(f"sqlite   {'record_many':24s} {result}")
        await stores.aclose()
    return {"record_many": result}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--writers", type=int, default=1)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    results = {
        "date": datetime.now(UTC).date().isoformat(),
        "seconds": args.seconds,
        "batch": args.batch,
        "writers": args.writers,
        "postgres": await bench_postgres(args.postgres, args),
        "sqlite": await bench_sqlite(args),
    }
    out = ROOT / "bench" / "results" / "store_writes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
