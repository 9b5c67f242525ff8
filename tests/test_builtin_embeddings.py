"""The built-in embedding model loads from the wheel alone and gives vectors whose
similarities mean something."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

from pointsman.server.providers.builtin_embeddings import DIMENSIONS, BuiltinEmbedder

EMBEDDER = BuiltinEmbedder()


def test_loads_without_touching_the_network() -> None:
    # A fresh interpreter whose sockets refuse to connect and whose home has no cache:
    # loading and embedding must still work, so nothing is downloaded.
    script = textwrap.dedent(
        """
        import socket, tempfile, os
        def refuse(*args, **kwargs):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        os.environ["HOME"] = tempfile.mkdtemp()
        from pointsman.server.providers.builtin_embeddings import BuiltinEmbedder
        print(BuiltinEmbedder().embed(["hello"]).shape)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"(1, {DIMENSIONS})"


def test_vectors_are_unit_length_and_paraphrases_are_closer_than_unrelated_text() -> None:
    question, paraphrase, unrelated = EMBEDDER.embed(
        ["How do I reset my password?", "How can I reset the password?", "The weather in Lisbon is sunny today."]
    )
    assert np.allclose([np.linalg.norm(question), np.linalg.norm(paraphrase)], 1.0, atol=1e-5)
    assert question @ paraphrase > question @ unrelated + 0.2


def test_empty_text_gives_a_zero_vector_not_nan() -> None:
    (vector,) = EMBEDDER.embed([""])
    assert vector.shape == (DIMENSIONS,)
    assert not np.isnan(vector).any()
    assert not vector.any()


def test_counts_the_tokens_it_read() -> None:
    assert EMBEDDER.count_tokens([""]) == 0
    assert EMBEDDER.count_tokens(["hello world"]) >= 2
    # A batch is padded to its longest text; padding is not counted.
    assert EMBEDDER.count_tokens(["hi", "hello world, this is a longer text"]) == EMBEDDER.count_tokens(
        ["hi"]
    ) + EMBEDDER.count_tokens(["hello world, this is a longer text"])


def test_gives_wordllamas_own_vectors_and_counts_in_the_same_pass() -> None:
    texts = ["short", "a somewhat longer sentence about databases and indexes", ""] * 30  # two batches
    vectors, tokens = EMBEDDER.embed_counting(texts)
    reference = EMBEDDER._load().embed(texts, norm=False)
    norms = np.linalg.norm(reference, axis=1, keepdims=True)
    expected = np.divide(reference, norms, out=np.zeros_like(reference), where=norms > 0)
    assert np.allclose(vectors, expected, atol=1e-6)
    assert tokens == EMBEDDER.count_tokens(texts)


def test_fewer_dimensions_are_the_renormalised_prefix() -> None:
    full = EMBEDDER._load().embed(["matryoshka prefix"], norm=False)[0]
    (short,) = EMBEDDER.embed(["matryoshka prefix"], 64)
    assert np.allclose(short, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)
