"""When a failed call is tried again: UNAVAILABLE and RESOURCE_EXHAUSTED only,
a bounded number of times, after the delay the server asked for in RetryInfo
or else an exponential backoff with jitter.

What is never retried: a call whose requests are a stream (they cannot be sent
twice), and a response stream after its first message arrived (the caller has
already seen part of the answer)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import grpc

from .errors import PointsmanError

RETRYABLE: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` counts every try, the first included (1 means no retry).
    The n-th retry waits `initial_backoff * multiplier**(n-1)` seconds, spread
    by +/- `jitter` (a fraction) so that many clients do not come back at once,
    and never more than `max_delay`. A server's RetryInfo replaces the backoff;
    when it asks for more than `max_delay`, the error is raised at once rather
    than retried too early."""

    attempts: int = 4
    initial_backoff: float = 0.2
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.2
    codes: frozenset[grpc.StatusCode] = field(default=RETRYABLE)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise ValueError("backoff and max_delay must be >= 0, multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, failed_attempt: int, error: PointsmanError) -> float | None:
        """Seconds to wait before trying again after try number `failed_attempt`
        (1-based) failed with `error`; None: give up and raise it."""
        if error.code not in self.codes or failed_attempt >= self.attempts:
            return None
        if error.retry_delay is not None:
            if error.retry_delay > self.max_delay:
                return None
            # Never earlier than asked; a little later, spread between clients.
            spread = error.retry_delay * random.uniform(0, self.jitter)
            return min(error.retry_delay + spread, max(self.max_delay, error.retry_delay))
        backoff = self.initial_backoff * self.multiplier ** (failed_attempt - 1)
        return min(self.max_delay, backoff * random.uniform(1 - self.jitter, 1 + self.jitter))


# On by default in both clients; `retry=None` turns retries off.
DEFAULT_RETRY = RetryPolicy()
