"""What `Embed` costs with the built-in model (WordLlama l2_supercat, 256-d):

- latency of one Embed call through a real server on loopback (server and
  client in this process, one call at a time), for 1 and for 32 inputs of
  about ten words each, beside ListModels (the unary floor of the same path);
- the resident memory the model adds to a fresh process once loaded.

    .venv/bin/python bench/embed.py [--n 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.server import open_server
from pointsman.server.settings import Settings

WORDS = "the quick brown fox asks how to reset a forgotten account password today".split()


def texts(count: int) -> list[str]:
    return [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(10)) for i in range(count)]


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] / 1e6, 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] / 1e6, 3),
        "mean_ms": round(statistics.fmean(ordered) / 1e6, 3),
    }


async def timed(call: Callable[[], Awaitable[Any]], n: int) -> dict[str, float]:
    for _ in range(min(50, n)):  # warm: connection, model load, caches
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await call()
        samples.append(time.perf_counter_ns() - started)
    return summary(samples)


async def latency(n: int) -> dict[str, Any]:
    settings = Settings(  # type: ignore[call-arg]
        POINTSMAN_ADDRESS="127.0.0.1:0",
        DATABASE_URL="sqlite://:memory:",
        POINTSMAN_DEV_MODE=True,
        OPENAI_API_KEY=None,
        ANTHROPIC_API_KEY=None,
        USE_MOCK=False,
        REDIS_URL=None,
    )
    server = await open_server(settings)
    await server.start()
    try:
        async with AsyncClient(server.address, timeout=30) as client:
            one, batch = texts(1), texts(32)
            return {
                "list_models": await timed(lambda: client.orchestrator.ListModels(orch.ListModelsRequest()), n),
                "embed_1": await timed(lambda: client.embed(one), n),
                "embed_32": await timed(lambda: client.embed(batch), n),
            }
    finally:
        await server.stop(grace=0)


RSS_SCRIPT = textwrap.dedent(
    """
    import json, resource
    def rss_kib():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    from pointsman.server.providers.builtin_embeddings import BuiltinEmbedder
    import numpy, tokenizers, safetensors, wordllama.inference  # the libraries, before the model
    embedder = BuiltinEmbedder()
    before = rss_kib()
    embedder.embed(["load the model"])
    print(json.dumps({"before_kib": before, "after_kib": rss_kib()}))
    """
)


def model_rss() -> dict[str, float]:
    """In a fresh interpreter: RSS with the libraries imported, then with the model loaded."""
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT], capture_output=True, text=True, check=True, timeout=120)
    figures = json.loads(out.stdout)
    return {"model_mib": round((figures["after_kib"] - figures["before_kib"]) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    results = {"latency": asyncio.run(latency(args.n)), "rss": model_rss()}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
