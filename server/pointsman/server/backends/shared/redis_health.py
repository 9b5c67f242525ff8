"""How the shared backends reach Redis, and whether it currently answers.

Every Redis call of a shared backend goes through `RedisHealth.attempt`: a
failure marks Redis unavailable, and further calls are skipped (answered as a
miss, a dropped write, an open limit) until a backoff passes; then exactly one
call probes Redis again. An outage costs requests nothing but the missing
shared state, and a recovering Redis is not met with a reconnect storm."""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that mean "Redis cannot be reached right now", as opposed to a bug
# in a command (ResponseError), which is logged but says nothing about Redis.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
    TimeoutError,
)
REDIS_ERRORS: tuple[type[BaseException], ...] = (*OUTAGE_ERRORS, redis.exceptions.RedisError)

DEFAULT_PREFIX = "pointsman:"


def open_redis(
    url: str,
    *,
    max_connections: int = 32,
    socket_timeout: float = 0.5,
    connect_timeout: float = 0.5,
    pool_timeout: float = 0.5,
) -> Redis:
    """A client for the shared backends: bounded pool, short timeouts, and no
    retries inside redis-py (the backends decide what a failure means; a
    silent reconnect would also hide lost pub/sub messages)."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=10,
        client_name="pointsman",
    )
    return Redis.from_pool(pool)


def key_segment(value: str) -> str:
    """`value` as one segment of a colon-separated key: organisation "a:b"
    must not be able to address organisation "a"'s keys."""
    return value.replace("%", "%25").replace(":", "%3A")


class Skipped(enum.Enum):
    """What `attempt` returns when the call was not made or failed."""

    SKIPPED = "skipped"  # Redis is known to be down: not even tried
    FAILED = "failed"


HealthListener = Callable[[bool], None]


class RedisHealth:
    """Shared by every backend on one client, so an outage is noticed once
    and probed by one call at a time. `healthy` is False from the first
    failure until a call succeeds again."""

    def __init__(
        self,
        *,
        min_backoff_seconds: float = 0.1,
        max_backoff_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.healthy = True
        self.failures = 0  # calls that failed
        self.skipped = 0  # calls not made while waiting to probe again
        self._min_backoff = min_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._backoff = 0.0
        self._probe_at = 0.0
        self._clock = clock
        self._listeners: list[HealthListener] = []

    def subscribe(self, listener: HealthListener) -> None:
        """`listener(healthy)` on every change (for the gRPC health service)."""
        self._listeners.append(listener)

    def should_try(self) -> bool:
        if self.healthy:
            return True
        now = self._clock()
        if now < self._probe_at:
            self.skipped += 1
            return False
        # This caller is the probe; everyone else waits for its outcome.
        self._probe_at = now + self._backoff
        return True

    def succeeded(self) -> None:
        if not self.healthy:
            self.healthy = True
            self._backoff = 0.0
            log.info("Redis answers again")
            self._notify()

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        if not isinstance(error, OUTAGE_ERRORS):
            log.error("Redis command failed: %s", type(error).__name__, exc_info=error)
            return
        self._backoff = min(self._max_backoff, max(self._min_backoff, self._backoff * 2))
        # Jitter, so replicas that lost Redis together do not return together.
        self._probe_at = self._clock() + self._backoff * random.uniform(0.5, 1.0)
        if self.healthy:
            self.healthy = False
            log.warning("Redis is unavailable (%s); serving without shared state", type(error).__name__)
            self._notify()

    async def attempt(self, call: Callable[[], Awaitable[T]]) -> T | Skipped:
        """Runs `call` unless Redis is known to be down; never raises a Redis
        or network error."""
        if not self.should_try():
            return Skipped.SKIPPED
        try:
            result = await call()
        except REDIS_ERRORS as error:
            self.failed(error)
            return Skipped.FAILED
        self.succeeded()
        return result

    async def ping(self, client: Redis) -> bool:
        """A probe for health checks when no request has touched Redis lately."""
        result = await self.attempt(client.ping)
        return not isinstance(result, Skipped) and bool(result)

    def _notify(self) -> None:
        for listener in self._listeners:
            try:
                listener(self.healthy)
            except Exception:
                log.exception("Redis health listener failed")
