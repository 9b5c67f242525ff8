"""Soak: mixed load on one `pointsman serve` (development mode, default
firewall) with the fake OpenAI-compatible upstream, for a given duration;
RSS at the start, every minute and at the end, and every call's outcome
counted by gRPC status.

Each of `--concurrency` workers repeats, in turn: `Complete`, a streaming
`Chat`, a firewall `Scan` (a prompt with an e-mail and a card number),
`ListCalls`, and a conversation (`Converse` with two turns, then
`DeleteConversation`, so that kept histories do not count as growth).

    nice .venv/bin/python bench/soak.py [--minutes 15] [--concurrency 4] [--pause-ms 20] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import ROOT, free_port, rss_mib, wait_serving

from pointsman.firewall.v1 import firewall_pb2, firewall_pb2_grpc
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.type.v1 import chat_pb2

MODEL = "soak"
PROMPT = "Summarise the quarterly report in three sentences, please."
SCANNED = "Reach me at jane.doe@example.com or charge 4111 1111 1111 1111 for the tickets."


def messages(text: str) -> list[chat_pb2.ChatMessage]:
    return [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=text)]


class Load:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        self.firewall = firewall_pb2_grpc.FirewallServiceStub(channel)
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.calls = 0

    async def complete(self) -> None:
        await self.orchestrator.Complete(orch.CompleteRequest(model=MODEL, messages=messages(PROMPT)), timeout=30)

    async def chat(self) -> None:
        async for _ in self.orchestrator.Chat(orch.ChatRequest(model=MODEL, messages=messages(PROMPT)), timeout=30):
            pass

    async def scan(self) -> None:
        await self.firewall.Scan(firewall_pb2.ScanRequest(text=SCANNED), timeout=30)

    async def list_calls(self) -> None:
        await self.orchestrator.ListCalls(orch.ListCallsRequest(page_size=20), timeout=30)

    async def conversation(self) -> None:
        async def requests() -> AsyncIterator[orch.ConverseRequest]:
            yield orch.ConverseRequest(setup=orch.ConversationSetup(model=MODEL, system_prompt="be brief"))
            yield orch.ConverseRequest(turn=orch.UserTurn(turn_id="t1", content=PROMPT))
            yield orch.ConverseRequest(turn=orch.UserTurn(turn_id="t2", content="And in one sentence?"))

        name = ""
        async for event in self.orchestrator.Converse(requests(), timeout=60):
            if event.WhichOneof("event") == "started":
                name = event.started.conversation
            elif event.WhichOneof("event") == "error":
                self.outcomes["TURN_ERROR"] += 1
        if name:
            await self.orchestrator.DeleteConversation(orch.DeleteConversationRequest(name=name), timeout=30)

    async def worker(self, stop_at: float, pause: float) -> None:
        kinds: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("Complete", self.complete),
            ("Chat", self.chat),
            ("Scan", self.scan),
            ("ListCalls", self.list_calls),
            ("Converse", self.conversation),
        ]
        while time.monotonic() < stop_at:
            for kind, call in kinds:
                try:
                    await call()
                    self.outcomes["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    self.outcomes[f"{kind}:{error.code().name}"] += 1
                self.calls += 1
                await asyncio.sleep(pause)


async def run(address: str, pid: int, minutes: float, concurrency: int, pause: float) -> dict[str, Any]:
    samples: list[tuple[float, float]] = [(0.0, rss_mib(pid))]
    started = time.monotonic()
    stop_at = started + minutes * 60
    async with grpc.aio.insecure_channel(address) as channel:
        load = Load(channel)

        async def sample() -> None:
            while True:
                await asyncio.sleep(60)
                samples.append((round((time.monotonic() - started) / 60, 1), rss_mib(pid)))
                print(f"  minute {samples[-1][0]:5.1f}: RSS {samples[-1][1]:.1f} MiB, {load.calls} calls", flush=True)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(load.worker(stop_at, pause) for _ in range(concurrency)))
        sampler.cancel()
        elapsed = time.monotonic() - started
        await asyncio.sleep(2)  # let the request log's buffers drain
        samples.append((round(elapsed / 60, 1), rss_mib(pid)))
    errors = {k: v for k, v in load.outcomes.items() if k != "OK"}
    return {
        "minutes": round(elapsed / 60, 2),
        "concurrency": concurrency,
        "pause_ms": pause * 1000,
        "calls": load.calls,
        "calls_per_second": round(load.calls / elapsed, 1),
        "ok": load.outcomes["OK"],
        "errors": errors,
        "rss_start_mib": round(samples[0][1], 1),
        "rss_end_mib": round(samples[-1][1], 1),
        "rss_samples_mib": [(m, round(r, 1)) for m, r in samples],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=4)
    # A modest load by default: the soak looks for growth and errors, not throughput.
    parser.add_argument("--pause-ms", type=float, default=20.0, help="each worker's pause between calls")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = parser.parse_args()

    upstream_port, server_port = free_port(), free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fakes" / "openai_upstream.py"), "--port", str(upstream_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert upstream.stdout is not None
    upstream.stdout.readline()  # "listening on ..."
    data_dir = tempfile.mkdtemp(prefix="pointsman-soak-")
    routes = Path(data_dir) / "routes.json"
    routes.write_text(
        json.dumps(
            {
                "endpoints": {
                    "fake": {
                        "provider": "openai",
                        "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                        "api_key_env": "OPENAI_API_KEY",
                    }
                },
                # Twenty words, streamed as twenty deltas.
                "models": {MODEL: {"deployments": [{"endpoint": "fake", "model": "long-20"}]}},
            }
        )
    )
    address = f"127.0.0.1:{server_port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("POINTSMAN_")},
        "POINTSMAN_ADDRESS": address,
        "POINTSMAN_DEV_MODE": "true",
        "POINTSMAN_DATA_DIR": data_dir,
        "POINTSMAN_ROUTES_FILE": str(routes),
        "OPENAI_API_KEY": "soak",
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([str(Path(sys.executable).with_name("pointsman")), "serve"], env=env)
    try:
        asyncio.run(wait_serving(address, timeout=120))
        time.sleep(2)
        print(f"soak: {args.minutes} min, concurrency {args.concurrency}, server pid {server.pid}", flush=True)
        result = asyncio.run(run(address, server.pid, args.minutes, args.concurrency, args.pause_ms / 1000))
    finally:
        server.send_signal(signal.SIGTERM)
        upstream.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        upstream.wait(timeout=10)
    print(json.dumps({k: v for k, v in result.items() if k != "rss_samples_mib"}, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
