"""Opens the state a server (or a worker) runs on, from settings: the durable
stores (SQLite by default, PostgreSQL with DATABASE_URL), the write buffers in
front of them, and the shared backends (in-process by default, Redis with
REDIS_URL). One place decides which implementation each job gets."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from ..backends.buffered_decisions import BufferedDecisionLog
from ..backends.shared import (
    BucketPolicy,
    InProcessBus,
    InProcessConversations,
    InProcessRateLimiter,
    InProcessResponseCache,
    LocalOpenState,
    RateLimiter,
    RedisBus,
    RedisConversations,
    RedisFlightLock,
    RedisHealth,
    RedisOpenState,
    RedisRateLimiter,
    RedisResponseCache,
    TwoLevelCache,
    open_redis,
)
from ..backends.stores import RequestRecord, Stores, open_stores
from ..backends.write_buffer import WriteBuffer
from ..domain.caller import Caller
from ..domain.errors import RateLimited
from ..domain.firewall.verdict import Decision
from ..domain.ports.breaker_state import SharedOpenState
from ..domain.ports.bus import Bus
from ..domain.ports.cache import ResponseCache
from ..domain.ports.conversations import Conversations
from ..domain.single_flight import SingleFlight
from ..metrics import Metrics
from ..settings import Settings

log = logging.getLogger(__name__)


@dataclass
class RateLimits:
    """Token buckets on chat calls, per principal and per organisation; None
    where the setting turns one off."""

    per_principal: RateLimiter | None = None
    per_organisation: RateLimiter | None = None

    @property
    def enabled(self) -> bool:
        return self.per_principal is not None or self.per_organisation is not None

    async def admit(self, caller: Caller) -> None:
        """Takes one token from the caller's bucket and its organisation's, or
        raises RateLimited saying when to retry. With Redis down, calls are
        let through (fail open) rather than refused."""
        if self.per_principal is not None:
            principal = caller.principal or "anonymous"
            result = await self.per_principal.try_acquire(f"{caller.organisation}/{principal}")
            if not result.allowed:
                raise _limited("this principal", result.retry_after_seconds)
        if self.per_organisation is not None:
            result = await self.per_organisation.try_acquire(caller.organisation)
            if not result.allowed:
                raise _limited("this organisation", result.retry_after_seconds)


def _limited(whose: str, retry_after: float) -> RateLimited:
    return RateLimited(
        f"rate limit of {whose} exceeded; retry after {retry_after:.2f} s",
        retry_after_seconds=retry_after if math.isfinite(retry_after) else 60.0,
    )


@dataclass
class State:
    stores: Stores
    decisions: BufferedDecisionLog
    request_log: WriteBuffer[RequestRecord]
    bus: Bus
    cache: ResponseCache
    flights: SingleFlight
    conversations: Conversations
    rate_limits: RateLimits
    breaker_opens: SharedOpenState
    redis: Redis | None = None
    redis_health: RedisHealth | None = None
    metrics: Metrics | None = None  # with POINTSMAN_METRICS_ADDRESS
    _buffers: Sequence[WriteBuffer[object]] = field(default_factory=list)

    def buffers(self) -> Sequence[WriteBuffer[object]]:
        return self._buffers

    @property
    def shared(self) -> bool:
        """True when replicas share state through Redis."""
        return self.redis is not None

    def redis_probe(self) -> Callable[[], Awaitable[bool]] | None:
        """Whether Redis answers, for health; None without Redis."""
        if self.redis is None or self.redis_health is None:
            return None
        return functools.partial(self.redis_health.ping, self.redis)

    async def start(self) -> None:
        for buffer in self._buffers:
            buffer.start()
        await self.breaker_opens.start()

    async def aclose(self) -> None:
        """Flushes the write buffers (as far as the database lets it), then
        closes every connection."""
        for buffer in self._buffers:
            await buffer.close()
        await self.breaker_opens.aclose()
        await self.bus.aclose()
        await self.cache.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.stores.aclose()


def _bucket(rate: float, burst: int) -> BucketPolicy | None:
    if rate <= 0:
        return None
    return BucketPolicy(rate_per_second=rate, burst=max(burst, 1, int(rate)))


async def open_state(settings: Settings) -> State:
    """Connects to the database (migrating it) and to Redis if configured.
    A database that cannot be reached at start is an error; Redis that cannot
    be reached is not (the shared backends serve without it until it returns)."""
    database_url = settings.database_url.get_secret_value() if settings.database_url else None
    stores = await open_stores(database_url, settings.data_dir)
    decision_buffer: WriteBuffer[Decision] = WriteBuffer(
        stores.decisions.record_many, name="decisions", capacity=settings.write_buffer_capacity
    )
    request_buffer: WriteBuffer[RequestRecord] = WriteBuffer(
        stores.requests.record_many, name="request log", capacity=settings.write_buffer_capacity
    )
    metrics = Metrics() if settings.metrics_address else None
    l1 = InProcessResponseCache(settings.cache_max_entries, settings.cache_max_bytes)
    principal_policy = _bucket(settings.rate_limit_principal_per_second, settings.rate_limit_principal_burst)
    org_policy = _bucket(settings.rate_limit_organisation_per_second, settings.rate_limit_organisation_burst)
    common = {
        "stores": stores,
        "decisions": BufferedDecisionLog(stores.decisions, decision_buffer, metrics),
        "metrics": metrics,
        "request_log": request_buffer,
        "_buffers": [decision_buffer, request_buffer],
    }
    if settings.redis_url is None:
        return State(
            bus=InProcessBus(),
            cache=l1,
            flights=SingleFlight(l1),
            conversations=InProcessConversations(),
            rate_limits=RateLimits(
                InProcessRateLimiter(principal_policy) if principal_policy else None,
                InProcessRateLimiter(org_policy) if org_policy else None,
            ),
            breaker_opens=LocalOpenState(),
            **common,  # type: ignore[arg-type]
        )
    client = open_redis(settings.redis_url.get_secret_value())
    health = RedisHealth()
    prefix = settings.redis_prefix
    bus = RedisBus(client, prefix=prefix, health=health)
    cache = TwoLevelCache(l1, RedisResponseCache(client, prefix=prefix, health=health))

    def limiter(policy: BucketPolicy | None, scope: str) -> RateLimiter | None:
        if policy is None:
            return None
        return RedisRateLimiter(client, policy, prefix=f"{prefix}{scope}:", health=health)

    return State(
        bus=bus,
        cache=cache,
        flights=SingleFlight(cache, RedisFlightLock(client, prefix=prefix, health=health)),
        conversations=RedisConversations(client, prefix=prefix, health=health),
        rate_limits=RateLimits(limiter(principal_policy, "principal"), limiter(org_policy, "org")),
        breaker_opens=RedisOpenState(client, bus, prefix=prefix, health=health),
        redis=client,
        redis_health=health,
        **common,  # type: ignore[arg-type]
    )
