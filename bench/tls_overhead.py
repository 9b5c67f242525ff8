"""What TLS costs: `Complete` on the built-in model through `pointsman serve`
in plain gRPC and with POINTSMAN_TLS_CERT_FILE/KEY_FILE (a P-256 certificate
made for the run), over loopback.

- per call on an open connection (the usual case: channels are long-lived),
  p50/p99 at concurrency 1, and the server's CPU per call;
- per new connection: a fresh channel for each call, so each pays the TLS
  handshake (and, plain, the TCP and HTTP/2 set-up).

    .venv/bin/python bench/tls_overhead.py [--requests 2000] [--connections 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from gateway_overhead import cpu_seconds, free_port, percentile

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.type.v1 import chat_pb2

from tls_certs import Authority

REQUEST = orch.CompleteRequest(
    model="builtin", messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="how long is a handshake?")]
)


def channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    if credentials is None:
        return grpc.aio.insecure_channel(address)
    return grpc.aio.secure_channel(address, credentials)


async def wait_ready(address: str, credentials: grpc.ChannelCredentials | None) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            async with channel(address, credentials) as ch:
                await orchestrator_pb2_grpc.OrchestratorServiceStub(ch).Complete(REQUEST, timeout=1)
                return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def measure(
    address: str, pid: int, credentials: grpc.ChannelCredentials | None, args: argparse.Namespace
) -> dict[str, float]:
    async with channel(address, credentials) as ch:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(ch)
        for _ in range(300):
            await stub.Complete(REQUEST, timeout=10)
        latencies = []
        cpu_before = cpu_seconds(pid)
        for _ in range(args.requests):
            started = time.perf_counter()
            await stub.Complete(REQUEST, timeout=10)
            latencies.append(time.perf_counter() - started)
        cpu = (cpu_seconds(pid) - cpu_before) / args.requests
    fresh = []
    for _ in range(args.connections):
        started = time.perf_counter()
        async with channel(address, credentials) as ch:
            await orchestrator_pb2_grpc.OrchestratorServiceStub(ch).Complete(REQUEST, timeout=10)
        fresh.append(time.perf_counter() - started)
    return {
        "call_p50_ms": round(statistics.median(latencies) * 1000, 3),
        "call_p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "server_cpu_ms_per_call": round(cpu * 1000, 3),
        "new_connection_call_p50_ms": round(statistics.median(fresh) * 1000, 3),
    }


async def run(tls: bool, certs: Path, args: argparse.Namespace) -> dict[str, float]:
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "POINTSMAN_ADDRESS": address,
        "POINTSMAN_DEV_MODE": "true",
        "POINTSMAN_DATA_DIR": tempfile.mkdtemp(prefix="pointsman-bench-"),
        "LOG_LEVEL": "WARNING",
    }
    credentials = None
    if tls:
        env["POINTSMAN_TLS_CERT_FILE"] = str(certs / "server.pem")
        env["POINTSMAN_TLS_KEY_FILE"] = str(certs / "server-key.pem")
        credentials = grpc.ssl_channel_credentials((certs / "bench-ca.pem").read_bytes())
    server = subprocess.Popen([str(Path(sys.executable).with_name("pointsman")), "serve"], env=env)
    try:
        await wait_ready(address, credentials)
        return await measure(address, server.pid, credentials, args)
    finally:
        server.terminate()
        server.wait(20)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        certs = Path(directory)
        Authority.create(certs, "bench-ca").issue("server", server=True)
        results = {"plain": await run(False, certs, args), "tls": await run(True, certs, args)}
    results["tls_added"] = {key: round(results["tls"][key] - results["plain"][key], 3) for key in results["plain"]}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
