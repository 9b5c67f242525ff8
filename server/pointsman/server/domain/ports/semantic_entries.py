"""The semantic cache's shared level (L2): entries every replica hears of.

Each replica searches its own in-process index (domain/semantic/index.py); the
shared level only carries entries between replicas: a replica publishes what it
stores, and every replica (itself included) hears it and files it in its own
index. Redis (a stream) implements it in backends/shared/; without Redis the
in-process one hears only its own replica."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .cache import CachedAnswer


@dataclass(frozen=True, slots=True)
class SemanticRecord:
    id: str
    organisation: str
    scope: str  # digest of everything before the last user turn, and the answer-relevant fields
    question: str  # the last user turn
    vector: bytes  # float32, little-endian, the embedder's width
    answer: CachedAnswer
    expires_at: float  # seconds since the epoch
    # Tokens and cost of the call that made the answer: what a hit saves.
    saved_tokens: int = 0
    saved_cost_usd: float = 0.0


class SemanticEntries(Protocol):
    async def publish(self, record: SemanticRecord) -> None:
        """Makes the record known to every replica (best effort: a failure is
        counted and the entry stays in this replica only)."""
        ...

    async def follow(self, heard: Callable[[SemanticRecord], None]) -> None:
        """Calls `heard` for every live record, old ones first, then for each
        new one, until cancelled."""
        ...
