"""Batch throughput: items per second through Redis Streams with one and two
`pointsman worker` processes, against a fake OpenAI upstream that answers each
request after a fixed latency, and on the built-in model; the in-process
runner (no Redis) for comparison; and the queue alone (a worker in this
process whose items do nothing), which is its ceiling per worker process.

A batch of `--items` items is created on a `pointsman serve` process whose
embedded worker is off; the clock runs from CreateBatch to WatchBatch's final
`done`. The upstream, the server, the workers and Redis each run in their own
process; this script is the client.

    .venv/bin/python bench/batch_throughput.py [--items 2000] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.asyncio import Redis

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.server.backends.shared import open_redis
from pointsman.server.backends.shared.batch_queue import RedisBatchQueue
from pointsman.server.domain.batches.ports import ItemOutcome, Job
from pointsman.server.domain.batches.worker import BatchWorker
from pointsman.server.transport.batches import BatchItemRunner
from pointsman.type.v1 import chat_pb2

ROOT = Path(__file__).resolve().parent.parent
POINTSMAN = str(Path(sys.executable).with_name("pointsman"))
MODEL = "bench-model"
REDIS_URL = os.environ.get("POINTSMAN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_serving(address: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} never became SERVING")
            await asyncio.sleep(0.05)


async def wait_workers(redis: Redis, prefix: str, count: int, timeout: float = 30.0) -> None:
    """Until `count` workers read from the queue (each joins the group on its first read)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if len(await redis.xinfo_consumers(f"{prefix}batch:jobs", "workers")) >= count:
                return
        except Exception:
            pass  # the group does not exist yet
        if time.monotonic() > deadline:
            raise TimeoutError("workers did not start")
        await asyncio.sleep(0.05)


async def run_batch(address: str, model: str, items: int) -> float:
    """Items per second, from CreateBatch to the watcher's `done`."""
    messages = [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="Summarise the benchmark in a few words")]
    request = orch.CreateBatchRequest(
        items=[orch.BatchItem(custom_id=f"item-{n}", model=model, messages=messages) for n in range(items)],
        max_concurrency=64,
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        started = time.perf_counter()
        batch = (await stub.CreateBatch(request, timeout=60)).batch
        failed = 0
        async for event in stub.WatchBatch(orch.WatchBatchRequest(name=batch.name), timeout=600):
            if event.HasField("done"):
                failed = event.done.failed_items
        elapsed = time.perf_counter() - started
    if failed:
        raise RuntimeError(f"{failed} of {items} items failed")
    return items / elapsed


class NoWork(BatchItemRunner):
    """Answers every item at once with a fixed result: only the queue is measured."""

    def __init__(self) -> None:
        self.result = orch.BatchResult(custom_id="x", response=orch.CompleteResponse()).SerializeToString()

    async def run(self, job: Job) -> ItemOutcome:
        return ItemOutcome("x", self.result)


async def queue_alone(items: int, concurrency: int) -> float:
    prefix = f"pointsman-bench:{secrets.token_hex(4)}:"
    client = open_redis(REDIS_URL)
    queue = RedisBatchQueue(client, open_redis(REDIS_URL, socket_timeout=5), prefix=prefix)
    await queue.ensure_group()
    worker = BatchWorker(
        queue,
        NoWork(),
        consumer="bench",
        concurrency=concurrency,
        max_attempts=3,
        retry_backoff_seconds=1,
        reclaim_idle_seconds=30,
    )
    worker.start()
    payloads = [orch.BatchItem(custom_id=f"item-{n}", model=MODEL).SerializeToString() for n in range(items)]
    started = time.perf_counter()
    batch = await queue.create("bench", "bench", "bench", payloads, 64)
    async for _ in queue.results("bench", batch.id):
        pass
    elapsed = time.perf_counter() - started
    await worker.stop(0)
    await queue.aclose()
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    return items / elapsed


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000, help="items per batch (at most 10000)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="the fake upstream's latency per request")
    parser.add_argument(
        "--worker-concurrency", type=int, default=32, help="items one worker runs at once (two: 64, as in-process)"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch_throughput.json"))
    args = parser.parse_args()

    upstream_port = free_port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "fakes" / "openai_upstream.py"),
            "--port",
            str(upstream_port),
            "--fault",
            "fault-slow-first-byte",
            "--first-byte-delay-s",
            str(args.latency_ms / 1000),
        ],
        stdout=subprocess.PIPE,
    )
    assert upstream.stdout is not None
    upstream.stdout.readline()  # "listening on ..."
    prefix = f"pointsman-bench:{secrets.token_hex(4)}:"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "POINTSMAN_"))},
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "OPENAI_API_KEY": "bench",
        "OPENAI_MODELS": MODEL,
        "POINTSMAN_UPSTREAM_RETRIES": "0",
        "POINTSMAN_DEV_MODE": "true",
        "DATABASE_URL": "sqlite://:memory:",
        "LOG_LEVEL": "WARNING",
    }
    queued = {
        **env,
        "REDIS_URL": REDIS_URL,
        "POINTSMAN_REDIS_PREFIX": prefix,
        "POINTSMAN_BATCH_EMBEDDED_WORKER": "false",
        "POINTSMAN_BATCH_WORKER_CONCURRENCY": str(args.worker_concurrency),
    }
    redis = Redis.from_url(REDIS_URL)
    results: dict[str, object] = {}
    processes: list[subprocess.Popen[bytes]] = [upstream]
    try:
        address = f"127.0.0.1:{free_port()}"
        processes.append(subprocess.Popen([POINTSMAN, "serve"], env={**queued, "POINTSMAN_ADDRESS": address}))
        await wait_serving(address)
        runs: dict[str, float] = {}
        for workers in (1, 2):
            started = [subprocess.Popen([POINTSMAN, "worker"], env=queued) for _ in range(workers)]
            processes += started
            await wait_workers(redis, prefix, workers)
            for model, label in ((MODEL, f"fake upstream {args.latency_ms:g} ms"), ("builtin", "builtin model")):
                await run_batch(address, model, min(200, args.items))  # warm up
                runs[f"redis, {workers} worker{'s' if workers > 1 else ''}, {label}"] = await run_batch(
                    address, model, args.items
                )
                print(f"{list(runs)[-1]}: {list(runs.values())[-1]:.0f} items/s", flush=True)
            for process in started:
                stop(process)

        # The embedded default: the server runs the batch itself, 64 at a time.
        address = f"127.0.0.1:{free_port()}"
        processes.append(subprocess.Popen([POINTSMAN, "serve"], env={**env, "POINTSMAN_ADDRESS": address}))
        await wait_serving(address)
        for model, label in ((MODEL, f"fake upstream {args.latency_ms:g} ms"), ("builtin", "builtin model")):
            await run_batch(address, model, min(200, args.items))
            runs[f"in-process (no Redis), {label}"] = await run_batch(address, model, args.items)
            print(f"{list(runs)[-1]}: {list(runs.values())[-1]:.0f} items/s", flush=True)
        await queue_alone(min(200, args.items), args.worker_concurrency)
        runs["queue alone, 1 worker in this process, items that do nothing"] = await queue_alone(
            args.items, args.worker_concurrency
        )
        print(f"{list(runs)[-1]}: {list(runs.values())[-1]:.0f} items/s", flush=True)
        results["items_per_second"] = runs
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                stop(process)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()

    results["settings"] = {
        "items": args.items,
        "latency_ms": args.latency_ms,
        "worker_concurrency": args.worker_concurrency,
        "batch_max_concurrency": 64,
    }
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
