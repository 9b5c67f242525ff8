"""Where the server's CPU goes on the hot path: py-spy samples `pointsman
serve` (firewall on by default) while this process drives `Complete`, or
streaming `Chat` with 200-chunk answers, against the fake upstream; prints the
functions with the most samples, by own time and inclusive.

    .venv/bin/python bench/profile_hot_path.py --call complete   # or --call chat; --firewall off
    PYTHONPATH=DIR/server:DIR/gen:DIR/clients .venv/bin/python bench/profile_hot_path.py  # another checkout

Needs py-spy (`pip install py-spy`; not a project dependency) and the right to
trace the server process (root, or ptrace_scope 0). `--gil` samples only the
thread holding the GIL: the Python work that competes with the event loop.
With CPROF_WRAPPER=script.py the server is started as `python script.py` instead (a
wrapper that runs `pointsman serve` under cProfile, enabling it on SIGUSR1 and dumping it
on SIGUSR2, which this script sends around the measured load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.type.v1 import chat_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import cpu_seconds, free_port, throughput, wait_serving

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Say hello to the benchmark in a few words please"


def report(raw: Path, top: int) -> dict[str, list[tuple[str, float]]]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    share = lambda c: [(name, round(100 * n / total, 1)) for name, n in c.most_common(top)]  # noqa: E731
    return {"own": share(own), "inclusive": share(inclusive), "samples": [("all", total)]}


async def drive(address: str, call: str, seconds: float, concurrency: int, pid: int, floor: bool) -> dict[str, float]:
    messages = [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=PROMPT)]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        if call == "complete":
            request = orch.CompleteRequest(model="bench-model", messages=messages)

            async def one() -> None:
                await stub.Complete(request, timeout=10)
        else:
            # The floor forwards the model name as it is; Pointsman resolves the alias.
            chat = orch.ChatRequest(model="long-200+slow-2" if floor else "chunks-200", messages=messages)

            async def one() -> None:
                async for _ in stub.Chat(chat, timeout=30):
                    pass

        await throughput(one, concurrency, 1.0)  # warm up
        before, threads_before = cpu_seconds(pid), thread_cpu(pid)
        started = time.perf_counter()
        if os.environ.get("CPROF_WRAPPER"):
            os.kill(pid, signal.SIGUSR1)
        rate = await throughput(one, concurrency, seconds)
        if os.environ.get("CPROF_WRAPPER"):
            os.kill(pid, signal.SIGUSR2)
        elapsed = time.perf_counter() - started
        calls = rate * elapsed
        figures = {"calls_per_second": rate, "cpu_ms_per_call": (cpu_seconds(pid) - before) / calls * 1000}
        # Per thread: the event loop (the process's first thread), gRPC's
        # poller, aiosqlite's connection, the rest.
        for tid, used in thread_cpu(pid).items():
            spent = (used - threads_before.get(tid, 0.0)) / calls * 1000
            if spent >= 0.005:
                figures[f"thread_{'loop' if tid == pid else tid}_cpu_ms_per_call"] = spent
        return figures


def thread_cpu(pid: int) -> dict[int, float]:
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[int(task.name)] = cpu_seconds_of(task / "stat")
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def cpu_seconds_of(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--call", choices=("complete", "chat"), default="complete")
    parser.add_argument("--firewall", choices=("on", "off"), default="on")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--native", action="store_true", help="C frames too (slows the server many times)")
    parser.add_argument("--no-profile", action="store_true", help="only the CPU figures, no sampler")
    parser.add_argument("--floor", action="store_true", help="profile bench/floor_server.py instead")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))

    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fakes" / "openai_upstream.py"), "--port", str(upstream_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None
    upstream.stdout.readline()
    base_url = f"http://127.0.0.1:{upstream_port}/v1"
    work = Path(tempfile.mkdtemp(prefix="pointsman-profile-"))
    routes = work / "routes.yaml"
    routes.write_text(
        json.dumps(
            {
                "defaults": {"retry": {"retries": 0}},
                "endpoints": {"fake": {"provider": "openai", "base_url": base_url, "api_key_env": "OPENAI_API_KEY"}},
                "models": {
                    "bench-model": {"deployments": [{"endpoint": "fake", "model": "bench-model"}]},
                    "chunks-200": {"deployments": [{"endpoint": "fake", "model": "long-200+slow-2"}]},
                },
            }
        )
    )
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "POINTSMAN_ADDRESS": address,
        "OPENAI_API_KEY": "bench",
        "POINTSMAN_ROUTES_FILE": str(routes),
        "POINTSMAN_DEV_MODE": "true",
        "POINTSMAN_DATA_DIR": str(work / "data"),
        "FIREWALL_ENABLED": "true" if args.firewall == "on" else "false",
        "LOG_LEVEL": "WARNING",
    }
    if args.floor:
        command = [
            sys.executable,
            str(ROOT / "bench" / "floor_server.py"),
            "--address",
            address,
            "--upstream",
            base_url,
        ]
    else:
        command = [sys.executable, "-c", "from pointsman.cli.main import main; main()", "serve"]
        if os.environ.get("CPROF_WRAPPER"):  # a deterministic profile of the loop thread instead
            command = [sys.executable, os.environ["CPROF_WRAPPER"]]
    server = subprocess.Popen(command, env=env)
    raw = work / "profile.txt"
    try:
        await wait_serving(address, timeout=60)
        command = [py_spy, "record", "-p", str(server.pid), "-f", "raw", "-o", str(raw), "--nolineno"]
        command += ["-d", str(int(args.seconds) + 2), "-r", "200"]
        command += ["--gil"] if args.gil else []
        command += ["--native"] if args.native else []
        quiet = os.environ.get("CPROF_WRAPPER") or args.no_profile
        spy = subprocess.Popen(["sleep", "0"] if quiet else command)
        figures = await drive(address, args.call, args.seconds, args.concurrency, server.pid, args.floor)
        spy.wait(timeout=60)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=5)
    print(json.dumps(figures))
    if os.environ.get("CPROF_WRAPPER") or args.no_profile:
        return
    found = report(raw, args.top)
    for kind in ("own", "inclusive"):
        print(f"--- {kind} (% of samples)")
        for name, pct in found[kind]:
            print(f"{pct:5.1f}  {name}")
    print(f"samples: {found['samples'][0][1]}; raw profile: {raw}")


if __name__ == "__main__":
    asyncio.run(main())
