"""Memory while PostgreSQL is slow: the decision write buffer in front of the
real PostgreSQL store, fed at a steady rate while another connection holds the
decisions table locked (every INSERT waits), then released.

Prints, every half second, the process's RSS, the records waiting in the
buffer, and those written and dropped; then a summary: RSS when the buffer
filled and at the end of the stall (flat means the difference is ~0), the
drops counted, and whether everything left was written after the lock went.

    .venv/bin/python bench/slow_database.py [--rate 20000] [--stall 10] [--capacity 100000]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Creates a database with a random name on that server and drops it at the end.
Writes bench/results/slow_database.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store_writes import ROOT, decisions

from pointsman.server.backends.stores import open_stores
from pointsman.server.backends.write_buffer import WriteBuffer
from pointsman.server.domain.firewall.verdict import Decision

TICK_SECONDS = 0.01
SAMPLE_SECONDS = 0.5


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    stores = await open_stores(url, ".")
    buffer: WriteBuffer[Decision] = WriteBuffer(stores.decisions.record_many, name="decisions", capacity=args.capacity)
    buffer.start()
    produced = 0
    samples: list[dict[str, float]] = []
    started = time.perf_counter()

    async def produce(seconds: float) -> None:
        nonlocal produced
        per_tick = max(1, int(args.rate * TICK_SECONDS))
        next_tick = time.perf_counter()
        until = next_tick + seconds
        while next_tick < until:
            for decision in decisions(per_tick, seed=produced):
                buffer.add(decision)
            produced += per_tick
            next_tick += TICK_SECONDS
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))

    async def sample(phase: str) -> None:
        while True:
            samples.append(
                {
                    "t": round(time.perf_counter() - started, 2),
                    "phase": phase,
                    "rss_mib": round(rss_mib(), 1),
                    "pending": buffer.pending,
                    "written": buffer.written,
                    "dropped": buffer.dropped,
                }
            )
            print(samples[-1])
            await asyncio.sleep(SAMPLE_SECONDS)

    async def phase(name: str, seconds: float) -> None:
        sampler = asyncio.create_task(sample(name))
        try:
            await produce(seconds)
        finally:
            sampler.cancel()

    await phase("normal", args.before)
    locker = await asyncpg.connect(url)
    locking = locker.transaction()
    await locking.start()
    await locker.execute("LOCK TABLE decisions IN ACCESS EXCLUSIVE MODE")
    await phase("stalled", args.stall)
    stalled = [s for s in samples if s["phase"] == "stalled"]
    await locking.rollback()
    await locker.close()
    await phase("released", args.after)
    await buffer.close(timeout_seconds=30)
    rows = await asyncpg.connect(url)
    try:
        in_database = await rows.fetchval("SELECT count(*) FROM decisions")
    finally:
        await rows.close()
    await stores.aclose()

    full = next((s for s in stalled if s["pending"] >= args.capacity), None)
    return {
        "settings": {k: getattr(args, k) for k in ("rate", "before", "stall", "after", "capacity")},
        "produced": produced,
        "written": buffer.written,
        "dropped": buffer.dropped,
        "rows_in_database": in_database,
        "nothing_unaccounted": produced == buffer.written + buffer.dropped == in_database + buffer.dropped,
        "peak_pending": max(s["pending"] for s in samples),
        "rss_mib_before_stall": stalled[0]["rss_mib"],
        "rss_mib_when_buffer_full": full["rss_mib"] if full else None,
        "rss_mib_end_of_stall": stalled[-1]["rss_mib"],
        "rss_mib_peak": max(s["rss_mib"] for s in samples),
        "samples": samples,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=20_000, help="decisions added per second")
    parser.add_argument("--before", type=float, default=3.0, help="seconds before the stall")
    parser.add_argument("--stall", type=float, default=10.0, help="seconds the table stays locked")
    parser.add_argument("--after", type=float, default=5.0, help="seconds after the lock is released")
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    name = f"pointsman_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(args.postgres)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        results = await run(urlunsplit(urlsplit(args.postgres)._replace(path=f"/{name}")), args)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    out = ROOT / "bench" / "results" / "slow_database.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
