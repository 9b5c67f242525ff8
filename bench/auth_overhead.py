"""What authentication adds to each call, one call at a time:

- a JWT already verified (the cache hit every call after a client's first);
- a JWT seen for the first time (HS256 signature and claims checked by PyJWT);
- an API key in the cache (digest and compare, no database);
- an API key not in the cache (one SQLite read, on an in-memory database);
- the whole per-call gate (`Authenticator.admit`: header parsing, credential,
  role check) with a cached JWT;
- a unary RPC (ListModels) through a real server on loopback, with a cached
  JWT versus development mode without a credential: the end-to-end difference.

    .venv/bin/python bench/auth_overhead.py [--n 20000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.server import open_server
from pointsman.server.auth import ApiKeys, ApiKeyVerifier, Authenticator, TokenVerifier, issue_token
from pointsman.server.backends.stores import User, UserRole, open_stores
from pointsman.server.settings import Settings

SECRET = "bench-secret-that-is-long-enough-for-hs256"
CLAIMS: dict[str, Any] = {"issuer": "pointsman", "audience": "pointsman", "ttl_seconds": 3600}


def new_token(i: int) -> str:
    token, _ = issue_token(
        SECRET, subject=f"u{i}", organisation="acme", role=UserRole.DEVELOPER, email=f"u{i}@acme.test", **CLAIMS
    )
    return token


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "p50_us": round(ordered[len(ordered) // 2] / 1e3, 2),
        "p99_us": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1e3, 2),
        "mean_us": round(statistics.fmean(ordered) / 1e3, 2),
    }


def time_sync(call: Callable[[int], object], n: int) -> dict[str, float]:
    samples = []
    for i in range(n):
        started = time.perf_counter_ns()
        call(i)
        samples.append(time.perf_counter_ns() - started)
    return summary(samples)


async def time_async(call: Callable[[int], Awaitable[object]], n: int) -> dict[str, float]:
    samples = []
    for i in range(n):
        started = time.perf_counter_ns()
        await call(i)
        samples.append(time.perf_counter_ns() - started)
    return summary(samples)


async def rpc_latency(n: int) -> dict[str, dict[str, float]]:
    """Two servers, called in alternation so drift of the machine hits both alike."""
    base: dict[str, Any] = {
        "POINTSMAN_ADDRESS": "127.0.0.1:0",
        "USE_MOCK": True,
        "DATABASE_URL": "sqlite://:memory:",
        "REDIS_URL": None,
        "REGISTRY_ADDR": None,
        "JWT_SECRET": SECRET,
    }
    dev = await open_server(Settings(**base, POINTSMAN_DEV_MODE=True))
    secured = await open_server(Settings(**base, POINTSMAN_DEV_MODE=False))
    request = orch.ListModelsRequest()
    samples: dict[str, list[int]] = {"dev mode, no credential": [], "cached JWT": []}
    try:
        await dev.start()
        await secured.start()
        async with (
            AsyncClient(dev.address, timeout=10) as anonymous,
            AsyncClient(secured.address, timeout=10, token=new_token(0)) as bearer,
        ):
            clients = {"dev mode, no credential": anonymous, "cached JWT": bearer}
            for i in range(200 + n):  # the first 200 warm up connections, caches and handlers
                for label, client in clients.items():
                    started = time.perf_counter_ns()
                    await client.orchestrator.ListModels(request)
                    if i >= 200:
                        samples[label].append(time.perf_counter_ns() - started)
    finally:
        await dev.stop(grace=0)
        await secured.stop(grace=0)
    return {label: summary(values) for label, values in samples.items()}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    n = args.n
    logging.basicConfig(level=logging.ERROR)  # no access log or start-up lines in the timings

    verifier = TokenVerifier(SECRET, issuer="pointsman", audience="pointsman", cache_size=n + 1)
    cached = new_token(0)
    verifier.verify(cached)
    fresh = [new_token(i + 1) for i in range(n)]

    stores = await open_stores("sqlite://:memory:", ".")
    try:
        user = await stores.users.create_user(User("", "acme", "bench@acme.test", UserRole.DEVELOPER))
        _, key = await ApiKeys(stores.users).create_api_key("acme", user.id, "bench")
        keys = ApiKeyVerifier(stores.users)
        uncached_keys = ApiKeyVerifier(stores.users, ttl_seconds=0)
        await keys.verify(key)

        settings = Settings(JWT_SECRET=SECRET, POINTSMAN_DEV_MODE=False, DATABASE_URL="sqlite://:memory:")
        gate = Authenticator(settings, stores.users)
        header = f"Bearer {cached}"
        await gate.admit(UserRole.VIEWER, header, None)

        results: dict[str, Any] = {
            "jwt_cached": time_sync(lambda _: verifier.verify(cached), n),
            "jwt_uncached": time_sync(lambda i: verifier.verify(fresh[i]), n),
            "api_key_cached": await time_async(lambda _: keys.verify(key), n),
            "api_key_uncached_sqlite_memory": await time_async(lambda _: uncached_keys.verify(key), min(n, 2000)),
            "gate_admit_cached_jwt": await time_async(lambda _: gate.admit(UserRole.VIEWER, header, None), n),
        }
    finally:
        await stores.aclose()
    results["rpc_list_models"] = await rpc_latency(min(n, 3000))

    for name, figures in results.items():
        print(f"{name:32} {json.dumps(figures)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
