"""Routing by meaning: a router alias (say `auto`) puts the last user turn in
one of its classes and sends the call to that class's model alias.

Each class is defined by example utterances (and, optionally, keywords). The
utterance is embedded once (the `Embedder` port: the built-in 256-d model,
~0.1 ms for a short text) and scored against each class two ways: cosine to
the class centroid, and the mean of its k nearest examples. The best class
wins only by a margin over the runner-up and above a floor; otherwise the call
goes to the default alias. A keyword (a whole word or phrase) is a stronger
signal than a similarity: when keywords match, only the matching classes are
considered (still scored by meaning, so two matching classes are ranked).

A router may also name a classifier model (a small chat model alias): when the
embeddings are not confident by its own margin and floor, `classify` says so
(`Choice.ask`), the orchestrator asks that model (domain/classifier_model.py)
and `settle` turns its answer into the choice, or keeps the embeddings' choice
when there is no usable answer."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .chat import ChatRequest, Role, RouteDecision

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .ports.embedder import Embedder

DEFAULT_CLASS = "default"
# The classifier model's word for "none of these classes": the default.
NO_CLASS = "none"
_CLASSIFY_CHARS = 2000


@dataclass(frozen=True, slots=True)
class RouteClass:
    name: str
    alias: str
    examples: tuple[str, ...]
    keywords: tuple[str, ...] = ()
    # What the class is about, in a line, for the classifier model's prompt;
    # "": its first examples stand in.
    description: str = ""


@dataclass(frozen=True, slots=True)
class ClassifierSpec:
    """A router's classifier model: a chat alias asked about the turns the
    embeddings are not confident about."""

    model: str
    # Asked when the best class beats the runner-up by less than this ...
    margin: float
    # ... or scores below this (not when keywords narrowed the field).
    min_score: float
    # The whole call, retries included; past it the embeddings' choice stands.
    timeout_seconds: float = 2.0
    # Enough for a class name.
    max_tokens: int = 8


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
    # Off by default: no model is asked.
    classifier: ClassifierSpec | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        """The model aliases it sends calls to (the default and each class's),
        each once, in order. Not the classifier model: without it the router
        still answers."""
        return tuple(dict.fromkeys((self.default, *(cls.alias for cls in self.classes))))


@dataclass(frozen=True, slots=True)
class Choice:
    route_class: str
    alias: str
    score: float
    runner_up: float
    decision: RouteDecision = RouteDecision.EMBEDDING
    # The classes the classifier model should choose among; empty: do not ask it.
    ask: tuple[RouteClass, ...] = ()


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
            return Choice(classes[index].name, classes[index].alias, scores[index], 0.0, RouteDecision.KEYWORD)
        candidates = by_keyword or list(range(len(classes)))
        ranked = sorted(candidates, key=lambda i: scores[i], reverse=True)
        best = ranked[0]
        runner_up = scores[ranked[1]] if len(ranked) > 1 else -1.0
        gap = scores[best] - runner_up
        # Keyword matches have already narrowed the field: no floor then.
        clear = gap >= self.spec.margin and (by_keyword or scores[best] >= self.spec.min_score)
        if not clear:
            choice = Choice(DEFAULT_CLASS, self.spec.default, scores[best], runner_up)
        else:
            choice = Choice(classes[best].name, classes[best].alias, scores[best], runner_up)
        model = self.spec.classifier
        if model is not None and (gap < model.margin or (not by_keyword and scores[best] < model.min_score)):
            # Not confident by the classifier model's rule: it chooses among the candidates.
            choice = replace(choice, ask=tuple(classes[i] for i in ranked))
        return choice

    def settle(self, choice: Choice, label: str | None) -> Choice:
        """The choice once the classifier model answered with `label` (a class
        of `choice.ask`, NO_CLASS, or None for no usable answer)."""
        if label is None:
            return replace(choice, decision=RouteDecision.CLASSIFIER_FALLBACK, ask=())
        decided = RouteDecision.CLASSIFIER_MODEL
        if label == NO_CLASS:
            return Choice(DEFAULT_CLASS, self.spec.default, choice.score, choice.runner_up, decided)
        cls = next(c for c in choice.ask if c.name == label)
        return Choice(cls.name, cls.alias, choice.score, choice.runner_up, decided)


class ClassRouters:
    """Every router alias; the orchestrator asks `route` before resolving a model."""

    def __init__(self, specs: Sequence[RouterSpec], embedder: Embedder) -> None:
        self._routers = {spec.alias: ClassRouter(spec, embedder) for spec in specs}

    def __contains__(self, alias: str) -> bool:
        return alias in self._routers

    @property
    def aliases(self) -> list[str]:
        return list(self._routers)

    @property
    def specs(self) -> list[RouterSpec]:
        return [router.spec for router in self._routers.values()]

    def spec(self, alias: str) -> RouterSpec | None:
        router = self._routers.get(alias)
        return router.spec if router is not None else None

    def route(self, request: ChatRequest) -> Routing | None:
        """How the request is routed by the embeddings; None when the
        requested alias is not a router."""
        router = self._routers.get(request.model)
        if router is None:
            return None
        # A long prompt is classified by its start: enough to tell what it is about.
        text = last_user_text(request)[:_CLASSIFY_CHARS]
        return Routing(router, text, router.classify(text))


@dataclass(frozen=True, slots=True)
class Routing:
    """A router's choice for one turn: the text classified, and the router (to
    `settle` the choice once a classifier model has answered)."""

    router: ClassRouter
    text: str
    choice: Choice


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
