"""Gateway overhead: `Complete` and streaming `Chat` through Pointsman to a fake
OpenAI-compatible upstream, against the same upstream called directly.

Reports p50/p99 added latency at concurrency 1, throughput at concurrency 32,
server CPU per request, RSS idle and after load, and time from start to SERVING.
The fake upstream and the server each run in their own process; this script is
the load generator.

    .venv/bin/python bench/gateway_overhead.py [--requests 2000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.type.v1 import chat_pb2

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
PROMPT = "Say hello to the benchmark in a few words please"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_serving(address: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    # Short reconnect backoff: by default a channel that found nobody listening
    # waits about a second before trying again, which would be measured as start-up.
    options = [("grpc.initial_reconnect_backoff_ms", 5), ("grpc.max_reconnect_backoff_ms", 20)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("server never became SERVING")
            await asyncio.sleep(0.005)


async def timed(call: Callable[[], Awaitable[None]], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - start)
    return latencies


async def throughput(call: Callable[[], Awaitable[None]], concurrency: int, seconds: float) -> float:
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await call()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def per_chunk_cost(stub: orchestrator_pb2_grpc.OrchestratorServiceStub, pid: int, seconds: float) -> float:
    """Server CPU per streamed chunk: the slope between 10- and 200-chunk answers."""
    cpu_per_answer = {}
    for alias, chunks in (("chunks-10", 10), ("chunks-200", 200)):
        request = orch.ChatRequest(model=alias, messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="x")])

        async def answer(request: orch.ChatRequest = request) -> None:
            async for _ in stub.Chat(request, timeout=30):
                pass

        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        rate = await throughput(answer, 16, seconds)
        cpu_per_answer[chunks] = (cpu_seconds(pid) - cpu_before) / (rate * (time.perf_counter() - started))
    return (cpu_per_answer[200] - cpu_per_answer[10]) / 190 * 1e6


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gateway_overhead.json"))
    args = parser.parse_args()

    upstream_port, server_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fakes" / "openai_upstream.py"), "--port", str(upstream_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None
    upstream.stdout.readline()  # "listening on ..."
    base_url = f"http://127.0.0.1:{upstream_port}/v1"
    address = f"127.0.0.1:{server_port}"
    # Two more aliases answer with 10 and 200 chunks, 2 ms apart so that each
    # arrives on its own: the difference in CPU is the per-chunk cost.
    routes_file = Path(args.out).parent / "bench-routes.yaml"
    routes_file.parent.mkdir(parents=True, exist_ok=True)
    routes_file.write_text(
        json.dumps(
            {
                "defaults": {"retry": {"retries": 0}},
                "endpoints": {"fake": {"provider": "openai", "base_url": base_url, "api_key_env": "OPENAI_API_KEY"}},
                "models": {
                    MODEL: {"deployments": [{"endpoint": "fake", "model": MODEL}]},
                    "cached": {"cache_ttl_seconds": 3600, "deployments": [{"endpoint": "fake", "model": MODEL}]},
                    "chunks-10": {"deployments": [{"endpoint": "fake", "model": "long-10+slow-2"}]},
                    "chunks-200": {"deployments": [{"endpoint": "fake", "model": "long-200+slow-2"}]},
                },
            }
        )
    )
    env = {
        **os.environ,
        "POINTSMAN_ADDRESS": address,
        "OPENAI_API_KEY": "bench",
        "POINTSMAN_ROUTES_FILE": str(routes_file),
        # Calls without a credential act as the development admin; the
        # embedded SQLite database goes to a throwaway directory.
        "POINTSMAN_DEV_MODE": "true",
        "POINTSMAN_DATA_DIR": tempfile.mkdtemp(prefix="pointsman-bench-"),
        "LOG_LEVEL": "WARNING",
    }
    spawned = time.perf_counter()
    server = subprocess.Popen([str(Path(sys.executable).with_name("pointsman")), "serve"], env=env)
    results: dict[str, object] = {}
    try:
        await wait_serving(address)
        results["start_to_serving_ms"] = (time.perf_counter() - spawned) * 1000
        await asyncio.sleep(0.5)
        results["rss_idle_mib"] = rss_mib(server.pid)

        body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
        stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        http = aiohttp.ClientSession()
        channel = grpc.aio.insecure_channel(address)
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        messages = [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=PROMPT)]
        complete_request = orch.CompleteRequest(model=MODEL, messages=messages)
        chat_request = orch.ChatRequest(model=MODEL, messages=messages)
        ttft: list[float] = []

        async def direct_complete() -> None:
            async with http.post(f"{base_url}/chat/completions", json=body) as response:
                await response.read()

        async def direct_stream() -> None:
            start = time.perf_counter()
            first = True
            async with http.post(f"{base_url}/chat/completions", json=stream_body) as response:
                async for line in response.content:
                    if first and line.startswith(b"data: {") and b'"content"' in line:
                        ttft.append(time.perf_counter() - start)
                        first = False

        async def gateway_complete() -> None:
            await stub.Complete(complete_request, timeout=10)

        cached_request = orch.CompleteRequest(model="cached", messages=messages)

        async def gateway_cache_hit() -> None:
            await stub.Complete(cached_request, timeout=10)

        async def gateway_stream() -> None:
            start = time.perf_counter()
            first = True
            async for event in stub.Chat(chat_request, timeout=10):
                if first and event.HasField("text_delta"):
                    ttft.append(time.perf_counter() - start)
                    first = False

        runs = {
            "direct_complete": direct_complete,
            "gateway_complete": gateway_complete,
            "direct_stream": direct_stream,
            "gateway_stream": gateway_stream,
            "gateway_cache_hit": gateway_cache_hit,  # in-process cache (L1), end to end over gRPC
        }
        latency: dict[str, dict[str, float]] = {}
        for name, call in runs.items():
            await timed(call, 200)  # warm up
            ttft.clear()
            latency[name] = summary(await timed(call, args.requests))
            if ttft:
                latency[name]["ttft_p50_ms"] = statistics.median(ttft) * 1000
        results["latency_concurrency_1"] = latency
        results["added_ms"] = {
            kind: {
                stat: latency[f"gateway_{kind}"][stat] - latency[f"direct_{kind}"][stat]
                for stat in latency[f"gateway_{kind}"]
            }
            for kind in ("complete", "stream")
        }

        rps: dict[str, float] = {}
        cpu_per_request: dict[str, float] = {}
        for name in ("direct_complete", "gateway_complete", "gateway_stream"):
            cpu_before = cpu_seconds(server.pid)
            started = time.perf_counter()
            rps[name] = await throughput(runs[name], args.concurrency, args.seconds)
            elapsed = time.perf_counter() - started
            if name.startswith("gateway"):
                cpu_per_request[name] = (cpu_seconds(server.pid) - cpu_before) / (rps[name] * elapsed) * 1000
        results[f"requests_per_second_concurrency_{args.concurrency}"] = rps
        results["server_cpu_ms_per_request"] = cpu_per_request
        results["stream_cpu_us_per_chunk"] = await per_chunk_cost(stub, server.pid, args.seconds)
        results["rss_after_load_mib"] = rss_mib(server.pid)
        await channel.close()
        await http.close()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=5)

    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
