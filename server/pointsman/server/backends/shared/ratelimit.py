"""Token buckets per key (a principal, an organisation): in-process, or in
Redis so that every replica draws from the same bucket.

A bucket holds up to `burst` tokens and refills at `rate_per_second`; a call
costing more than it holds is refused (taking nothing) and told how long until
it would fit. With Redis unreachable the limiter fails open by default: the
request goes through and `failed_open` counts it."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from redis.asyncio import Redis

from .redis_health import DEFAULT_PREFIX, RedisHealth, Skipped


@dataclass(frozen=True, slots=True)
class BucketPolicy:
    rate_per_second: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate_per_second <= 0 or self.burst <= 0:
            raise ValueError("a token bucket needs a positive rate and burst")


class RateLimitResult(NamedTuple):
    allowed: bool
    # 0 when allowed; math.inf when the cost exceeds the burst (it never fits).
    retry_after_seconds: float


@dataclass(slots=True)
class RateLimitStats:
    allowed: int = 0
    denied: int = 0
    errors: int = 0  # Redis calls that failed or were skipped while Redis was down
    failed_open: int = 0  # requests let through because Redis could not be asked
    failed_closed: int = 0  # requests refused because Redis could not be asked


class RateLimiter(Protocol):
    stats: RateLimitStats

    @property
    def healthy(self) -> bool: ...

    async def try_acquire(self, key: str, cost: float = 1.0) -> RateLimitResult: ...


def _too_big(cost: float, policy: BucketPolicy) -> RateLimitResult | None:
    if cost > policy.burst:
        return RateLimitResult(False, math.inf)
    return None


class InProcessRateLimiter:
    """Buckets in an LRU of at most `max_keys`; a bucket pushed out comes back
    full, which only ever errs towards allowing."""

    def __init__(
        self, policy: BucketPolicy, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._max_keys = max_keys
        self._clock = clock
        self.stats = RateLimitStats()

    @property
    def healthy(self) -> bool:
        return True

    async def try_acquire(self, key: str, cost: float = 1.0) -> RateLimitResult:
        policy = self.policy
        refused = _too_big(cost, policy)
        if refused is not None:
            self.stats.denied += 1
            return refused
        now = self._clock()
        tokens, at = self._buckets.get(key, (policy.burst, now))
        tokens = min(policy.burst, tokens + max(0.0, now - at) * policy.rate_per_second)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            self.stats.allowed += 1
            return RateLimitResult(True, 0.0)
        self.stats.denied += 1
        return RateLimitResult(False, (cost - tokens) / policy.rate_per_second)


# KEYS[1]: the bucket; ARGV: rate per second, burst, cost, idle expiry (ms).
# Redis's own clock, so replicas with skewed clocks share one bucket fairly.
# A refusal writes nothing: the stored state already implies the same answer.
_TOKEN_BUCKET = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000000 + tonumber(now_t[2])
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
    tokens = burst
    at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate / 1000000)
if tokens >= cost then
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - cost), 'at', tostring(now))
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
    return {1, '0'}
end
return {0, tostring((cost - tokens) / rate)}
"""


class RedisRateLimiter:
    """One hash per bucket, `{prefix}rl:{key}`, updated by one Lua script
    (atomic across replicas); it expires once idle long enough to be full."""

    def __init__(
        self,
        client: Redis,
        policy: BucketPolicy,
        *,
        prefix: str = DEFAULT_PREFIX,
        health: RedisHealth | None = None,
        fail_open: bool = True,
        fail_closed_retry_after_seconds: float = 1.0,
    ) -> None:
        self._redis = client
        self.policy = policy
        self._prefix = f"{prefix}rl:"
        self.health = health if health is not None else RedisHealth()
        self._fail_open = fail_open
        self._fail_closed_retry_after = fail_closed_retry_after_seconds
        self._script = client.register_script(_TOKEN_BUCKET)
        # Once idle this long a bucket is full again, so forgetting it changes nothing.
        self._idle_ms = math.ceil(policy.burst / policy.rate_per_second * 1000) + 1000
        self.stats = RateLimitStats()

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    def redis_key(self, key: str) -> str:
        return self._prefix + key

    async def try_acquire(self, key: str, cost: float = 1.0) -> RateLimitResult:
        policy = self.policy
        refused = _too_big(cost, policy)
        if refused is not None:
            self.stats.denied += 1
            return refused
        keys = [self.redis_key(key)]
        args: list[str | int] = [
            repr(float(policy.rate_per_second)),
            repr(float(policy.burst)),
            repr(float(cost)),
            self._idle_ms,
        ]
        reply = await self.health.attempt(lambda: self._script(keys=keys, args=args))
        if isinstance(reply, Skipped):
            self.stats.errors += 1
            if self._fail_open:
                self.stats.failed_open += 1
                return RateLimitResult(True, 0.0)
            self.stats.failed_closed += 1
            return RateLimitResult(False, self._fail_closed_retry_after)
        allowed, retry_after = reply
        if int(allowed) == 1:
            self.stats.allowed += 1
            return RateLimitResult(True, 0.0)
        self.stats.denied += 1
        return RateLimitResult(False, float(retry_after))
