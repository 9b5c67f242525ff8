"""Firewall rules at scale: the time to evaluate an organisation's rules over
a 30 kB prompt with 10, 1,000 and 10,000 rules, the time to compile them, and
the largest WatchRules snapshot message those rules make.

    .venv/bin/python bench/rule_scale.py [--rounds 20] [--label after]

Runs against whatever `pointsman` is importable, so the same script measures
another checkout of the code (the figures before a change):

    git archive main | tar -x -C /tmp/main-src
    PYTHONPATH=/tmp/main-src/server:/tmp/main-src/gen:/tmp/main-src/clients \\
        .venv/bin/python bench/rule_scale.py --label before

Writes bench/results/rule_scale-<label>.json. The rules are a fixed mix
(substrings, regular expressions, topic keywords, a few allow rules); the
prompt is fixed words with a handful of rule hits, so both runs must report
the same matched rules (`matched`), or the change altered what rules mean.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

from pointsman.firewall.v1 import firewall_pb2 as pb
from pointsman.server.domain.firewall.engine import evaluate_rules
from pointsman.server.domain.firewall.rules import MatchType, Rule, RuleKind, RuleScope, RuleSet
from pointsman.server.domain.firewall.verdict import Direction
from pointsman.server.transport import convert

ROOT = Path(__file__).resolve().parent.parent
COUNTS = (10, 1_000, 10_000)
PROMPT_CHARS = 30_000
WORDS = (
    "the quick brown fox jumps over lazy dog while our team reviews quarterly revenue numbers "
    "and drafts a summary for the board meeting next week about customer retention churn growth "
    "pricing strategy roadmap launch hiring budget infrastructure migration latency incident"
).split()

DESCRIPTION = (
    "Blocks a codename from a leaked project list; owner: security. Raised after the quarterly review "
    "found it in prompts sent to external models. Keep until the project is public. "
) * 3


def make_rules(count: int) -> list[Rule]:
    """A fixed mix: 40% substrings, 40% regular expressions, 20% topics; every
    fiftieth an allow rule matching common words, so allowlist mode is on."""
    rng = random.Random(count)
    rules: list[Rule] = []
    for i in range(count):
        token = f"zq{i:05d}"  # occurs in the prompt only where planted
        kind = RuleKind.ALLOW if i % 50 == 49 else RuleKind.BLOCK
        if kind is RuleKind.ALLOW:
            rule = Rule(str(i), "bench", kind, MatchType.SUBSTRING, pattern=rng.choice(WORDS), scope=RuleScope.BOTH)
        elif i % 5 in (0, 1):
            rule = Rule(str(i), "bench", kind, MatchType.SUBSTRING, pattern=f"{token} secret")
        elif i % 5 in (2, 3):
            rule = Rule(str(i), "bench", kind, MatchType.REGEX, pattern=rf"\b{token}[-_ ]?\d{{2,4}}\b")
        else:
            words = (token, f"{token}x", f"project {token}")
            rule = Rule(str(i), "bench", kind, MatchType.TOPIC, keywords=words)
        # Rules in use carry a reason; with it 10,000 rules make about 5 MB of snapshot.
        rules.append(rule.with_changes(description=DESCRIPTION))
    return rules


def make_prompt(count: int) -> str:
    """30 kB of words, with five tokens planted that some rules match."""
    rng = random.Random(7)
    words = [rng.choice(WORDS) for _ in range(PROMPT_CHARS // 6)]
    for n, i in enumerate(range(0, count, max(1, count // 5))):
        token = f"zq{i:05d}"
        planted = {0: f"{token} secret", 1: f"{token} secret", 2: f"{token}-123", 3: f"{token}_99", 4: token}
        words.insert(len(words) * (n + 1) // 6, planted[i % 5])
    return " ".join(words)[:PROMPT_CHARS]


def snapshot_bytes(rules: list[Rule]) -> int:
    """The largest WatchRules snapshot message: paged where the code pages it."""
    protos = [convert.rule_to_proto(r) for r in rules]
    try:
        from pointsman.server.transport.firewall_servicer import SNAPSHOT_PART_BYTES, snapshot_parts
    except ImportError:  # before paging: the snapshot is one message
        return pb.WatchRulesResponse(snapshot=pb.RuleSnapshot(rules=protos)).ByteSize()
    return max(
        pb.WatchRulesResponse(snapshot=pb.RuleSnapshot(rules=part, has_more=more)).ByteSize()
        for part, more in snapshot_parts(protos, SNAPSHOT_PART_BYTES)
    )


def measure(count: int, rounds: int) -> dict[str, Any]:
    rules = make_rules(count)
    prompt = make_prompt(count)
    started = time.perf_counter()
    ruleset = RuleSet(rules)
    compile_ms = (time.perf_counter() - started) * 1000
    findings = evaluate_rules(ruleset, prompt, Direction.INPUT)  # warm-up, and what matched
    # Few rounds at 10,000 rules before the change: each takes seconds.
    # CPU time as well as wall time: on a shared machine the wall clock counts
    # other processes' turns too.
    times, cpu_times = [], []
    deadline = time.perf_counter() + 30
    for _ in range(rounds):
        started, cpu_started = time.perf_counter(), time.process_time()
        evaluate_rules(ruleset, prompt, Direction.INPUT)
        times.append((time.perf_counter() - started) * 1000)
        cpu_times.append((time.process_time() - cpu_started) * 1000)
        if time.perf_counter() > deadline and len(times) >= 3:
            break
    return {
        "rules": count,
        "prompt_chars": len(prompt),
        "scan_ms_median": round(statistics.median(times), 3),
        "scan_ms_min": round(min(times), 3),
        "scan_cpu_ms_median": round(statistics.median(cpu_times), 3),
        "rounds": len(times),
        "compile_ms": round(compile_ms, 1),
        "largest_snapshot_message_bytes": snapshot_bytes(rules),
        "matched": sorted({f.rule or f.category.value for f in findings}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--label", default="after")
    args = parser.parse_args()
    results = [measure(count, args.rounds) for count in COUNTS]
    for row in results:
        print(
            f"{row['rules']:>6} rules: scan {row['scan_ms_median']:9.3f} ms wall, "
            f"{row['scan_cpu_ms_median']:9.3f} ms CPU (medians of {row['rounds']}), "
            f"compile {row['compile_ms']:8.1f} ms, "
            f"largest snapshot message {row['largest_snapshot_message_bytes']:>9} B, "
            f"matched {len(row['matched'])}"
        )
    out = ROOT / "bench" / "results" / f"rule_scale-{args.label}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"label": args.label, "results": results}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
