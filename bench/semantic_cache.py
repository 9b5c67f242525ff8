"""The semantic cache: does it serve paraphrases and never a wrong answer, and
what does it cost?

Quality, on bench/data/semantic_pairs.txt (P: paraphrase pairs, N: near
neighbours whose answers differ). Data lines (comments skipped) with an even
index are the tune split (every threshold and word list was set looking at
those only); odd ones are the held-out split, reported by default. For each
pair, the first question is cached and the second is asked:
- paraphrase hit rate: share of P pairs served from the cache;
- wrong-answer rate: share of N pairs served from the cache (another
  question's answer).
Beside it, a plain cosine threshold on the same split: at fixed thresholds, and
at the threshold that reaches the matcher's paraphrase hit rate on the tune
split.

Cost, with the built-in embeddings (WordLlama l2_supercat, 256-d):
- lookup p50/p99 (embedding the question, the index search, the matcher) with
  1,000 / 10,000 / 100,000 entries in one organisation and one scope (the worst
  case: every entry is a candidate), for hits (paraphrases of stored questions)
  and misses (unrelated questions);
- a miss's cost added to a chat: the lookup plus storing the answer;
- memory per entry (tracemalloc), answers of 500 characters.
The lookup figure is the whole `SemanticCache.lookup` (embedding the question
included); its parts are timed apart as well, and its CPU time beside the wall
time (a busy machine's wall clock counts waiting for a core).

    .venv/bin/python bench/semantic_cache.py [--split held-out|tune] [--sizes 1000,10000,100000] [--errors]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import tracemalloc
import uuid
from pathlib import Path

import numpy as np

from pointsman.server.backends.shared.semantic_entries import LocalSemanticEntries
from pointsman.server.domain.chat import ChatRequest, Message, Role, Usage
from pointsman.server.domain.ports.cache import CachedAnswer
from pointsman.server.domain.ports.semantic_entries import SemanticRecord
from pointsman.server.domain.semantic.cache import SemanticCache, SemanticLimits, question_of
from pointsman.server.domain.semantic.matcher import MatchPolicy, features, judge
from pointsman.server.providers.builtin_embeddings import BuiltinEmbedder

DATA = Path(__file__).resolve().parent / "data" / "semantic_pairs.txt"
UNSEEN = Path(__file__).resolve().parent / "data" / "semantic_pairs_unseen.txt"
BLIND = Path(__file__).resolve().parent / "data" / "semantic_pairs_blind.txt"
TUNE2 = Path(__file__).resolve().parent / "data" / "semantic_pairs_tune2.txt"  # tuned on, like `tune`
TUNE3 = Path(__file__).resolve().parent / "data" / "semantic_pairs_tune3.txt"  # tuned on, like `tune`
FRESH = Path(__file__).resolve().parent / "data" / "semantic_pairs_fresh.txt"  # round 4's blind set


def load(split: str) -> list[tuple[str, str, str]]:
    path = {"unseen": UNSEEN, "blind": BLIND, "tune2": TUNE2, "tune3": TUNE3, "fresh": FRESH}.get(split, DATA)
    rows = [
        line.rstrip("\n").split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")
    ]
    if split in ("unseen", "blind", "tune2", "tune3", "fresh"):
        return [(kind, a, b) for kind, a, b in rows]
    keep = 0 if split == "tune" else 1
    return [(kind, a, b) for index, (kind, a, b) in enumerate(rows) if index % 2 == keep]


def quality(embedder: BuiltinEmbedder, split: str, show_errors: bool) -> dict[str, float]:
    policy = MatchPolicy()

    def scores(rows: list[tuple[str, str, str]]) -> np.ndarray:
        a = embedder.embed([r[1] for r in rows])
        b = embedder.embed([r[2] for r in rows])
        return (a * b).sum(axis=1)

    def matcher_rate(rows: list[tuple[str, str, str]], cosines: np.ndarray, kind: str) -> float:
        served = [
            judge(features(a), features(b), float(c), policy).same
            for (k, a, b), c in zip(rows, cosines, strict=True)
            if k == kind
        ]
        return sum(served) / len(served)

    def plain_rate(rows: list[tuple[str, str, str]], cosines: np.ndarray, kind: str, threshold: float) -> float:
        chosen = [c >= threshold for (k, _, _), c in zip(rows, cosines, strict=True) if k == kind]
        return sum(chosen) / len(chosen)

    tune = load("tune")
    tune_cos = scores(tune)
    rows = load(split)
    cos = scores(rows)
    counts = {kind: sum(1 for r in rows if r[0] == kind) for kind in "PN"}
    hit = matcher_rate(rows, cos, "P")
    wrong = matcher_rate(rows, cos, "N")
    print(f"split {split}: {counts['P']} paraphrase pairs, {counts['N']} near-neighbour pairs")
    print(f"  matcher:       paraphrases served {hit:6.1%}   wrong answers {wrong:6.1%}")
    # The plain threshold that matches the matcher's paraphrase rate on the tune split.
    target = matcher_rate(tune, tune_cos, "P")
    candidates = sorted({round(float(c), 3) for c in tune_cos}, reverse=True)
    matched = next((t for t in candidates if plain_rate(tune, tune_cos, "P", t) >= target), candidates[-1])
    for threshold in (0.80, 0.85, 0.90, matched):
        label = f"plain >= {threshold:.3f}" + (" (same hit rate on tune)" if threshold == matched else "")
        print(
            f"  {label:39s} paraphrases served {plain_rate(rows, cos, 'P', threshold):6.1%}"
            f"   wrong answers {plain_rate(rows, cos, 'N', threshold):6.1%}"
        )
    if show_errors:
        for (kind, a, b), c in zip(rows, cos, strict=True):
            verdict = judge(features(a), features(b), float(c), policy)
            if (kind == "N") == verdict.same:
                print(f"    {kind} {c:.2f} {verdict.reason:15s} {a} | {b}")
    return {"paraphrase_hit_rate": hit, "wrong_answer_rate": wrong}


# Latency and memory -------------------------------------------------------------

_SUBJECTS = [
    "a list",
    "a string",
    "a dictionary",
    "an array",
    "a file",
    "a table",
    "a branch",
    "a container",
    "a column",
    "an image",
    "a date",
    "a number",
    "a user",
    "a process",
    "a package",
    "a queue",
    "a socket",
    "a thread",
]
_VERBS = ["sort", "reverse", "copy", "delete", "rename", "parse", "merge", "split", "filter", "serialise", "compress"]
_PLACES = ["Python", "Java", "Go", "Rust", "C#", "Ruby", "Kotlin", "Bash", "SQL", "JavaScript", "PHP", "Swift"]
_EXTRA = ["quickly", "safely", "in place", "without a loop", "on Windows", "on Linux", "for beginners", "in production"]


def synthetic_questions(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    questions: set[str] = set()
    while len(questions) < count:
        questions.add(
            f"How do I {rng.choice(_VERBS)} {rng.choice(_SUBJECTS)} in {rng.choice(_PLACES)} "
            f"{rng.choice(_EXTRA)} with {rng.randint(1, 5000)} items?"
        )
    return list(questions)


def request(text: str) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(Role.USER, text)])


ANSWER = CachedAnswer(
    "d",
    "x" * 500,
    (),
    Usage(20, 120),
)


async def fill(cache: SemanticCache, questions: list[str], *, own_answers: bool = False) -> None:
    """What `remember` files, with the questions embedded in batches (faster
    to set up; a lookup is timed the way a call makes it)."""
    scope = question_of(request("x"))
    assert scope is not None
    expires = time.time() + 3600
    for start in range(0, len(questions), 512):
        batch = questions[start : start + 512]
        for question, vector in zip(batch, cache.embedder.embed(batch), strict=True):
            # For the memory figure each entry holds an answer of its own, as in use.
            answer = CachedAnswer("d", f"{question} " + "x" * 500, (), Usage(20, 120)) if own_answers else ANSWER
            record = SemanticRecord(
                uuid.uuid4().hex, "org", scope.scope, question, vector.tobytes(), answer, expires, 140, 0.0
            )
            cache._file(record, vector)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def latency(embedder: BuiltinEmbedder, sizes: list[int]) -> None:
    for size in sizes:
        cache = SemanticCache(
            embedder,
            LocalSemanticEntries(),
            limits=SemanticLimits(max_entries=size, max_entries_per_organisation=size),
        )
        stored = synthetic_questions(size, seed=size)
        started = time.perf_counter()
        await fill(cache, stored)
        fill_seconds = time.perf_counter() - started
        rng = random.Random(1)
        # Hits: a stored question reworded ("How can I" for "How do I").
        hits = [q.replace("How do I", "How can I") for q in rng.sample(stored, 300)]
        misses = [f"What is the capital of country number {i} on the {rng.choice(_PLACES)} list?" for i in range(300)]
        scope = next(iter(cache.index._scopes))[1]
        for label, questions in (("hit", hits), ("miss", misses)):
            # The whole lookup, as a call makes it (embedding the question, the
            # scope digest, the index search, the matcher), and its parts.
            # Wall time and this thread's CPU time: on a busy machine the wall
            # clock also counts the time the thread waited for a core.
            timings, cpu, served = [], [], 0
            for question in questions:
                t0, c0 = time.perf_counter(), time.thread_time()
                found = cache.lookup("org", request(question))
                timings.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
                served += found is not None
            embedding, search, matching = [], [], []
            for question in questions:
                t0 = time.perf_counter()
                vector = embedder.embed([question])[0]
                t1 = time.perf_counter()
                candidates = cache.index.search("org", scope, vector, cache.policy.cosine, time.time())
                t2 = time.perf_counter()
                if candidates:
                    asked = features(question)
                    for cosine, entry in candidates:
                        if judge(entry.features, asked, cosine, cache.policy).same:
                            break
                t3 = time.perf_counter()
                embedding.append(t1 - t0)
                search.append(t2 - t1)
                matching.append(t3 - t2)
            print(
                f"  {size:>7,} entries, {label:4s}: lookup p50 {percentile(timings, 0.5) * 1e3:.3f} ms"
                f" (CPU {percentile(cpu, 0.5) * 1e3:.3f} ms), p99 {percentile(timings, 0.99) * 1e3:.3f} ms"
                f"  (served {served}/{len(questions)}); parts p50: embedding {percentile(embedding, 0.5) * 1e3:.3f},"
                f" index search {percentile(search, 0.5) * 1e3:.3f}, matcher {percentile(matching, 0.5) * 1e3:.3f} ms"
            )
        print(f"  {size:>7,} entries: filled in {fill_seconds:.1f} s")


async def miss_cost(embedder: BuiltinEmbedder) -> None:
    cache = SemanticCache(embedder, LocalSemanticEntries())
    await fill(cache, synthetic_questions(10_000, seed=7))
    timings = []
    for i, question in enumerate(synthetic_questions(500, seed=99)):
        text = f"{question} (variant {i})"
        t0 = time.perf_counter()
        if cache.lookup("org", request(text)) is None:
            await cache.remember("org", request(text), ANSWER, 3600)
        timings.append(time.perf_counter() - t0)
    print(
        f"  a miss (lookup, then storing the answer), 10,000 entries: p50 {percentile(timings, 0.5) * 1e3:.3f} ms,"
        f" p99 {percentile(timings, 0.99) * 1e3:.3f} ms"
    )


async def memory(embedder: BuiltinEmbedder, count: int = 20_000) -> None:
    questions = synthetic_questions(count, seed=3)
    cache = SemanticCache(embedder, LocalSemanticEntries())
    embedder.embed(questions[:10])
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    await fill(cache, questions, own_answers=True)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(
        f"  memory per entry: {(after - before) / count / 1024:.2f} KiB"
        f" ({count:,} entries; questions ~{statistics.mean(map(len, questions)):.0f} chars, answers ~{500 + 60} chars;"
        f" the vector is 1 KiB of it)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--split", choices=["held-out", "unseen", "blind", "tune", "tune2", "tune3", "fresh"], default="unseen"
    )
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--errors", action="store_true", help="list the pairs the matcher gets wrong")
    parser.add_argument("--quality-only", action="store_true")
    args = parser.parse_args()
    embedder = BuiltinEmbedder()
    embedder.embed(["warm up"])
    print("Quality")
    quality(embedder, args.split, args.errors)
    if args.quality_only:
        return
    print("Latency (one organisation, one scope)")
    asyncio.run(latency(embedder, [int(s) for s in args.sizes.split(",")]))
    asyncio.run(miss_cost(embedder))
    print("Memory")
    asyncio.run(memory(embedder))


if __name__ == "__main__":
    main()
