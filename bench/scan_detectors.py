"""Per-detector scans: the cost of `Scan` with `detectors` naming one check
against the full scan, on the same 1 KB prompts (the engine in process, no
scan cache, twenty rules). A subset costs only the checks it names, since
only they run.

    .venv/bin/python bench/scan_detectors.py [--prompts 200] [--passes 3]

Prints median ms per scan and CPU ms per scan for each choice.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from firewall_speed import CALLER, bench_rules, prompts, settings

from pointsman.server.backends.decision_log import InMemoryDecisionLog
from pointsman.server.backends.rule_store import InMemoryRuleStore
from pointsman.server.domain.firewall.engine import build_firewall
from pointsman.server.domain.firewall.verdict import Category, Direction

CHOICES: dict[str, tuple[frozenset[Category] | None, bool]] = {
    "all (today)": (None, True),
    "pii": (frozenset({Category.PII}), False),
    "secrets": (frozenset({Category.SECRET}), False),
    "toxicity": (frozenset({Category.TOXICITY}), False),
    "rules": (frozenset(), True),
}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    store = InMemoryRuleStore()
    await bench_rules(store)
    engine = build_firewall(store, InMemoryDecisionLog(), settings())
    texts = prompts(1024, args.prompts, seed=11)
    for text in texts[:20]:  # warm up: compiled rules, loaded models
        await engine.scan(text, Direction.INPUT, CALLER)
    print(f"{'detectors':<14}{'p50 ms':>9}{'cpu ms':>9}   ({args.prompts} x 1 KB prompts, {args.passes} passes)")
    for label, (categories, rules) in CHOICES.items():
        wall: list[float] = []
        cpu: list[float] = []
        for _ in range(args.passes):
            for text in texts:
                started, started_cpu = time.perf_counter(), time.process_time()
                await engine.scan(text, Direction.INPUT, CALLER, categories=categories, rules=rules)
                wall.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
        print(f"{label:<14}{statistics.median(wall) * 1000:>9.3f}{statistics.median(cpu) * 1000:>9.3f}")


if __name__ == "__main__":
    asyncio.run(main())
