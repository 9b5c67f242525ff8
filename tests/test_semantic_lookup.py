"""The semantic cache itself (no server): the built-in embeddings, the real
index and matcher, and the in-process shared level. A question is stored, a
second one is looked up: a paraphrase gets the stored answer, a near neighbour
gets nothing. Pairs here try the matcher's issue-14 part-2 rules (question
words, phrase rewrites, "of" qualifiers), the index and the one-text embedding."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pointsman.server.backends.shared.semantic_entries import LocalSemanticEntries
from pointsman.server.domain.chat import ChatRequest, Message, Role, Usage
from pointsman.server.domain.ports.cache import CachedAnswer
from pointsman.server.domain.semantic.cache import SemanticCache
from pointsman.server.domain.semantic.index import Entry, VectorIndex
from pointsman.server.domain.semantic.matcher import features
from pointsman.server.providers.builtin_embeddings import BuiltinEmbedder

EMBEDDER = BuiltinEmbedder()


def request(text: str) -> ChatRequest:
    return ChatRequest(model="m", messages=[Message(Role.USER, text)])


def served(stored: str, asked: str) -> bool:
    cache = SemanticCache(EMBEDDER, LocalSemanticEntries())
    answer = CachedAnswer("d", f"the answer to: {stored}", (), Usage(1, 1))
    asyncio.run(cache.remember("org", request(stored), answer, 600))
    hit = cache.lookup("org", request(asked))
    assert hit is None or hit.question == stored
    return hit is not None


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("How do I change the size of a window in Tkinter?", "How do I resize a Tkinter window?"),
        ("How do I change the name of a column in pandas?", "How can I rename a pandas column?"),
        ("Who is the chief executive of Microsoft?", "Who is Microsoft's CEO?"),
        ("How do I protect against XSS attacks?", "How can I prevent XSS attacks?"),
        ("How do I compute the mean of an array in NumPy?", "How do I calculate the average of a NumPy array?"),
        ("How do I read a CSV file one line at a time in Python?", "How do I read a CSV file line by line in Python?"),
        ("How do I speed up my laptop?", "How can I make my laptop faster?"),
        ("Why is the sky blue?", "Why does the sky look blue?"),
    ],
)
def test_rewritten_phrases_are_served(stored: str, asked: str) -> None:
    assert served(stored, asked)


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        # Question words that name another kind of answer.
        ("Why is my Python script slow?", "How is my Python script slow?"),
        ("Where was Mozart born?", "When was Mozart born?"),
        ("Why did the Roman Empire fall?", "When did the Roman Empire fall?"),
        # A word added after "of" qualifies the question.
        (
            "How do I get the number of items in a dictionary in Python?",
            "How do I get the number of keys in a dictionary in Python?",
        ),
        # The phrase rewrites keep their near neighbours apart.
        ("Who is the chief executive of Microsoft?", "Who is the chief executive of Google?"),
        ("How do I compute the mean of an array in NumPy?", "How do I compute the median of an array in NumPy?"),
        ("How do I speed up my laptop?", "How do I slow down my laptop?"),
        ("How do I change the size of a font in Word?", "How do I change the color of a font in Word?"),
        # A near neighbour in other words is still one.
        ("How do I sort a dictionary by value in Python?", "In Python, what's the way to order a dict by its keys?"),
    ],
)
def test_near_neighbours_are_not_served(stored: str, asked: str) -> None:
    assert not served(stored, asked)


def test_the_index_returns_exact_cosines_best_first_and_skips_removed_entries() -> None:
    """Past the flat size too (the k-means lists): what a search returns carries
    the vectors' cosine, best first, and a removed entry is never returned."""
    questions = [f"How do I copy {n} files to a server with scp?" for n in range(3000)]
    vectors = EMBEDDER.embed(questions)
    index = VectorIndex(EMBEDDER.dimensions, max_entries=10_000, max_entries_per_organisation=10_000)
    for n, (question, vector) in enumerate(zip(questions, vectors, strict=True)):
        index.add(Entry(str(n), "org", "s", question, features(question), vector, n, float("inf"), 1))
    query = EMBEDDER.embed(["How can I copy 17 files to a server with scp?"])[0]
    found = index.search("org", "s", query, 0.8, now=0.0, limit=8)
    assert found and len(found) <= 8
    for cosine, entry in found:
        assert cosine == pytest.approx(float(entry.vector @ query), abs=1e-6)
        assert cosine >= 0.8
    assert [c for c, _ in found] == sorted((c for c, _ in found), reverse=True)
    best = found[0][1]
    index.remove(best.id)
    assert best.id not in {entry.id for _, entry in index.search("org", "s", query, 0.8, now=0.0, limit=8)}


def test_one_text_embeds_as_in_a_batch() -> None:
    texts = ["How do I sort a list in Python?", "", "héllo wörld", "x" * 3000]
    batch, _ = EMBEDDER.embed_counting([*texts, "another text"])
    for n, text in enumerate(texts):
        one, tokens = EMBEDDER.embed_counting([text])
        assert np.allclose(one[0], batch[n], atol=1e-6)  # float sums in another order
        assert tokens == EMBEDDER.count_tokens([text])
    assert EMBEDDER.embed_counting(["short"], 64)[0].shape == (1, 64)
