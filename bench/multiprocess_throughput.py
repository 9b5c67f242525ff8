"""Throughput with several server processes on one port (POINTSMAN_PROCESSES):
`Complete` through Pointsman to a fake OpenAI-compatible upstream, driven by
several load-generator processes (each with its own connections, so the
kernel spreads them over the server processes), for 1 and N server processes.

Reports requests/s, server CPU per request (all server processes), and RSS per
server process idle. Everything runs on the same machine: the load generators
and the fake upstream take CPU from the server too, so this is a floor.

    .venv/bin/python bench/multiprocess_throughput.py [--processes 2] [--clients 2] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import MODEL, PROMPT, ROOT, cpu_seconds, free_port, rss_mib, wait_serving

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.type.v1 import chat_pb2


def server_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children] or [parent]


def load(address: str, concurrency: int, channels: int, seconds: float, results: multiprocessing.Queue) -> None:
    async def run() -> int:
        opened = [
            grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(channels)
        ]
        stubs = [orchestrator_pb2_grpc.OrchestratorServiceStub(c) for c in opened]
        request = orch.CompleteRequest(
            model=MODEL, messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=PROMPT)]
        )
        for stub in stubs:  # connect every channel before the clock starts
            await stub.Complete(request, timeout=10)
        done = 0
        stop_at = time.perf_counter() + seconds

        async def worker(stub: orchestrator_pb2_grpc.OrchestratorServiceStub) -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await stub.Complete(request, timeout=10)
                done += 1

        await asyncio.gather(*(worker(stubs[i % channels]) for i in range(concurrency)))
        for channel in opened:
            await channel.close()
        return done

    results.put(asyncio.run(run()))


def measure(processes: int, clients: int, concurrency: int, seconds: float, base_url: str, data_dir: str) -> dict:
    port = free_port()
    address = f"127.0.0.1:{port}"
    routes = Path(data_dir) / "routes.json"
    routes.write_text(
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
        "POINTSMAN_ROUTES_FILE": str(routes),
        "POINTSMAN_DATA_DIR": data_dir,
        "POINTSMAN_DEV_MODE": "true",
        "POINTSMAN_PROCESSES": str(processes),
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([str(Path(sys.executable).with_name("pointsman")), "serve"], env=env)
    try:
        asyncio.run(wait_serving(address))
        time.sleep(1.0 + processes)  # every process up and idle
        pids = server_pids(server.pid) if processes > 1 else [server.pid]
        rss = [round(rss_mib(pid), 1) for pid in pids]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        queue: multiprocessing.Queue = multiprocessing.Queue()
        generators = [
            multiprocessing.Process(target=load, args=(address, concurrency // clients, 4, seconds, queue))
            for _ in range(clients)
        ]
        started = time.perf_counter()
        for generator in generators:
            generator.start()
        total = sum(queue.get() for _ in generators)
        elapsed = time.perf_counter() - started
        for generator in generators:
            generator.join()
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        return {
            "server_processes": processes,
            "load_processes": clients,
            "requests_per_second": round(total / seconds, 1),
            "server_cpu_ms_per_request": round(cpu / total * 1000, 3),
            "rss_idle_mib_per_process": rss,
            "wall_seconds": round(elapsed, 2),
        }
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight, over all load generators")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "multiprocess_throughput.json"))
    args = parser.parse_args()

    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fakes" / "openai_upstream.py"), "--port", str(upstream_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None
    upstream.stdout.readline()
    base_url = f"http://127.0.0.1:{upstream_port}/v1"
    runs = []
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            for processes in sorted({1, args.processes}):
                runs.append(measure(processes, args.clients, args.concurrency, args.seconds, base_url, data_dir))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=5)
    results = {"runs": runs, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
