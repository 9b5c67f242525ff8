"""Shared-state figures with two real server processes on one PostgreSQL
database and one Redis:

- cache hit end to end over loopback gRPC (`Complete`): L1 (the answer in the
  replica's own memory) and L2 (stored by the other replica, found in Redis);
- rule change visible on the other replica: from `CreateRule` returning on A
  to the change arriving on a `WatchRules` stream held open on B (B's firewall
  recompiles from the same announcement);
- the floor under the cache-hit figures: the standard health `Check` on A, an
  empty unary call through the same server, measured in the same run (figures
  on this shared machine move by 2-4x between sessions; their ratio to the
  floor moves far less).

The model is the built-in one, so no upstream is involved. Needs PostgreSQL
and Redis (the defaults below are the development machine's).

    .venv/bin/python bench/shared_state.py [--requests 2000] [--rules 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import ROOT, free_port, percentile, wait_serving

from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.firewall.v1 import firewall_pb2_grpc
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.type.v1 import chat_pb2

POSTGRES_ADMIN_URL = os.environ.get("POINTSMAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("POINTSMAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def summary(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(seconds) * 1000, 3),
        "p99_ms": round(percentile(seconds, 0.99) * 1000, 3),
        "n": len(seconds),
    }


def request(text: str) -> orch.CompleteRequest:
    return orch.CompleteRequest(model="builtin", messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=text)])


async def measure(a_address: str, b_address: str, requests: int, rules: int) -> dict[str, object]:
    async with grpc.aio.insecure_channel(a_address) as a, grpc.aio.insecure_channel(b_address) as b:
        a_chat, b_chat = (
            orchestrator_pb2_grpc.OrchestratorServiceStub(a),
            orchestrator_pb2_grpc.OrchestratorServiceStub(b),
        )
        a_rules, b_rules = firewall_pb2_grpc.FirewallServiceStub(a), firewall_pb2_grpc.FirewallServiceStub(b)

        async def timed(stub: orchestrator_pb2_grpc.OrchestratorServiceStub, texts: list[str]) -> list[float]:
            latencies = []
            for text in texts:
                started = time.perf_counter()
                response = await stub.Complete(request(text), timeout=10)
                latencies.append(time.perf_counter() - started)
                assert response.start.cached, "expected a cache hit"
            return latencies

        # The floor: an empty unary call through the same server.
        health = health_pb2_grpc.HealthStub(a)
        for _ in range(200):
            await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        floor = []
        for _ in range(requests):
            started = time.perf_counter()
            await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            floor.append(time.perf_counter() - started)

        # L1: the same request again and again on A.
        await a_chat.Complete(request("the one cached question"), timeout=10)
        await timed(a_chat, ["the one cached question"] * 200)  # warm up
        l1 = await timed(a_chat, ["the one cached question"] * requests)

        # L2: answers A stored, each asked once on B (then in B's L1, never asked again).
        texts = [f"question number {i} for the second level" for i in range(requests + 200)]
        for text in texts:
            await a_chat.Complete(request(text), timeout=10)
        await timed(b_chat, texts[:200])  # warm up
        l2 = await timed(b_chat, texts[200:])

        # Rule changes: created on A, seen by a watcher on B.
        watch = b_rules.WatchRules(fw.WatchRulesRequest(), timeout=600)
        await watch.read()  # the snapshot
        visible = []
        for i in range(rules):
            rule = fw.Rule(
                kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_SUBSTRING, pattern=f"word-{i}", enabled=True
            )
            created = await a_rules.CreateRule(fw.CreateRuleRequest(rule=rule), timeout=10)
            committed = time.perf_counter()
            change = await watch.read()
            visible.append(time.perf_counter() - committed)
            assert change.change.rule.name == created.rule.name
        watch.cancel()
    return {
        "cache_hit_l1": summary(l1),
        "cache_hit_l2": summary(l2),
        "rule_change_visible": summary(visible),
        "empty_call_floor": summary(floor),
    }


async def with_database() -> tuple[str, str]:
    name = f"pointsman_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop(name: str, prefix: str) -> None:
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rules", type=int, default=300)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "shared_state.json"))
    args = parser.parse_args()

    name, database_url = asyncio.run(with_database())
    prefix = f"pointsman-bench:{secrets.token_hex(4)}:"
    addresses = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    servers = []
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            for address in addresses:
                env = {
                    **os.environ,
                    "POINTSMAN_ADDRESS": address,
                    "DATABASE_URL": database_url,
                    "REDIS_URL": REDIS_URL,
                    "POINTSMAN_REDIS_PREFIX": prefix,
                    "POINTSMAN_CACHE_TTL_SECONDS": "3600",
                    "POINTSMAN_DEV_MODE": "true",
                    "POINTSMAN_DATA_DIR": data_dir,
                    "LOG_LEVEL": "WARNING",
                }
                servers.append(subprocess.Popen([str(Path(sys.executable).with_name("pointsman")), "serve"], env=env))
            for address in addresses:
                asyncio.run(wait_serving(address))
            results = asyncio.run(measure(*addresses, args.requests, args.rules))
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(timeout=20)
        asyncio.run(drop(name, prefix))
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
