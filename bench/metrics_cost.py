"""What Prometheus metrics cost: the recording a `Complete` does (one RPC,
one chat call, two firewall decisions) and one scrape of a registry holding a
realistic number of series, both in this process.

    .venv/bin/python bench/metrics_cost.py [--n 200000]
"""

from __future__ import annotations

import argparse
import json
import time

from prometheus_client import generate_latest

from pointsman.server.metrics import Metrics


def per_call_us(metrics: Metrics, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        metrics.rpc("/pointsman.orchestrator.v1.OrchestratorService/Complete", "OK", 0.0004)
        metrics.chat_call("fast", "openai/gpt-4o-mini", "OK", False, 42, 17, 0.2)
        metrics.decision("input", "allow", ())
        metrics.decision("output", "allow", ())
    return (time.perf_counter() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    metrics = Metrics()
    per_call_us(metrics, 1000)  # warm the labelled children
    recording = min(per_call_us(metrics, args.n) for _ in range(3))
    # A busy gateway: 20 methods x 5 codes, 10 models x 3 deployments x 3 codes, 30 decision kinds.
    for m in range(20):
        for code in ("OK", "NOT_FOUND", "UNAVAILABLE", "INVALID_ARGUMENT", "PERMISSION_DENIED"):
            metrics.rpc(f"/svc/Method{m}", code, 0.001)
    for model in range(10):
        for deployment in range(3):
            for code in ("OK", "UNAVAILABLE", "CANCELLED"):
                metrics.chat_call(f"model-{model}", f"dep-{deployment}", code, False, 1, 1, 0.1)
    for direction in ("input", "output"):
        for action in ("allow", "redact", "block"):
            for category in ("none", "pii", "secret", "toxicity", "block_rule"):
                metrics.decision(direction, action, (category,))
    started = time.perf_counter()
    for _ in range(100):
        body = generate_latest(metrics.registry)
    scrape_ms = (time.perf_counter() - started) / 100 * 1000
    print(
        json.dumps(
            {
                "recording_per_complete_us": round(recording, 2),
                "scrape_ms": round(scrape_ms, 2),
                "scrape_bytes": len(body),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
