"""The cost of image parts in the request path: `Complete` through Pointsman
with an inline image of 100 KB and 1 MB, against the same text-only request,
and each against the fake OpenAI upstream called directly with the same body
(the image as a base64 data: URL, as Pointsman sends it).

Reports p50/p99 at concurrency 1 through the gateway and direct, the latency
the gateway adds, and server CPU per call. The fake upstream and the server
each run in their own process; this script is the load generator.

    .venv/bin/python bench/image_parts.py [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc
from gateway_overhead import cpu_seconds, free_port, percentile, wait_serving

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.type.v1 import chat_pb2

ROOT = Path(__file__).resolve().parent.parent
MODEL = "bench-model"
PROMPT = "What is in this picture? Answer in a few words please"


def png_like(size: int) -> bytes:
    """`size` bytes that start as a PNG and do not compress (as real images do not)."""
    header = b"\x89PNG\r\n\x1a\n"
    return header + random.Random(size).randbytes(size - len(header))


def grpc_request(image: bytes | None) -> orch.CompleteRequest:
    message = chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=PROMPT)
    if image is not None:
        message.parts.add(image=chat_pb2.ImagePart(data=image, mime_type="image/png"))
    return orch.CompleteRequest(model=MODEL, messages=[message])


def direct_body(image: bytes | None) -> bytes:
    content: object = PROMPT
    if image is not None:
        url = f"data:image/png;base64,{base64.b64encode(image).decode()}"
        content = [{"type": "text", "text": PROMPT}, {"type": "image_url", "image_url": {"url": url}}]
    return json.dumps({"model": MODEL, "messages": [{"role": "user", "content": content}]}).encode()


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per case and path")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "image_parts.json"))
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
    routes_file = Path(args.out).parent / "bench-image-routes.yaml"
    routes_file.parent.mkdir(parents=True, exist_ok=True)
    routes_file.write_text(
        json.dumps(
            {
                "defaults": {"retry": {"retries": 0}},
                "endpoints": {"fake": {"provider": "openai", "base_url": base_url, "api_key_env": "OPENAI_API_KEY"}},
                "models": {MODEL: {"deployments": [{"endpoint": "fake", "model": MODEL}]}},
            }
        )
    )
    env = {
        **os.environ,
        "POINTSMAN_ADDRESS": address,
        "OPENAI_API_KEY": "bench",
        "POINTSMAN_ROUTES_FILE": str(routes_file),
        "POINTSMAN_DEV_MODE": "true",
        "POINTSMAN_DATA_DIR": tempfile.mkdtemp(prefix="pointsman-bench-"),
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([str(Path(sys.executable).with_name("pointsman")), "serve"], env=env)
    cases = {"text only": None, "100 KB image": png_like(100 * 1024), "1 MB image": png_like(1024 * 1024)}
    results: dict[str, dict[str, float]] = {}
    try:
        await wait_serving(address, timeout=120)
        options = [("grpc.max_send_message_length", 16 * 1024 * 1024)]
        async with grpc.aio.insecure_channel(address, options=options) as channel, aiohttp.ClientSession() as http:
            stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            for name, image in cases.items():
                request, body = grpc_request(image), direct_body(image)
                headers = {"Content-Type": "application/json", "Authorization": "Bearer bench"}
                for _ in range(20):  # warm up both paths
                    await stub.Complete(request, timeout=30)
                    async with http.post(f"{base_url}/chat/completions", data=body, headers=headers) as r:
                        await r.read()
                gateway, direct = [], []
                cpu_before = cpu_seconds(server.pid)
                for _ in range(args.requests):
                    started = time.perf_counter()
                    await stub.Complete(request, timeout=30)
                    gateway.append(time.perf_counter() - started)
                cpu_ms = (cpu_seconds(server.pid) - cpu_before) / args.requests * 1000
                for _ in range(args.requests):
                    started = time.perf_counter()
                    async with http.post(f"{base_url}/chat/completions", data=body, headers=headers) as r:
                        await r.read()
                    direct.append(time.perf_counter() - started)
                results[name] = {
                    "gateway_p50_ms": statistics.median(gateway) * 1000,
                    "gateway_p99_ms": percentile(gateway, 0.99) * 1000,
                    "direct_p50_ms": statistics.median(direct) * 1000,
                    "added_p50_ms": (statistics.median(gateway) - statistics.median(direct)) * 1000,
                    "server_cpu_ms_per_call": cpu_ms,
                }
    finally:
        server.terminate()
        upstream.send_signal(2)
        server.wait(10)
        upstream.wait(10)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"{'case':<14} {'gw p50':>8} {'gw p99':>8} {'direct p50':>10} {'added p50':>10} {'CPU/call':>9}")
    for name, row in results.items():
        print(
            f"{name:<14} {row['gateway_p50_ms']:>6.2f}ms {row['gateway_p99_ms']:>6.2f}ms "
            f"{row['direct_p50_ms']:>8.2f}ms {row['added_p50_ms']:>8.2f}ms {row['server_cpu_ms_per_call']:>7.2f}ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
