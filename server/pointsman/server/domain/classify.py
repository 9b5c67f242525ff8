"""Routing by meaning: a router alias (say `auto`) puts the last user turn in
one of its classes and sends the call to that class's model alias.

Each class is defined by example utterances (and, optionally, keywords). The
utterance is embedded once (the `Embedder` port: the built-in 256-d model,
~0.1 ms for a short text) and scored against each class two ways: cosine to
the class centroid, and the mean of its k nearest examples. The best class
wins only by a margin over the runner-up and above a floor; otherwise the call
goes to the default alias. A keyword (a whole word or phrase) is a stronger
signal than a similarity: when keywords match, only the matching classes are
considered (still scored by meaning, so two matching classes are ranked)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .chat import ChatRequest, Role

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .ports.embedder import Embedder

DEFAULT_CLASS = "default"
_CLASSIFY_CHARS = 2000


@dataclass(frozen=True, slots=True)
class RouteClass:
    name: str
    alias: str
    examples: tuple[str, ...]
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouterSpec:
    """One router alias as configured (routes file `routers:`)."""

    alias: str
    default: str
    classes: tuple[RouteClass, ...]
    # Defaults chosen on a split of the examples half only (bench/classify.py).
    # The best class must beat the runner-up by this much (score units: cosine).
    margin: float = 0.02
    # ... and score at least this much, else the utterance is about none of them.
    min_score: float = 0.15
    # Nearest examples averaged per class.
    k: int = 3


@dataclass(frozen=True, slots=True)
class Choice:
    route_class: str
    alias: str
    score: float
    runner_up: float


class ClassRouter:
    """One router alias, its examples embedded once at start."""

    def __init__(self, spec: RouterSpec, embedder: Embedder) -> None:
        import numpy as np

        self.spec = spec
        self._embedder = embedder
        texts = [example for cls in spec.classes for example in cls.examples]
        vectors = embedder.embed(texts)
        self._examples: list[npt.NDArray[np.float32]] = []
        centroids = []
        start = 0
        for cls in spec.classes:
            rows = vectors[start : start + len(cls.examples)]
            start += len(cls.examples)
            self._examples.append(rows)
            centroid = rows.mean(axis=0)
            norm = float(np.linalg.norm(centroid))
            centroids.append(centroid / norm if norm > 0 else centroid)
        self._centroids = np.stack(centroids)
        self._keywords = [_keyword_pattern(cls.keywords) for cls in spec.classes]

    def scores(self, text: str) -> list[float]:
        """Each class's score for the text: centroid cosine and k-nearest mean, averaged."""
        vector = self._embedder.embed([text])[0]
        centroid = self._centroids @ vector
        out = []
        for index, rows in enumerate(self._examples):
            similarities = rows @ vector
            k = min(self.spec.k, len(similarities))
            nearest = similarities[similarities.argpartition(-k)[-k:]] if k < len(similarities) else similarities
            out.append(0.5 * float(centroid[index]) + 0.5 * float(nearest.mean()))
        return out

    def classify(self, text: str) -> Choice:
        classes = self.spec.classes
        by_keyword = [i for i, pattern in enumerate(self._keywords) if pattern is not None and pattern.search(text)]
        if not text.strip():
            return Choice(DEFAULT_CLASS, self.spec.default, 0.0, 0.0)
        scores = self.scores(text)
        if len(by_keyword) == 1:
            index = by_keyword[0]
            return Choice(classes[index].name, classes[index].alias, scores[index], 0.0)
        candidates = by_keyword or list(range(len(classes)))
        ranked = sorted(candidates, key=lambda i: scores[i], reverse=True)
        best = ranked[0]
        runner_up = scores[ranked[1]] if len(ranked) > 1 else -1.0
        # Keyword matches have already narrowed the field: no floor then.
        clear = scores[best] - runner_up >= self.spec.margin and (by_keyword or scores[best] >= self.spec.min_score)
        if not clear:
            return Choice(DEFAULT_CLASS, self.spec.default, scores[best], runner_up)
        return Choice(classes[best].name, classes[best].alias, scores[best], runner_up)


class ClassRouters:
    """Every router alias; the orchestrator asks `route` before resolving a model."""

    def __init__(self, specs: Sequence[RouterSpec], embedder: Embedder) -> None:
        self._routers = {spec.alias: ClassRouter(spec, embedder) for spec in specs}

    def __contains__(self, alias: str) -> bool:
        return alias in self._routers

    @property
    def aliases(self) -> list[str]:
        return list(self._routers)

    def route(self, request: ChatRequest) -> tuple[ChatRequest, Choice] | None:
        """The request sent on to the chosen alias, and the choice; None when
        the requested alias is not a router."""
        router = self._routers.get(request.model)
        if router is None:
            return None
        # A long prompt is classified by its start: enough to tell what it is about.
        choice = router.classify(last_user_text(request)[:_CLASSIFY_CHARS])
        return replace(request, model=choice.alias), choice


def last_user_text(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.role is Role.USER:
            return message.text
    return ""


def _keyword_pattern(keywords: Sequence[str]) -> re.Pattern[str] | None:
    words = [k.strip() for k in keywords if k.strip()]
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
