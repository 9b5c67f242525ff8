"""Idle memory of `pointsman serve`: one process, and POINTSMAN_PROCESSES=2
(the supervisor and every process under it).

Starts the server in development mode with default settings (builtin model
only, embedded SQLite in a throwaway directory), waits for health SERVING,
lets it settle, and reads each process's RSS (psutil when installed, else
/proc/PID/status VmRSS) and PSS (/proc/PID/smaps_rollup: shared pages split
between the processes that map them, so the tree's PSS does not count the
shared libraries twice). Also lists the heavy packages each process imported.

    .venv/bin/python bench/memory.py [--source DIR] [--settle 2] [--json PATH]

`--source DIR` runs another checkout (its .venv's `pointsman` when it has one),
e.g. `--source /work/main` for the figures before a change.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
# Packages worth knowing about when they show up in a process (import names).
HEAVY = ("anthropic", "openai", "spacy", "presidio_analyzer", "sklearn", "numpy", "joblib", "sqlalchemy", "tldextract")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    try:
        import psutil  # type: ignore[import-untyped]

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        pass
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pss_mib(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return None


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found += tree(int(child))
    return found


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:100]


def heavy_modules(pid: int) -> list[str]:
    """Heavy packages whose files the process has mapped or opened: a cheap
    stand-in for its sys.modules (pure-Python modules leave no mapping, so
    this only sees packages with extension modules)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    return [name for name in HEAVY if f"/{name}/" in maps]


async def wait_serving(address: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    options = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 200)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server at {address} not SERVING within {timeout:.0f} s")
            await asyncio.sleep(0.1)


def server_command(source: Path | None) -> tuple[list[str], dict[str, str]]:
    """How to run `pointsman serve` from this checkout or `source`."""
    if source is None:
        return [str(Path(sys.executable).with_name("pointsman")), "serve"], {}
    own = source / ".venv" / "bin" / "pointsman"
    if own.exists():
        return [str(own), "serve"], {}
    paths = [str(source / p) for p in ("server", "clients", "gen")]
    return [sys.executable, "-m", "pointsman.cli.main", "serve"], {"PYTHONPATH": os.pathsep.join(paths)}


def measure(processes: int, source: Path | None, settle: float, timeout: float) -> dict[str, Any]:
    address = f"127.0.0.1:{free_port()}"
    argv, extra = server_command(source)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POINTSMAN_", "OPENAI_", "ANTHROPIC_"))},
        **extra,
        "POINTSMAN_ADDRESS": address,
        "POINTSMAN_DEV_MODE": "true",
        "POINTSMAN_DATA_DIR": tempfile.mkdtemp(prefix="pointsman-memory-"),
        "POINTSMAN_PROCESSES": str(processes),
        "LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    server = subprocess.Popen(argv, env=env)
    try:
        asyncio.run(wait_serving(address, timeout))
        serving_s = time.perf_counter() - started
        if processes > 1:
            # Health answers once one process serves; wait for all of them.
            deadline = time.monotonic() + timeout
            while len(tree(server.pid)) < processes + 1 and time.monotonic() < deadline:
                time.sleep(0.2)
        time.sleep(settle)
        rows: list[dict[str, Any]] = []
        for pid in tree(server.pid):
            rows.append(
                {
                    "pid": pid,
                    "command": command(pid),
                    "rss_mib": round(rss_mib(pid), 1),
                    "pss_mib": None if (p := pss_mib(pid)) is None else round(p, 1),
                    "heavy": heavy_modules(pid),
                }
            )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    pss = [r["pss_mib"] for r in rows]
    return {
        "processes": processes,
        "serving_s": round(serving_s, 2),
        "tree_rss_mib": round(sum(float(r["rss_mib"]) for r in rows), 1),
        "tree_pss_mib": None if None in pss else round(sum(float(p) for p in pss), 1),
        "members": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="another checkout to run (default: this one)")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle after SERVING before reading")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for SERVING")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    source = args.source.resolve() if args.source else None
    results = [measure(n, source, args.settle, args.timeout) for n in (1, 2)]
    print(f"source: {source or ROOT}")
    for result in results:
        print(
            f"processes={result['processes']}: tree RSS {result['tree_rss_mib']} MiB,"
            f" PSS {result['tree_pss_mib']} MiB (SERVING after {result['serving_s']} s)"
        )
        for row in result["members"]:
            heavy = ",".join(row["heavy"]) or "-"
            print(f"  {row['rss_mib']:7.1f} MiB RSS {row['pss_mib']!s:>7} PSS  [{heavy}]  {row['command']}")
    one, two = (float(r["tree_rss_mib"]) for r in results)
    print(f"two processes / one: {two / one:.2f}x RSS")
    if args.json:
        args.json.write_text(json.dumps({"source": str(source or ROOT), "results": results}, indent=2))


if __name__ == "__main__":
    main()
