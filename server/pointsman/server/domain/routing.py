"""How a model alias picks its deployments, and when a failure is retried."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .chat import Deployment


class RoutingStrategy(enum.Enum):
    PRIORITY = "priority"
    WEIGHTED = "weighted"
    LATENCY = "latency"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    # Retries of one deployment after its first attempt, before falling back.
    retries: int = 1
    base_delay_seconds: float = 0.1
    max_delay_seconds: float = 2.0
    # A Retry-After longer than this is not waited for: the router falls back.
    max_retry_after_seconds: float = 10.0

    def backoff(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Exponential backoff with full jitter; an upstream's Retry-After is a floor."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * (2**retry))
        delay = rng.uniform(0, ceiling)
        return max(delay, retry_after or 0.0)


class RetryBudget:
    """Caps retries at a share of traffic, so that an outage does not multiply
    the load on a struggling upstream. Each call earns `ratio` of a retry; a
    reserve of `minimum` lets a quiet server retry at all."""

    def __init__(self, ratio: float = 0.2, minimum: int = 10) -> None:
        self._ratio = ratio
        self._cap = float(max(minimum, 1))
        self._tokens = self._cap

    def record_call(self) -> None:
        self._tokens = min(self._cap, self._tokens + self._ratio)

    def try_spend(self) -> bool:
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


def order(
    strategy: RoutingStrategy,
    deployments: Sequence[Deployment],
    latency_of: Callable[[Deployment], float | None],
    rng: random.Random,
) -> list[Deployment]:
    """The order to try deployments in: the first is the choice, the rest fallbacks."""
    if len(deployments) < 2 or strategy is RoutingStrategy.PRIORITY:
        return list(deployments)
    if strategy is RoutingStrategy.WEIGHTED:
        # Weighted sampling without replacement (Efraimidis-Spirakis keys).
        return sorted(deployments, key=lambda d: rng.random() ** (1.0 / d.weight) if d.weight else 0.0, reverse=True)
    # Lowest latency first; deployments never measured go first so they get measured.
    return sorted(deployments, key=lambda d: latency_of(d) or 0.0)
