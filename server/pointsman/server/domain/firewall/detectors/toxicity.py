"""Toxicity, offline: alt-profanity-check's model (TF-IDF over words, five
calibrated linear SVMs; the weights ship inside the wheel), scored per
sentence, with the arithmetic done here instead of through scikit-learn, which is not
even imported.

scikit-learn's `predict_proba` costs ~3.5 ms per call whatever the length
(input validation, sparse matrices); the same model is a dictionary lookup
per word and five dot products, which this module computes from the fitted
vocabulary, idf and coefficients. Scoring per sentence (not the whole text)
keeps one abusive line in a long prompt from being diluted by the rest, and
gives a span to redact.

What it catches: profanity, slurs and insults written with common words.
What it misses: hostility without swear words ("people like you should not
exist"), threats in polite words, obfuscation (f*ck, f u c k, leetspeak), and
any language but English. It also flags profanity that is not abuse ("this
shit finally works"). Treat it as a profanity filter."""

from __future__ import annotations

import importlib.util
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..verdict import Category, Finding

# The vectorizer's own token pattern, applied to lower-cased text.
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
# Sentences: up to a terminator or a line break, at most this long.
# A terminator counts only before a space: "Dipl.-Ing." and "3.5" stay whole.
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n")
MAX_SEGMENT_CHARS = 400
MIN_SEGMENT_WORDS = 3


class _LinearModel:
    """The fitted model as plain numbers: per word its idf and the five
    classifiers' weights; per classifier its intercept and sigmoid calibration."""

    def __init__(self) -> None:
        vectorizer = _load_fitted("vectorizer.joblib")
        model = _load_fitted("model.joblib")
        params = vectorizer.__dict__
        expected = {"analyzer": "word", "ngram_range": (1, 1), "norm": "l2", "sublinear_tf": False, "binary": False}
        if any(params.get(k) != v for k, v in expected.items()) or params.get("token_pattern") != _TOKEN.pattern:
            raise RuntimeError("alt-profanity-check's vectorizer changed; the toxicity detector needs updating")
        calibrated = model.calibrated_classifiers_
        coefs = [c.estimator.coef_.ravel() for c in calibrated]
        idf = vectorizer._tfidf.idf_
        self.weights: dict[str, tuple[float, tuple[float, ...]]] = {
            word: (float(idf[i]), tuple(float(c[i]) for c in coefs)) for word, i in vectorizer.vocabulary_.items()
        }
        self.intercepts = tuple(float(c.estimator.intercept_[0]) for c in calibrated)
        self.calibration = tuple((float(c.calibrators[0].a_), float(c.calibrators[0].b_)) for c in calibrated)
        self.lowercase = bool(params["lowercase"])

    def probability(self, words: list[str]) -> float:
        weights = self.weights
        counts: dict[str, int] = {}
        for word in words:
            if word in weights:
                counts[word] = counts.get(word, 0) + 1
        if not counts:
            return self._probability((0.0,) * len(self.intercepts))
        norm = 0.0
        if len(self.intercepts) == 5:
            # The shipped model has five classifiers: unrolled, this loop is
            # twice as fast as the general one below.
            s0 = s1 = s2 = s3 = s4 = 0.0
            for word, count in counts.items():
                idf, (c0, c1, c2, c3, c4) = weights[word]
                value = count * idf
                norm += value * value
                s0 += value * c0
                s1 += value * c1
                s2 += value * c2
                s3 += value * c3
                s4 += value * c4
            sums = [s0, s1, s2, s3, s4]
        else:
            sums = [0.0] * len(self.intercepts)
            for word, count in counts.items():
                idf, coefs = weights[word]
                value = count * idf
                norm += value * value
                for k, c in enumerate(coefs):
                    sums[k] += value * c
        scale = 1.0 / math.sqrt(norm)
        return self._probability(tuple(s * scale for s in sums))

    def _probability(self, dots: tuple[float, ...]) -> float:
        total = 0.0
        for dot, intercept, (a, b) in zip(dots, self.intercepts, self.calibration, strict=True):
            total += 1.0 / (1.0 + math.exp(a * (dot + intercept) + b))
        return total / len(dots)


class _Fitted:
    """Stands in for a scikit-learn estimator: keeps its fitted attributes."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _load_fitted(name: str) -> Any:
    """Reads one of alt-profanity-check's joblib files without importing
    scikit-learn (~0.8 s and ~80 MB): its classes are replaced by `_Fitted`,
    which only needs their attributes. Only the package's own files are read.
    The package itself is not imported either: its __init__ loads sklearn."""
    from joblib import numpy_pickle  # type: ignore[import-untyped]

    class Unpickler(numpy_pickle.NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            if module.split(".")[0] == "sklearn":
                return type(name, (_Fitted,), {})
            return super().find_class(module, name)

    spec = importlib.util.find_spec("profanity_check")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("alt-profanity-check is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    with path.open("rb") as file:
        return Unpickler(str(path), file, ensure_native_byte_order=True).load()


_MODEL: _LinearModel | None = None


def _model() -> _LinearModel:
    global _MODEL
    if _MODEL is None:
        _MODEL = _LinearModel()
    return _MODEL


def segments(text: str) -> Iterator[tuple[int, int]]:
    """Sentence spans, long ones cut at a space near MAX_SEGMENT_CHARS."""
    start = 0
    for boundary in _SENTENCE_END.finditer(text):
        yield from _cut(text, start, boundary.end())
        start = boundary.end()
    if start < len(text):
        yield from _cut(text, start, len(text))


def _cut(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while end - start > MAX_SEGMENT_CHARS:
        cut = text.rfind(" ", start + 1, start + MAX_SEGMENT_CHARS)
        cut = cut if cut > start else start + MAX_SEGMENT_CHARS
        yield start, cut
        start = cut
    if end > start:
        yield start, end


class ToxicityDetector:
    """Flags each sentence whose probability of being offensive reaches the threshold."""

    category = Category.TOXICITY

    def __init__(self, threshold: float = 0.8) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("the toxicity threshold must be in (0, 1]")
        self.threshold = threshold
        self._model = _model()

    def probability(self, text: str) -> float:
        """The model's probability for the text as one piece (what
        alt-profanity-check's predict_prob returns)."""
        return self._model.probability(_TOKEN.findall(text.lower()))

    def detect(self, text: str) -> list[Finding]:
        findings: list[Finding] = []
        lowercase = self._model.lowercase
        pending_start = -1
        pending: list[str] = []
        for start, end in segments(text):
            # Lower-case per segment: lower() can change a text's length
            # (İ -> i̇), and spans must stay in the original's positions.
            segment = text[start:end]
            words = _TOKEN.findall(segment.lower() if lowercase else segment)
            if not words:
                continue
            if pending_start < 0:
                pending_start = start
            pending += words
            # A word or two alone ("Dr.", "-Ing.") says little and scores
            # wildly; such fragments join the next sentence.
            if len(pending) < MIN_SEGMENT_WORDS and end < len(text):
                continue
            self._score(text, pending_start, end, pending, findings)
            pending_start, pending = -1, []
        if pending:
            self._score(text, pending_start, len(text), pending, findings)
        return findings

    def _score(self, text: str, start: int, end: int, words: list[str], findings: list[Finding]) -> None:
        probability = self._model.probability(words)
        if probability >= self.threshold:
            while start < end and text[start].isspace():
                start += 1
            while end > start and text[end - 1].isspace():
                end -= 1
            findings.append(Finding(Category.TOXICITY, "PROFANITY", start=start, end=end, score=probability))
