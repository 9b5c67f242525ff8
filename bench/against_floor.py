"""Pointsman against the floor (`floor_server.py`: our contract, forwarded to
the upstream over one pooled aiohttp session, nothing else), in one run,
against the same fake upstream.

Targets: Pointsman with the firewall on and off, the floor, and, with
`--source DIR`, another checkout's server with the firewall on and off (the
"before" figures; DIR holds `server/`, `gen/`, `clients/`, for example from
`git archive main | tar -x -C DIR`). Each round measures every target in
turn; figures are medians over `--rounds`:

- streaming `Chat` from an upstream that sends 20 tokens 5 ms apart: time to
  first token added to a direct call's, and text deltas per stream;
- server CPU per streamed chunk: the slope between 10- and 200-chunk answers
  sent 2 ms apart, beside gRPC's own per-message cost (`grpc_floor.py`'s
  bare `Watch` stream, measured the same way in each round);
- `Complete`: added p50 at concurrency 1, throughput at concurrency 32,
  server CPU per call; all as ratios to the floor.

    .venv/bin/python bench/against_floor.py [--rounds 3] [--source DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
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
from gateway_overhead import cpu_seconds, free_port, throughput, timed, wait_serving
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Say hello to the benchmark in a few words please"
# Upstream model names the fake reads: 20 words 5 ms apart; 10 and 200 words 2 ms apart.
PACED, SHORT, LONG = "long-20+slow-5", "long-10+slow-2", "long-200+slow-2"
ALIASES = {"bench-model": "bench-model", "paced": PACED, "chunks-10": SHORT, "chunks-200": LONG}


class Target:
    def __init__(self, name: str, command: list[str], env: dict[str, str], floor: bool = False) -> None:
        self.name, self.command, self.env, self.floor = name, command, env, floor
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""

    def model(self, alias: str) -> str:
        # The floor forwards the model name as it is; Pointsman resolves aliases.
        return ALIASES[alias] if self.floor else alias

    async def start(self) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        command = [c.replace("{address}", self.address) for c in self.command]
        self.process = subprocess.Popen(command, env={**self.env, "POINTSMAN_ADDRESS": self.address})
        await wait_serving(self.address, timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


def targets(args: argparse.Namespace, base_url: str, routes: Path) -> list[Target]:
    common = {
        **os.environ,
        "OPENAI_API_KEY": "bench",
        "POINTSMAN_ROUTES_FILE": str(routes),
        "POINTSMAN_DEV_MODE": "true",
        "LOG_LEVEL": "WARNING",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    serve = [sys.executable, "-c", "from pointsman.cli.main import main; main()", "serve"]
    found: list[Target] = [
        Target(
            "floor",
            [sys.executable, str(ROOT / "bench" / "floor_server.py"), "--address", "{address}", "--upstream", base_url],
            common,
            floor=True,
        ),
    ]
    checkouts = [("after", None)] + ([("before", Path(args.source).resolve())] if args.source else [])
    for label, source in checkouts:
        env = dict(common)
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join(str(source / p) for p in ("server", "gen", "clients"))
        for firewall in ("on", "off"):
            found.append(
                Target(
                    f"{label}_firewall_{firewall}",
                    serve,
                    {
                        **env,
                        "FIREWALL_ENABLED": "true" if firewall == "on" else "false",
                        "POINTSMAN_DATA_DIR": tempfile.mkdtemp(prefix="pointsman-floor-"),
                    },
                )
            )
    return found


async def measure(target: Target, base_url: str, args: argparse.Namespace) -> dict[str, float]:
    assert target.process is not None
    pid = target.process.pid
    messages = [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=PROMPT)]
    figures: dict[str, float] = {}
    async with grpc.aio.insecure_channel(target.address) as channel, aiohttp.ClientSession() as http:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)

        # Streaming on the paced upstream: time to first token and deltas.
        paced = orch.ChatRequest(model=target.model("paced"), messages=messages)
        ttfts: list[float] = []
        deltas: list[int] = []
        direct: list[float] = []
        body = {"model": PACED, "messages": [{"role": "user", "content": PROMPT}], "stream": True}
        for index in range(args.streams + 3):
            started = time.perf_counter()
            async with http.post(f"{base_url}/chat/completions", json=body) as response:
                async for line in response.content:
                    if b'"content": "w' in line or b'"content":"w' in line:
                        direct.append(time.perf_counter() - started)
                        break
                await response.read()
            started = time.perf_counter()
            first: float | None = None
            count = 0
            async for event in stub.Chat(paced, timeout=30):
                if event.HasField("text_delta"):
                    count += 1
                    first = first or time.perf_counter() - started
            if index >= 3 and first is not None:  # the first few warm up
                ttfts.append(first)
                deltas.append(count)
        figures["ttft_ms"] = statistics.median(ttfts) * 1000
        figures["ttft_added_ms"] = (statistics.median(ttfts) - statistics.median(direct[3:])) * 1000
        figures["deltas_per_stream"] = statistics.median(deltas)

        # Server CPU per streamed chunk.
        per_answer = {}
        for alias, chunks in (("chunks-10", 10), ("chunks-200", 200)):
            request = orch.ChatRequest(model=target.model(alias), messages=messages)

            async def answer(request: orch.ChatRequest = request) -> None:
                async for _ in stub.Chat(request, timeout=30):
                    pass

            cpu_before = cpu_seconds(pid)
            started = time.perf_counter()
            rate = await throughput(answer, 16, args.seconds)
            per_answer[chunks] = (cpu_seconds(pid) - cpu_before) / (rate * (time.perf_counter() - started))
        figures["cpu_us_per_chunk"] = (per_answer[200] - per_answer[10]) / 190 * 1e6

        # Complete: added p50, throughput, CPU per call.
        complete = orch.CompleteRequest(model=target.model("bench-model"), messages=messages)
        plain = {"model": "bench-model", "messages": [{"role": "user", "content": PROMPT}]}

        async def direct_complete() -> None:
            async with http.post(f"{base_url}/chat/completions", json=plain) as response:
                await response.read()

        async def call() -> None:
            await stub.Complete(complete, timeout=10)

        await timed(call, 100)
        await timed(direct_complete, 50)
        # Interleaved, so a change in the machine's load hits both alike.
        through, straight = [], []
        for _ in range(args.requests):
            through += await timed(call, 1)
            straight += await timed(direct_complete, 1)
        figures["complete_added_p50_ms"] = (statistics.median(through) - statistics.median(straight)) * 1000
        cpu_before = cpu_seconds(pid)
        started = time.perf_counter()
        rate = await throughput(call, 32, args.seconds)
        figures["complete_rps_c32"] = rate
        figures["complete_cpu_ms_per_call"] = (
            (cpu_seconds(pid) - cpu_before) / (rate * (time.perf_counter() - started)) * 1000
        )
    return figures


async def grpc_message_cost(address: str, pid: int, seconds: float) -> float:
    """Server CPU per streamed message of a bare grpc.aio server
    (`grpc_floor.py`'s `Watch`, one message every 2 ms): gRPC's own cost for
    one streamed message, measured like `cpu_us_per_chunk`."""
    per_stream = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for messages in (10, 200):
            watch = health_pb2.HealthCheckRequest(service=str(messages))

            async def stream(watch: health_pb2.HealthCheckRequest = watch) -> None:
                async for _ in stub.Watch(watch):
                    pass

            cpu_before = cpu_seconds(pid)
            started = time.perf_counter()
            rate = await throughput(stream, 16, seconds)
            per_stream[messages] = (cpu_seconds(pid) - cpu_before) / (rate * (time.perf_counter() - started))
    return (per_stream[200] - per_stream[10]) / 190 * 1e6


async def grpc_floor_round(seconds: float) -> float:
    address = f"127.0.0.1:{free_port()}"
    command = [
        sys.executable,
        "-c",
        f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import grpc_floor; grpc_floor.serve({address!r})",
    ]
    process = subprocess.Popen(command)
    try:
        await wait_serving(address, timeout=60)
        return await grpc_message_cost(address, process.pid, seconds)
    finally:
        process.terminate()
        process.wait(timeout=15)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=30, help="paced streams per target per round")
    parser.add_argument("--requests", type=int, default=300, help="sequential Complete calls per round")
    parser.add_argument("--seconds", type=float, default=3.0, help="each throughput run")
    parser.add_argument("--source", help="another checkout to measure too (the before figures)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "against_floor.json"))
    args = parser.parse_args()

    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fakes" / "openai_upstream.py"), "--port", str(upstream_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None
    upstream.stdout.readline()  # "listening on ..."
    base_url = f"http://127.0.0.1:{upstream_port}/v1"
    routes = Path(tempfile.mkdtemp(prefix="pointsman-floor-")) / "routes.yaml"
    routes.write_text(
        json.dumps(
            {
                "defaults": {"retry": {"retries": 0}},
                "endpoints": {"fake": {"provider": "openai", "base_url": base_url, "api_key_env": "OPENAI_API_KEY"}},
                "models": {a: {"deployments": [{"endpoint": "fake", "model": m}]} for a, m in ALIASES.items()},
            }
        )
    )
    runs: dict[str, list[dict[str, float]]] = {}
    all_targets = targets(args, base_url, routes)
    grpc_message: list[float] = []
    try:
        for round_ in range(args.rounds):
            grpc_message.append(await grpc_floor_round(args.seconds))
            print(f"round {round_ + 1} grpc message: {grpc_message[-1]:.1f} us", flush=True)
            for target in all_targets:
                await target.start()
                try:
                    figures = await measure(target, base_url, args)
                finally:
                    target.stop()
                runs.setdefault(target.name, []).append(figures)
                print(f"round {round_ + 1} {target.name}: {json.dumps(figures)}", flush=True)
    finally:
        for target in all_targets:
            target.stop()
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=5)

    medians = {name: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]} for name, rounds in runs.items()}
    floor = medians["floor"]
    grpc_us = statistics.median(grpc_message)
    ratios = {
        name: {
            "cpu_per_chunk_to_grpc_message": m["cpu_us_per_chunk"] / grpc_us,
            "complete_added_p50": m["complete_added_p50_ms"] / floor["complete_added_p50_ms"],
            "complete_throughput": m["complete_rps_c32"] / floor["complete_rps_c32"],
            "complete_cpu_per_call": m["complete_cpu_ms_per_call"] / floor["complete_cpu_ms_per_call"],
            "cpu_per_chunk": m["cpu_us_per_chunk"] / floor["cpu_us_per_chunk"],
        }
        for name, m in medians.items()
    }
    results = {
        "medians": medians,
        "ratios_to_floor": ratios,
        "grpc_us_per_streamed_message": grpc_us,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(
        json.dumps({"medians": medians, "grpc_us_per_streamed_message": grpc_us, "ratios_to_floor": ratios}, indent=2)
    )


if __name__ == "__main__":
    asyncio.run(main())
