"""The semantic cache: answers reused for questions that mean the same.

A request is looked up by its scope (a digest of everything but the last user
turn: the conversation before it, the model, the config, the tools; see
`cache_key`) and by the meaning of its last user turn. A stored question is a
candidate when its vector is close; it is served only when the matcher
(matcher.py) finds nothing that would change the answer. Entries live in this
replica's index (L1) and travel to every replica through `SemanticEntries` (L2).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..cache_key import cache_key
from ..chat import ChatRequest, Role
from ..ports.cache import CachedAnswer
from ..ports.embedder import Embedder
from ..ports.semantic_entries import SemanticEntries, SemanticRecord
from .index import Entry, VectorIndex
from .matcher import Features, MatchPolicy, features, judge

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SemanticLimits:
    """Bounds, so the cache's memory is known: entries in all, entries per
    organisation (the oldest go first) and the largest answer kept (bytes,
    roughly: characters plus overhead). A question longer than
    `max_question_chars` is not cached by meaning (a long prompt is rarely
    asked again in other words, and its vector says little)."""

    max_entries: int = 100_000
    max_entries_per_organisation: int = 10_000
    max_entry_bytes: int = 64 * 1024
    max_question_chars: int = 2_000


@dataclass(frozen=True, slots=True)
class SemanticHit:
    answer: CachedAnswer
    cosine: float
    question: str  # the stored question whose answer this is
    saved_tokens: int
    saved_cost_usd: float


@dataclass(slots=True)
class SemanticStats:
    hits: int = 0
    misses: int = 0
    refused: int = 0  # a candidate was close but the matcher said its answer differs
    stored: int = 0
    heard: int = 0  # entries filed from the shared level (other replicas and this one)
    too_large: int = 0
    publish_errors: int = 0
    saved_tokens: int = 0
    saved_cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class _Question:
    scope: str
    text: str


def question_of(request: ChatRequest) -> _Question | None:
    """The last user turn and the scope around it; None when the request does
    not end with a user turn (a tool result, an assistant prefill)."""
    if not request.messages:
        return None
    last = request.messages[-1]
    # A turn with parts (images above all) is never matched by meaning: the
    # matcher reads text, and would take two questions about different
    # pictures for the same one. Parts of earlier turns are in the exact scope.
    if last.role is not Role.USER or not last.content.strip() or last.name or last.tool_calls or last.parts:
        return None
    before = replace(request, messages=list(request.messages[:-1]))
    return _Question("s1:" + cache_key(before), last.content)


class SemanticCache:
    def __init__(
        self,
        embedder: Embedder,
        entries: SemanticEntries,
        *,
        policy: MatchPolicy | None = None,
        limits: SemanticLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.embedder = embedder
        self.entries = entries
        self.policy = policy or MatchPolicy()
        self.limits = limits or SemanticLimits()
        self.clock = clock
        self.index = VectorIndex(
            embedder.dimensions,
            max_entries=self.limits.max_entries,
            max_entries_per_organisation=self.limits.max_entries_per_organisation,
        )
        self.stats = SemanticStats()
        self._follower: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts hearing the shared level (call from the running loop)."""
        if self._follower is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a benchmark, a script): nothing to hear from
            self._follower = asyncio.create_task(self._follow(), name="semantic-cache-follower")

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
            self._follower = None

    def lookup(self, organisation: str, request: ChatRequest) -> SemanticHit | None:
        """The answer to a question that means the same as this one's last
        user turn, in the same organisation and scope; None on a miss."""
        self.start()
        question = question_of(request)
        if question is None or len(question.text) > self.limits.max_question_chars:
            return None
        vector = self.embedder.embed([question.text])[0]
        candidates = self.index.search(organisation, question.scope, vector, self.policy.cosine, self.clock())
        if candidates:
            asked = features(question.text)
            for cosine, entry in candidates:
                if judge(entry.features, asked, cosine, self.policy).same:
                    saved_tokens, saved_cost = entry.answer[1], entry.answer[2]
                    self.stats.hits += 1
                    self.stats.saved_tokens += saved_tokens
                    self.stats.saved_cost_usd += saved_cost
                    return SemanticHit(entry.answer[0], cosine, entry.question, saved_tokens, saved_cost)
            self.stats.refused += 1
        self.stats.misses += 1
        return None

    async def remember(
        self,
        organisation: str,
        request: ChatRequest,
        answer: CachedAnswer,
        ttl_seconds: float,
        *,
        saved_tokens: int = 0,
        saved_cost_usd: float = 0.0,
    ) -> None:
        """Keeps the answer for `ttl_seconds`, here at once and on every
        replica once the shared level has carried it."""
        question = question_of(request)
        if question is None or ttl_seconds <= 0 or len(question.text) > self.limits.max_question_chars:
            return
        if answer.approximate_size() + len(question.text) > self.limits.max_entry_bytes:
            self.stats.too_large += 1
            return
        vector = self.embedder.embed([question.text])[0]
        if not vector.any():
            return  # nothing the model knows: no meaning to match on
        record = SemanticRecord(
            id=uuid.uuid4().hex,
            organisation=organisation,
            scope=question.scope,
            question=question.text,
            vector=vector.astype("<f4").tobytes(),
            answer=answer,
            expires_at=self.clock() + ttl_seconds,
            saved_tokens=saved_tokens,
            saved_cost_usd=saved_cost_usd,
        )
        self._file(record, vector)
        self.stats.stored += 1
        try:
            await self.entries.publish(record)
        except Exception:  # the entry stays in this replica; the call goes on
            self.stats.publish_errors += 1
            log.warning("semantic cache entry not shared with other replicas", exc_info=True)

    def _file(self, record: SemanticRecord, vector: np.ndarray | None = None) -> None:
        if record.expires_at <= self.clock():
            return
        if vector is None:
            vector = np.frombuffer(record.vector, dtype="<f4").astype(np.float32)
            if vector.shape != (self.embedder.dimensions,):
                return  # written by a replica with another embedder
        self.index.add(
            Entry(
                id=record.id,
                organisation=record.organisation,
                scope=record.scope,
                question=record.question,
                features=_features(record.question),
                vector=vector,
                answer=(record.answer, record.saved_tokens, record.saved_cost_usd),
                expires_at=record.expires_at,
                size=record.answer.approximate_size(),
            )
        )

    async def _follow(self) -> None:
        def heard(record: SemanticRecord) -> None:
            self.stats.heard += 1
            self._file(record)

        while True:
            try:
                await self.entries.follow(heard)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("semantic cache: shared entries unreadable, retrying", exc_info=True)
                await asyncio.sleep(1.0)


def _features(question: str) -> Features:
    return features(question)
