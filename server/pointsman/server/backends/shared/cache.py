"""The response cache: whole answers, stored under an exact key over the
normalised request and partitioned by organisation, replayed later as a stream.

Three implementations of its interface (domain/ports/cache.py): an
in-process LRU bounded in entries and bytes (the embedded default, and L1 in
front of Redis), Redis (L2, shared by replicas), and `TwoLevelCache` that puts
the first in front of the second. The key is domain/cache_key.py's.
Redis errors never reach the caller: a get is a miss, a put is dropped."""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from ...domain.chat import (
    FinishReason,
    ToolCall,
    Usage,
)
from ...domain.ports.cache import CachedAnswer, CacheHit, CacheStats, ResponseCache
from ...domain.ports.stores import require_organisation
from .redis_health import DEFAULT_PREFIX, RedisHealth, Skipped, key_segment


def encode_answer(answer: CachedAnswer, expires_at_ms: int) -> bytes:
    """Compact JSON with one-letter keys; `x` is the wall-clock expiry, so a
    reader can fill its L1 for no longer than the entry lives."""
    plain: dict[str, Any] = {"x": expires_at_ms, "d": answer.deployment, "t": answer.text}
    if answer.tool_calls:
        plain["c"] = [[c.id, c.name, c.arguments_json] for c in answer.tool_calls]
    if answer.usage is not None:
        plain["u"] = [answer.usage.input_tokens, answer.usage.output_tokens]
        if answer.usage.estimated:
            plain["u"].append(1)
        if answer.usage.cached_input_tokens or answer.usage.reasoning_tokens:
            plain["k"] = [answer.usage.cached_input_tokens, answer.usage.reasoning_tokens]
    if answer.finish_reason is not FinishReason.STOP:
        plain["f"] = answer.finish_reason.value
    if answer.reasoning:
        plain["r"] = answer.reasoning
    return json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()


def decode_answer(data: bytes | str) -> tuple[CachedAnswer, int]:
    """Raises ValueError (or KeyError/TypeError) on anything malformed."""
    plain = json.loads(data)
    usage = plain.get("u")
    cached, reasoning = plain.get("k", (0, 0))  # of usage: cached input and reasoning tokens
    answer = CachedAnswer(
        deployment=plain["d"],
        text=plain["t"],
        tool_calls=tuple(ToolCall(i, n, a) for i, n, a in plain.get("c", ())),
        usage=None
        if usage is None
        else Usage(int(usage[0]), int(usage[1]), len(usage) > 2 and bool(usage[2]), 0.0, int(cached), int(reasoning)),
        finish_reason=FinishReason(plain.get("f", FinishReason.STOP.value)),
        reasoning=str(plain.get("r", "")),
    )
    return answer, int(plain["x"])


# In-process -------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    answer: CachedAnswer
    expires_at: float
    size: int


class InProcessResponseCache:
    """An LRU with a TTL per entry, bounded in entries and in bytes
    (approximately, see `CachedAnswer.approximate_size`)."""

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("the cache bounds must be positive")
        self._items: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bytes = 0
        self._clock = clock
        self.stats = CacheStats()

    @property
    def healthy(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def lookup_now(self, organisation: str, key: str) -> CacheHit | None:
        """The synchronous lookup (no await on the hot path of an L1 hit)."""
        item_key = (organisation, key)
        entry = self._items.get(item_key)
        if entry is None:
            self.stats.misses += 1
            return None
        left = entry.expires_at - self._clock()
        if left <= 0:
            self._remove(item_key)
            self.stats.misses += 1
            return None
        self._items.move_to_end(item_key)
        self.stats.hits += 1
        return CacheHit(entry.answer, left)

    def put_now(self, organisation: str, key: str, answer: CachedAnswer, ttl_seconds: float) -> None:
        require_organisation(organisation)
        item_key = (organisation, key)
        self._remove(item_key)
        size = answer.approximate_size()
        if ttl_seconds <= 0 or size > self._max_bytes:
            return
        self._items[item_key] = _Entry(answer, self._clock() + ttl_seconds, size)
        self._bytes += size
        self.stats.puts += 1
        while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= evicted.size
            self.stats.evictions += 1

    async def get(self, organisation: str, key: str) -> CachedAnswer | None:
        hit = self.lookup_now(organisation, key)
        return None if hit is None else hit.answer

    async def lookup(self, organisation: str, key: str) -> CacheHit | None:
        return self.lookup_now(organisation, key)

    async def put(self, organisation: str, key: str, answer: CachedAnswer, ttl_seconds: float) -> None:
        self.put_now(organisation, key, answer, ttl_seconds)

    async def aclose(self) -> None:
        self._items.clear()
        self._bytes = 0

    def _remove(self, item_key: tuple[str, str]) -> None:
        entry = self._items.pop(item_key, None)
        if entry is not None:
            self._bytes -= entry.size


# Redis ------------------------------------------------------------------------


class RedisResponseCache:
    """One string key per entry, `{prefix}cache:{organisation}:{key}`,
    expiring with the entry (`SET ... PX`)."""

    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX, health: RedisHealth | None = None) -> None:
        self._redis = client
        self._prefix = f"{prefix}cache:"
        self.health = health if health is not None else RedisHealth()
        self.stats = CacheStats()

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    def redis_key(self, organisation: str, key: str) -> str:
        return f"{self._prefix}{key_segment(require_organisation(organisation))}:{key}"

    async def get(self, organisation: str, key: str) -> CachedAnswer | None:
        hit = await self.lookup(organisation, key)
        return None if hit is None else hit.answer

    async def lookup(self, organisation: str, key: str) -> CacheHit | None:
        redis_key = self.redis_key(organisation, key)
        data = await self.health.attempt(lambda: self._redis.get(redis_key))
        if isinstance(data, Skipped):
            self._count(data)
            return None
        if data is None:
            self.stats.misses += 1
            return None
        try:
            answer, expires_at_ms = decode_answer(data)
        except (ValueError, KeyError, TypeError, IndexError):
            self.stats.corrupt += 1
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return CacheHit(answer, max(0.0, expires_at_ms / 1000 - time.time()))

    async def put(self, organisation: str, key: str, answer: CachedAnswer, ttl_seconds: float) -> None:
        redis_key = self.redis_key(organisation, key)
        ttl_ms = int(ttl_seconds * 1000)
        if ttl_ms <= 0:
            return
        data = encode_answer(answer, int(time.time() * 1000) + ttl_ms)
        done = await self.health.attempt(lambda: self._redis.set(redis_key, data, px=ttl_ms))
        if isinstance(done, Skipped):
            self._count(done)
        else:
            self.stats.puts += 1

    async def aclose(self) -> None:
        """The client belongs to whoever made it; nothing of ours to close."""

    def _count(self, outcome: Skipped) -> None:
        if outcome is Skipped.SKIPPED:
            self.stats.skipped += 1
        else:
            self.stats.errors += 1


# Two levels -------------------------------------------------------------------


class TwoLevelCache:
    """Reads L1, then L2, filling L1 on an L2 hit for no longer than the entry
    has left in L2 (nor longer than `l1_max_ttl_seconds`, which bounds how
    stale a replica's copy can be); writes both."""

    def __init__(self, l1: InProcessResponseCache, l2: ResponseCache, *, l1_max_ttl_seconds: float = 300.0) -> None:
        self.l1 = l1
        self.l2 = l2
        self._l1_max_ttl = l1_max_ttl_seconds
        # Outcome of the whole lookup; each level keeps its own stats too.
        self.stats = CacheStats()

    @property
    def healthy(self) -> bool:
        return self.l2.healthy

    async def get(self, organisation: str, key: str) -> CachedAnswer | None:
        hit = await self.lookup(organisation, key)
        return None if hit is None else hit.answer

    async def lookup(self, organisation: str, key: str) -> CacheHit | None:
        hit = self.l1.lookup_now(organisation, key)
        if hit is None:
            hit = await self.l2.lookup(organisation, key)
            if hit is not None:
                self.l1.put_now(organisation, key, hit.answer, min(hit.ttl_seconds, self._l1_max_ttl))
        if hit is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return hit

    async def put(self, organisation: str, key: str, answer: CachedAnswer, ttl_seconds: float) -> None:
        self.l1.put_now(organisation, key, answer, min(ttl_seconds, self._l1_max_ttl))
        await self.l2.put(organisation, key, answer, ttl_seconds)
        self.stats.puts += 1

    async def aclose(self) -> None:
        await self.l1.aclose()
        await self.l2.aclose()
