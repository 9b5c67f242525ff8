"""Hostile requests for every RPC of every service (tests/fuzz_requests.py),
against a real server on PostgreSQL: none may end INTERNAL or UNKNOWN. The
run is seeded; `-s` prints the statuses seen."""

from __future__ import annotations

import os
from typing import Any

import fuzz_requests
from state_fixtures import PostgresDatabase

SEED = int(os.environ.get("POINTSMAN_FUZZ_SEED", "13"))
PER_METHOD = int(os.environ.get("POINTSMAN_FUZZ_CASES", "40"))


async def test_no_request_ends_internal_or_unknown(postgres_database: PostgresDatabase, start_server: Any) -> None:
    # The database fixture first, so that it is dropped after the server stops.
    server = await start_server(DATABASE_URL=postgres_database.url)
    outcome = await fuzz_requests.run(server.address, SEED, PER_METHOD)
    print(f"\nfuzz: {outcome.cases} cases over {len(list(fuzz_requests.methods()))} methods, seed {SEED}")
    for name, count in outcome.statuses.most_common():
        print(f"  {name:20} {count}")
    assert outcome.cases == PER_METHOD * len(list(fuzz_requests.methods()))
    assert not outcome.forbidden, "\n".join(f"{m}: {c} {d}" for m, c, d in outcome.forbidden[:20])
