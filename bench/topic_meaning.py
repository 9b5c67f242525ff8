"""Topic rules by meaning: false accepts and false rejects of an allow rule per
topic, on a held-out split, with the built-in embeddings (offline).

bench/data/topics.txt: topic<TAB>text, "off" for texts about none of the
topics. Each topic's 1st, 3rd, ... lines are the rule's examples; the 2nd,
4th, ... are held out. The threshold is chosen on the tuning half only (the
examples split again, and the tuning half of "off"), then the figures are on
the held-out half: a false reject is a held-out on-topic text the rule does not
match; a false accept is a held-out text of another topic, or off-topic, that
it matches. Run:
    .venv/bin/python bench/topic_meaning.py
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

from pointsman.server.domain.firewall.rules import DEFAULT_TOPIC_THRESHOLD, MatchType, Rule, RuleKind, RuleSet
from pointsman.server.domain.firewall.verdict import Category, Direction
from pointsman.server.providers.builtin_embeddings import BuiltinEmbedder

DATA = Path(__file__).resolve().parent / "data" / "topics.txt"
THRESHOLDS = [round(0.05 + 0.0125 * i, 4) for i in range(40)]


def load() -> dict[str, list[str]]:
    by_topic: dict[str, list[str]] = defaultdict(list)
    for line in DATA.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            topic, text = line.split("\t", 1)
            by_topic[topic].append(text)
    return by_topic


def allowed(rules: RuleSet, text: str) -> bool:
    return not any(f.category is Category.NOT_ALLOWED for f in rules.evaluate(text, Direction.INPUT))


def rule_for(topic: str, examples: list[str], threshold: float) -> Rule:
    return Rule(
        id=topic,
        organisation="bench",
        kind=RuleKind.ALLOW,
        match_type=MatchType.TOPIC,
        examples=tuple(examples),
        threshold=threshold,
    )


def rates(embedder: BuiltinEmbedder, examples: dict[str, list[str]], tests: dict[str, list[str]], threshold: float):
    """Per topic: (false rejects, on-topic tried, false accepts, others tried)."""
    out = {}
    for topic, phrases in examples.items():
        rules = RuleSet([rule_for(topic, phrases, threshold)], embedder)
        on = tests[topic]
        others = [t for other, texts in tests.items() if other != topic for t in texts]
        rejected = sum(not allowed(rules, t) for t in on)
        accepted = sum(allowed(rules, t) for t in others)
        out[topic] = (rejected, len(on), accepted, len(others))
    return out


def line(topic: str, fr: int, on: int, fa: int, off: int) -> str:
    rejects = f"false reject {fr:2d}/{on:<3d} {fr / on:6.1%}"
    return f"  {topic:8s} {rejects}   false accept {fa:2d}/{off:<3d} {fa / off:6.1%}"


def main() -> None:
    data = load()
    topics = [t for t in data if t != "off"]
    examples = {t: data[t][0::2] for t in topics}
    held_out = {t: data[t][1::2] for t in topics} | {"off": data["off"][1::2]}
    # Tuning: half the examples as the rule, the other half (and tuning "off") as the test.
    tune_examples = {t: ex[0::2] for t, ex in examples.items()}
    tune_tests = {t: ex[1::2] for t, ex in examples.items()} | {"off": data["off"][0::2]}
    embedder = BuiltinEmbedder()
    best = min(
        THRESHOLDS,
        key=lambda th: sum(r[0] / r[1] + r[2] / r[3] for r in rates(embedder, tune_examples, tune_tests, th).values()),
    )
    print(f"threshold chosen on the tuning half: {best}")
    for threshold in sorted({best, DEFAULT_TOPIC_THRESHOLD}):
        print(f"held out, threshold {threshold}:")
        totals = [0, 0, 0, 0]
        for topic, (fr, on, fa, off) in rates(embedder, examples, held_out, threshold).items():
            totals = [a + b for a, b in zip(totals, (fr, on, fa, off), strict=True)]
            print(line(topic, fr, on, fa, off))
        fr, on, fa, off = totals
        print(line("all", fr, on, fa, off))
    rules = RuleSet([rule_for(t, ex, best) for t, ex in examples.items()], embedder)
    texts = [t for ts in held_out.values() for t in ts]
    timings = []
    for _ in range(10):
        for text in texts:
            started = time.perf_counter()
            rules.evaluate(text, Direction.INPUT)
            timings.append(time.perf_counter() - started)
    timings.sort()
    print(f"evaluate with {len(topics)} meaning rules: p50 {timings[len(timings) // 2] * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
