"""The OpenAI-compatible HTTP door beside the gRPC path and a direct call to
the same fake OpenAI upstream: added p50/p99 at concurrency 1, requests per
second at concurrency 32, and server CPU per request, for whole answers and
SSE streams. The fake upstream and the server each run in their own process;
this script (aiohttp and grpc.aio clients) is the load generator.

    .venv/bin/python bench/http_door.py [--requests 1000] [--seconds 5]

Targets (issue 16): at least 10x LiteLLM's ~95 requests/s on this machine,
and at most 1.5 ms added p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.type.v1 import chat_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import cpu_seconds, free_port, summary, throughput, timed, wait_serving

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
PROMPT = "Say hello to the benchmark in a few words please"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="sequential requests per latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each throughput run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "http_door.json"))
    args = parser.parse_args()

    upstream_port, grpc_port, http_port = free_port(), free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fakes" / "openai_upstream.py"), "--port", str(upstream_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None
    upstream.stdout.readline()  # "listening on ..."
    upstream_url = f"http://127.0.0.1:{upstream_port}/v1"
    door_url = f"http://127.0.0.1:{http_port}/v1"
    address = f"127.0.0.1:{grpc_port}"
    routes_file = Path(args.out).parent / "http-door-routes.yaml"
    routes_file.parent.mkdir(parents=True, exist_ok=True)
    routes_file.write_text(
        json.dumps(
            {
                "defaults": {"retry": {"retries": 0}},
                "endpoints": {
                    "fake": {"provider": "openai", "base_url": upstream_url, "api_key_env": "OPENAI_API_KEY"}
                },
                "models": {MODEL: {"deployments": [{"endpoint": "fake", "model": MODEL}]}},
            }
        )
    )
    env = {
        **os.environ,
        "POINTSMAN_ADDRESS": address,
        "POINTSMAN_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
        "OPENAI_API_KEY": "bench",
        "POINTSMAN_ROUTES_FILE": str(routes_file),
        # Calls without a credential act as the development admin.
        "POINTSMAN_DEV_MODE": "true",
        "POINTSMAN_DATA_DIR": tempfile.mkdtemp(prefix="pointsman-bench-"),
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([str(Path(sys.executable).with_name("pointsman")), "serve"], env=env)
    results: dict[str, object] = {}
    try:
        await wait_serving(address)
        await asyncio.sleep(0.5)
        body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
        stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        encoded, encoded_stream = json.dumps(body).encode(), json.dumps(stream_body).encode()
        headers = {"Content-Type": "application/json"}
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        channel = grpc.aio.insecure_channel(address)
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        messages = [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=PROMPT)]
        complete_request = orch.CompleteRequest(model=MODEL, messages=messages)
        chat_request = orch.ChatRequest(model=MODEL, messages=messages)

        def post(url: str, data: bytes) -> object:
            async def call() -> None:
                async with http.post(f"{url}/chat/completions", data=data, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"{url}: HTTP {response.status} {await response.text()}")
                    await response.read()

            return call

        async def grpc_complete() -> None:
            await stub.Complete(complete_request, timeout=10)

        async def grpc_stream() -> None:
            async for _ in stub.Chat(chat_request, timeout=10):
                pass

        runs = {
            "direct_complete": post(upstream_url, encoded),
            "grpc_complete": grpc_complete,
            "http_complete": post(door_url, encoded),
            "direct_stream": post(upstream_url, encoded_stream),
            "grpc_stream": grpc_stream,
            "http_stream": post(door_url, encoded_stream),
        }
        latency: dict[str, dict[str, float]] = {}
        for name, call in runs.items():
            await timed(call, 200)  # type: ignore[arg-type]  # warm up
            latency[name] = summary(await timed(call, args.requests))  # type: ignore[arg-type]
        results["latency_concurrency_1"] = latency
        results["added_ms"] = {
            f"{door}_{kind}": {
                stat: latency[f"{door}_{kind}"][stat] - latency[f"direct_{kind}"][stat]
                for stat in latency[f"{door}_{kind}"]
            }
            for door in ("http", "grpc")
            for kind in ("complete", "stream")
        }
        rps: dict[str, float] = {}
        cpu_per_request: dict[str, float] = {}
        for name, call in runs.items():
            cpu_before = cpu_seconds(server.pid)
            started = time.perf_counter()
            rps[name] = await throughput(call, args.concurrency, args.seconds)  # type: ignore[arg-type]
            elapsed = time.perf_counter() - started
            if not name.startswith("direct"):
                cpu_per_request[name] = (cpu_seconds(server.pid) - cpu_before) / (rps[name] * elapsed) * 1000
        results[f"requests_per_second_concurrency_{args.concurrency}"] = rps
        results["server_cpu_ms_per_request"] = cpu_per_request
        await http.close()
        await channel.close()
    finally:
        server.terminate()
        upstream.terminate()
        server.wait(timeout=30)
        upstream.wait(timeout=30)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
