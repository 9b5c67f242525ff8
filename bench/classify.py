"""Routing by meaning: accuracy per class on a held-out half of a labelled set,
and classification latency, with the built-in embeddings (offline).

bench/data/route_classes.txt: class<TAB>utterance. Within each class the 1st,
3rd, ... lines are the examples (what a routes file would list), the 2nd, 4th,
... are held out; the figures are on the held-out half only. Run:
    .venv/bin/python bench/classify.py
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

from pointsman.server.domain.classify import DEFAULT_CLASS, ClassRouter, RouteClass, RouterSpec
from pointsman.server.providers.builtin_embeddings import BuiltinEmbedder

DATA = Path(__file__).resolve().parent / "data" / "route_classes.txt"


def load() -> dict[str, list[str]]:
    by_class: dict[str, list[str]] = defaultdict(list)
    for line in DATA.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            label, text = line.split("\t", 1)
            by_class[label].append(text)
    return by_class


# Keywords a routes file might add, read off the examples half only (never the
# held-out half): the built-in embeddings know little about programming words.
KEYWORDS = {
    "code": (
        "python",
        "javascript",
        "java",
        "rust",
        "c++",
        "sql",
        "git",
        "function",
        "bash",
        "regex",
        "pandas",
        "typescript",
        "dockerfile",
        "pytest",
        "django",
        "node",
        "compiler",
        "unit test",
        "pip",
        "kotlin",
    ),
    "math": ("derivative", "integral", "eigenvalues", "probability", "matrix", "prove", "solve for"),
    "support": ("refund", "invoice", "my order", "my account", "subscription", "promo code"),
}


def main() -> None:
    data = load()
    examples = {label: texts[0::2] for label, texts in data.items()}
    held_out = {label: texts[1::2] for label, texts in data.items()}
    print(f"{sum(map(len, examples.values()))} examples, {sum(map(len, held_out.values()))} held out")
    embedder = BuiltinEmbedder()
    for keywords in (False, True):
        # "general" is the default: its utterances should fall to it, not to a class.
        classes = tuple(
            RouteClass(label, label, tuple(ex), KEYWORDS.get(label, ()) if keywords else ())
            for label, ex in examples.items()
            if label != "general"
        )
        router = ClassRouter(RouterSpec("auto", "general", classes), embedder)
        print("with keywords:" if keywords else "examples only:")
        accuracy(router, held_out)
    latency(router, held_out)


def accuracy(router: ClassRouter, held_out: dict[str, list[str]]) -> None:
    total = right = 0
    for label, texts in held_out.items():
        got = [router.classify(text).route_class for text in texts]
        hits = sum((g == label) or (label == "general" and g == DEFAULT_CLASS) for g in got)
        wrong = defaultdict(int)
        for g in got:
            if g != label and not (label == "general" and g == DEFAULT_CLASS):
                wrong[g] += 1
        total += len(texts)
        right += hits
        print(f"  {label:10s} {hits:3d}/{len(texts):<3d} {hits / len(texts):6.1%}  misrouted to: {dict(wrong)}")
    print(f"  {'overall':10s} {right:3d}/{total:<3d} {right / total:6.1%}")


def latency(router: ClassRouter, held_out: dict[str, list[str]]) -> None:
    texts = [t for ts in held_out.values() for t in ts]
    for text in texts[:20]:
        router.classify(text)  # warm
    timings = []
    for _ in range(20):
        for text in texts:
            started = time.perf_counter()
            router.classify(text)
            timings.append(time.perf_counter() - started)
    timings.sort()
    p50 = statistics.median(timings) * 1e3
    p99 = timings[int(len(timings) * 0.99)] * 1e3
    print(f"classify latency: p50 {p50:.3f} ms, p99 {p99:.3f} ms ({len(timings)} calls, embedding included)")


if __name__ == "__main__":
    main()
