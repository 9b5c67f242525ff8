"""Workflows in figures, on loopback with the built-in model (USE_MOCK: every
configured alias answers from it):

- the built-in `comparative` workflow (RunWorkflow, empty name) against the
  same work driven by a client with the existing Compare RPC and its judge
  (the same models, the same judge);
- a three-step workflow (classify, branch, chat) against the one Chat call a
  client would make after classifying the query itself.

Each prompt differs (its index), so the response cache answers none.

    .venv/bin/python bench/workflows.py [--n 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import yaml

from pointsman.agent.v1 import agent_pb2, agent_pb2_grpc
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.orchestrator.v1 import orchestrator_pb2_grpc
from pointsman.server.app.server import open_server
from pointsman.server.settings import Settings
from pointsman.type.v1 import chat_pb2

TRIAGE = {
    "steps": [
        {"name": "kind", "kind": "classify", "rules": {"math": ["add"]}, "default": "other"},
        {"name": "route", "kind": "branch", "source": "kind", "branches": {"math": "talk", "other": "talk"}},
        {"name": "talk", "kind": "chat", "model": "builtin", "prompt": "{input}"},
    ]
}


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1e3, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1e3, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1e3, 3),
    }


async def timed(samples: list[float], stream: Any) -> None:
    started = time.perf_counter()
    async for _ in stream:
        pass
    samples.append(time.perf_counter() - started)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    directory = Path(tempfile.mkdtemp())
    (directory / "agents.yaml").write_text(yaml.safe_dump({"workflows": {"triage": TRIAGE}}))
    server = await open_server(
        Settings(
            POINTSMAN_ADDRESS="127.0.0.1:0",
            USE_MOCK=True,
            DATABASE_URL="sqlite://:memory:",
            REDIS_URL=None,
            REGISTRY_ADDR=None,
            POINTSMAN_DEV_MODE=True,
            POINTSMAN_AGENTS_FILE=str(directory / "agents.yaml"),
        )
    )
    await server.start()
    results: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            agents = agent_pb2_grpc.AgentServiceStub(channel)
            chat = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            listing = await agents.ListWorkflows(agent_pb2.ListWorkflowsRequest())
            models = [m.alias for m in (await chat.ListModels(orch.ListModelsRequest(page_size=100))).models]
            models = [m for m in models if m != "builtin-embedding"][:8]
            samples: dict[str, list[float]] = {k: [] for k in ("workflow", "compare", "triage", "chat")}

            def start(name: str, text: str) -> Any:
                """The call; it starts when made, so each is made only when timed."""
                user = [chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=text)]
                if name == "workflow":
                    return agents.RunWorkflow(agent_pb2.RunWorkflowRequest(input=text))
                if name == "compare":
                    return chat.Compare(orch.CompareRequest(models=models, judge_model=models[0], messages=user))
                if name == "triage":
                    return agents.RunWorkflow(agent_pb2.RunWorkflowRequest(workflow="workflows/triage", input=text))
                return chat.Chat(orch.ChatRequest(model="builtin", messages=user))

            for i in range(args.n + 5):  # the first 5 warm up
                for name in samples:
                    bucket: list[float] = [] if i < 5 else samples[name]
                    await timed(bucket, start(name, f"why is the sky blue, take {i}"))
            results = {
                "models_compared": len(models),
                "default_workflow": listing.default_workflow,
                **{name: summary(s) for name, s in samples.items()},
            }
    finally:
        await server.stop(grace=0)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
