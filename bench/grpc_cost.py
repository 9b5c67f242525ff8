"""Where `Complete`'s server CPU goes, by taking parts away: in one run,
against the same fake upstream, server CPU per call (all threads) at
concurrency 1 and 32 for

- `pointsman`: `pointsman serve`, firewall on (the default);
- `pointsman_fw_off`: the same, `FIREWALL_ENABLED=false`;
- `pointsman_http`: the same server's OpenAI-compatible HTTP door, firewall on
  (the same orchestrator, firewall, request log and upstream path);
- `pointsman_transport`: `pointsman serve` whose `Complete` answers a fixed
  response at once: the interceptor (request id, auth, access log, metrics,
  drain, error mapping), conversion of the request and the gRPC server as
  built, without the domain or the upstream;
- `floor`: `floor_server.py` (bare grpc.aio, our contract, the upstream over aiohttp);
- `floor_transport`: the floor whose `Complete` answers a fixed response at once.

`pointsman_transport - floor_transport` is what our gRPC layer adds;
`pointsman - pointsman_transport - (floor - floor_transport)` what the domain
adds over the floor's plain forwarding. Each round starts and measures every
target in turn; figures are medians over `--rounds`.

    .venv/bin/python bench/grpc_cost.py [--rounds 3] [--seconds 3]
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
from gateway_overhead import cpu_seconds, free_port, throughput, wait_serving

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Say hello to the benchmark in a few words please"
ANSWER = "Echo: " + PROMPT

# Run as `python grpc_cost.py --serve-fixed pointsman|floor ARGS...`: the
# server with `Complete` answering ANSWER at once.
_FIXED = """
import sys
sys.path.insert(0, {bench!r})
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.type.v1 import chat_pb2
fixed = orch.CompleteResponse(
    start=orch.ChatStart(model="bench-model"),
    message=chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, content={answer!r}),
    finish=orch.ChatFinish(reason=orch.FINISH_REASON_STOP),
)
if {kind!r} == "floor":
    import floor_server
    async def Complete(self, request, context):
        return fixed
    floor_server.Floor.Complete = Complete
    sys.argv = ["floor_server.py", *sys.argv[1:]]
    floor_server.main()
else:
    from pointsman.server.transport import convert
    from pointsman.server.domain.errors import ViolationCollector
    from pointsman.server.transport.orchestrator_servicer import OrchestratorServicer
    async def Complete(self, request, context):
        convert.chat_request_from_proto(request, ViolationCollector(), self._orchestrator.default_model)
        self._calls.caller()
        return fixed
    OrchestratorServicer.Complete = Complete
    from pointsman.cli.main import main
    sys.argv = ["pointsman", "serve"]
    main()
"""


def fixed_command(kind: str) -> list[str]:
    return [sys.executable, "-c", _FIXED.format(bench=str(ROOT / "bench"), answer=ANSWER, kind=kind)]


async def measure(address: str, http_address: str | None, pid: int, seconds: float) -> dict[str, float]:
    request = orch.CompleteRequest(
        model="bench-model", messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=PROMPT)]
    )
    body = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": PROMPT}]}).encode()
    figures: dict[str, float] = {}
    async with (
        grpc.aio.insecure_channel(address) as channel,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
    ):
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)

        async def call() -> None:
            if http_address is None:
                await stub.Complete(request, timeout=10)
                return
            url = f"http://{http_address}/v1/chat/completions"
            async with http.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
                await response.read()

        await throughput(call, 32, 1.0)  # warm up
        for concurrency in (1, 32):
            before = cpu_seconds(pid)
            started = time.perf_counter()
            rate = await throughput(call, concurrency, seconds)
            calls = rate * (time.perf_counter() - started)
            figures[f"cpu_ms_per_call_c{concurrency}"] = (cpu_seconds(pid) - before) / calls * 1000
            figures[f"calls_per_second_c{concurrency}"] = rate
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="each load run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "grpc_cost.json"))
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
    routes = Path(tempfile.mkdtemp(prefix="pointsman-cost-")) / "routes.yaml"
    routes.write_text(
        json.dumps(
            {
                "defaults": {"retry": {"retries": 0}},
                "endpoints": {"fake": {"provider": "openai", "base_url": base_url, "api_key_env": "OPENAI_API_KEY"}},
                "models": {"bench-model": {"deployments": [{"endpoint": "fake", "model": "bench-model"}]}},
            }
        )
    )
    serve = [sys.executable, "-c", "from pointsman.cli.main import main; main()", "serve"]
    floor = [sys.executable, str(ROOT / "bench" / "floor_server.py")]
    # name: (command, firewall, door, floor)
    targets = {
        "pointsman": (serve, "true", "grpc", False),
        "pointsman_fw_off": (serve, "false", "grpc", False),
        "pointsman_http": (serve, "true", "http", False),
        "pointsman_transport": (fixed_command("pointsman"), "true", "grpc", False),
        "floor": (floor, "", "grpc", True),
        "floor_transport": (fixed_command("floor"), "", "grpc", True),
    }
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        for round_ in range(args.rounds):
            for name, (command, firewall, door, is_floor) in targets.items():
                address, http_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
                env = {
                    **os.environ,
                    "POINTSMAN_ADDRESS": address,
                    "POINTSMAN_HTTP_ADDRESS": http_address,
                    "OPENAI_API_KEY": "bench",
                    "POINTSMAN_ROUTES_FILE": str(routes),
                    "POINTSMAN_DEV_MODE": "true",
                    "POINTSMAN_DATA_DIR": tempfile.mkdtemp(prefix="pointsman-cost-"),
                    "FIREWALL_ENABLED": firewall or "true",
                    "LOG_LEVEL": "WARNING",
                    "PYTHONDONTWRITEBYTECODE": "1",
                }
                full = command + (["--address", address, "--upstream", base_url] if is_floor else [])
                server = subprocess.Popen(full, env=env)
                try:
                    await wait_serving(address, timeout=60)
                    figures = await measure(address, http_address if door == "http" else None, server.pid, args.seconds)
                finally:
                    server.send_signal(signal.SIGTERM)
                    try:
                        server.wait(timeout=15)
                    except subprocess.TimeoutExpired:
                        server.kill()
                runs.setdefault(name, []).append(figures)
                print(f"round {round_ + 1} {name}: {json.dumps(figures)}", flush=True)
    finally:
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=5)

    medians = {name: {k: statistics.median(r[k] for r in rounds) for k in rounds[0]} for name, rounds in runs.items()}
    parts = {}
    for c in ("c1", "c32"):
        cpu = {name: m[f"cpu_ms_per_call_{c}"] for name, m in medians.items()}
        parts[c] = {
            "our_grpc_layer_ms": cpu["pointsman_transport"] - cpu["floor_transport"],
            "domain_over_floor_forwarding_ms": (cpu["pointsman"] - cpu["pointsman_transport"])
            - (cpu["floor"] - cpu["floor_transport"]),
            "firewall_ms": cpu["pointsman"] - cpu["pointsman_fw_off"],
            "grpc_door_minus_http_door_ms": cpu["pointsman"] - cpu["pointsman_http"],
            "pointsman_to_floor": cpu["pointsman"] / cpu["floor"],
        }
    results = {
        "medians": medians,
        "parts": parts,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({"medians": medians, "parts": parts}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
