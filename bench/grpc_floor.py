"""The floor under every gateway figure: a bare grpc.aio server (the standard
health service, nothing of Pointsman's) on this machine.

Reports, for a unary `Check` at concurrency 1, the p50/p99 latency and the
server CPU per call; and for a server stream (`Watch`, one message every 2 ms,
so each is written on its own) the server CPU per message: the slope between
10- and 200-message streams, measured as `gateway_overhead.py` measures the
gateway's per-chunk cost.

    .venv/bin/python bench/grpc_floor.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import cpu_seconds, free_port, percentile, wait_serving

GAP_SECONDS = 0.002


class Floor(health_pb2_grpc.HealthServicer):
    async def Check(self, request: health_pb2.HealthCheckRequest, context: object) -> health_pb2.HealthCheckResponse:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def Watch(  # type: ignore[override]
        self, request: health_pb2.HealthCheckRequest, context: object
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        for _ in range(int(request.service)):  # the service name carries the message count
            await asyncio.sleep(GAP_SECONDS)
            yield health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def serve(address: str) -> None:
    async def run() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(Floor(), server)
        server.add_insecure_port(address)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(run())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    address = f"127.0.0.1:{free_port()}"
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(address,), daemon=True)
    server.start()
    assert server.pid is not None
    results: dict[str, float] = {}
    try:
        await wait_serving(address)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            for _ in range(500):
                await stub.Check(request)
            latencies = []
            cpu_before = cpu_seconds(server.pid)
            stop_at = time.perf_counter() + args.seconds
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                await stub.Check(request)
                latencies.append(time.perf_counter() - started)
            results["unary_p50_ms"] = statistics.median(latencies) * 1000
            results["unary_p99_ms"] = percentile(latencies, 0.99) * 1000
            results["unary_server_cpu_us"] = (cpu_seconds(server.pid) - cpu_before) / len(latencies) * 1e6

            cpu_per_stream = {}
            for messages in (10, 200):
                watch = health_pb2.HealthCheckRequest(service=str(messages))
                done = 0

                async def reader(watch: health_pb2.HealthCheckRequest, until: float) -> None:
                    nonlocal done
                    while time.perf_counter() < until:
                        async for _ in stub.Watch(watch):
                            pass
                        done += 1

                cpu_before = cpu_seconds(server.pid)
                until = time.perf_counter() + args.seconds
                await asyncio.gather(*(reader(watch, until) for _ in range(16)))
                cpu_per_stream[messages] = (cpu_seconds(server.pid) - cpu_before) / done
            results["stream_server_cpu_us_per_message"] = (cpu_per_stream[200] - cpu_per_stream[10]) / 190 * 1e6
    finally:
        server.terminate()
        server.join(5)
    results["cpus"] = os.cpu_count() or 0
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
