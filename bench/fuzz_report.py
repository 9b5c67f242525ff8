"""Fuzz cases tried and statuses seen: the hostile requests of
tests/fuzz_requests.py against a server on a fresh PostgreSQL database.

    .venv/bin/python bench/fuzz_report.py [--seed 13] [--cases 40]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fuzz_requests

from pointsman.server.app.server import open_server

from server_fixtures import settings

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def main(seed: int, cases: int) -> int:
    name = f"pointsman_fuzz_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        server = await open_server(settings(DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{name}"))
        await server.start()
        started = time.perf_counter()
        try:
            outcome = await fuzz_requests.run(server.address, seed, cases)
        finally:
            await server.stop(grace=0)
        print(
            f"{outcome.cases} cases over {len(list(fuzz_requests.methods()))} methods, seed {seed}, "
            f"{time.perf_counter() - started:.1f} s"
        )
        for status, count in outcome.statuses.most_common():
            print(f"  {status:20} {count}")
        for method, code, details in outcome.forbidden:
            print(f"  FORBIDDEN {method}: {code} {details}")
        return 1 if outcome.forbidden else 0
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--cases", type=int, default=40, help="per method")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seed, args.cases)))
