"""The single-flight lock across replicas, on Redis (`SET NX PX`)."""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from ...domain.ports.cache import UNLOCKED
from ...domain.ports.stores import require_organisation
from .redis_health import DEFAULT_PREFIX, RedisHealth, Skipped, key_segment

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisFlightLock:
    """`{prefix}flight:{organisation}:{key}` holding the leader's random
    token, expiring by itself if the leader dies; released only by its holder."""

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX, health: RedisHealth | None = None) -> None:
        self._redis = client
        self._prefix = f"{prefix}flight:"
        self.health = health if health is not None else RedisHealth()
        self._release = client.register_script(_RELEASE)
        self.errors = 0

    def redis_key(self, organisation: str, key: str) -> str:
        return f"{self._prefix}{key_segment(require_organisation(organisation))}:{key}"

    async def acquire(self, organisation: str, key: str, ttl_seconds: float) -> str | None:
        token = secrets.token_hex(8)
        redis_key = self.redis_key(organisation, key)
        taken = await self.health.attempt(
            lambda: self._redis.set(redis_key, token, nx=True, px=max(1, int(ttl_seconds * 1000)))
        )
        if isinstance(taken, Skipped):
            self.errors += 1
            return UNLOCKED
        return token if taken else None

    async def held(self, organisation: str, key: str) -> bool:
        redis_key = self.redis_key(organisation, key)
        exists = await self.health.attempt(lambda: self._redis.exists(redis_key))
        if isinstance(exists, Skipped):
            self.errors += 1
            return False
        return bool(exists)

    async def release(self, organisation: str, key: str, token: str) -> None:
        if token == UNLOCKED:
            return
        redis_key = self.redis_key(organisation, key)
        done = await self.health.attempt(lambda: self._release(keys=[redis_key], args=[token]))
        if isinstance(done, Skipped):
            self.errors += 1  # the lock expires by itself
