"""The response cache: whole answers, stored under an exact key over the
normalised request and partitioned by organisation, replayed later as a stream.

Three implementations of one interface: an in-process LRU bounded in entries
and bytes (the embedded default, and L1 in front of Redis), Redis (L2, shared
by replicas), and `TwoLevelCache` that puts the first in front of the second.
Redis errors never reach the caller: a get is a miss, a put is dropped."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from redis.asyncio import Redis

from ...domain.chat import (
    ChatRequest,
    Finish,
    FinishReason,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from ..stores.base import require_organisation
from .redis_health import DEFAULT_PREFIX, RedisHealth, Skipped, key_segment

# Part of every key: changing how requests are normalised changes this, so
# entries written under the old rules are never read under the new ones.
KEY_VERSION = "v2"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """Everything needed to replay an answer: which deployment gave it, the
    text, tool calls, usage and why it finished."""

    deployment: str
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    finish_reason: FinishReason = FinishReason.STOP

    def replay(self, chunk_chars: int = 0) -> Iterator[ProviderEvent]:
        """The answer as provider events: the text (in chunks of `chunk_chars`
        if positive, else in one delta), each tool call whole, usage, finish.
        The orchestrator frames them with Start and its own timings."""
        if self.text:
            if chunk_chars > 0:
                for start in range(0, len(self.text), chunk_chars):
                    yield TextDelta(self.text[start : start + chunk_chars])
            else:
                yield TextDelta(self.text)
        for index, call in enumerate(self.tool_calls):
            yield ToolCallDelta(index, call.id, call.name, call.arguments_json)
        if self.usage is not None:
            yield self.usage
        yield Finish(self.finish_reason)

    def approximate_size(self) -> int:
        """Bytes the entry holds, roughly (characters plus a fixed overhead):
        what the in-process cache's byte bound counts."""
        calls = sum(len(c.id) + len(c.name) + len(c.arguments_json) + 64 for c in self.tool_calls)
        return 256 + len(self.deployment) + len(self.text) + calls


class CacheHit(NamedTuple):
    answer: CachedAnswer
    ttl_seconds: float  # left before the entry expires


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
    if answer.finish_reason is not FinishReason.STOP:
        plain["f"] = answer.finish_reason.value
    return json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode()


def decode_answer(data: bytes | str) -> tuple[CachedAnswer, int]:
    """Raises ValueError (or KeyError/TypeError) on anything malformed."""
    plain = json.loads(data)
    usage = plain.get("u")
    answer = CachedAnswer(
        deployment=plain["d"],
        text=plain["t"],
        tool_calls=tuple(ToolCall(i, n, a) for i, n, a in plain.get("c", ())),
        usage=None if usage is None else Usage(int(usage[0]), int(usage[1]), len(usage) > 2 and bool(usage[2])),
        finish_reason=FinishReason(plain.get("f", FinishReason.STOP.value)),
    )
    return answer, int(plain["x"])


# The key ----------------------------------------------------------------------

# Fields of a ChatRequest, and of what it holds, that do not change the answer,
# as "Class.field": the only ones left out of the key. Every other field is in
# it, a field added later included, so forgetting to list one costs a cache
# miss, never a wrong answer (tests/test_cache_key.py walks the proto contract).
ANSWER_NEUTRAL_FIELDS = frozenset({"ChatRequest.cache_bypass", "ChatRequest.cache_ttl_seconds"})


def _as_set(values: Any) -> Any:
    return sorted(set(values))


def _json_value(text: str) -> Any:
    # Arguments that are not JSON are kept as the text they are.
    try:
        return {"json": json.loads(text)}
    except ValueError:
        return {"text": text}


# Fields compared by what they mean rather than as written: stop sequences as
# a set, JSON arguments by value (key order ignored).
_NORMALISED: dict[str, Callable[[Any], Any]] = {
    "GenerationConfig.stop": _as_set,
    "ToolCall.arguments_json": _json_value,
}


def cache_key(request: ChatRequest) -> str:
    """SHA-256 over the request as the model sees it: every field of the
    request and of the messages, tool calls, config and tools it holds, except
    those on ANSWER_NEUTRAL_FIELDS. Normalised so that requests that mean the
    same thing share a key: numbers by value (1 == 1.0), JSON objects whatever
    their key order, and `_NORMALISED`. The organisation is not part of it:
    caches partition by organisation themselves."""
    text = _KEY_ENCODER.encode([KEY_VERSION, _plain(request)])
    return hashlib.sha256(text.encode()).hexdigest()


# What json.dumps(plain, ensure_ascii=False, separators=(",", ":"),
# sort_keys=True) would build anew for every key.
_KEY_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _plain(value: Any) -> Any:
    """The value as JSON-encodable lists, dicts and scalars; a dataclass as
    the list of its key fields, in declaration order."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return int(value) if value.is_integer() else value
    if kind is list or kind is tuple:
        return [_plain(item) for item in value]
    if kind is dict:
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    fields = []
    for name, normalise in _key_fields(kind):
        field = getattr(value, name)
        if normalise is not None:
            field = normalise(field)
        # Most fields are text: no call for them (a key is made per request).
        fields.append(field if type(field) is str else _plain(field))
    return fields


_KeyFields = tuple[tuple[str, Callable[[Any], Any] | None], ...]
_KEY_FIELDS: dict[type, _KeyFields] = {}


def _key_fields(kind: type) -> _KeyFields:
    """The fields of a dataclass that are part of the key, each with its
    normaliser (None: as it is); worked out once per class."""
    fields = _KEY_FIELDS.get(kind)
    if fields is None:
        if not dataclasses.is_dataclass(kind):
            # A new kind of value in a request: say how it belongs in a key.
            raise TypeError(f"a cache key cannot hold a {kind.__name__}")
        paths = ((f"{kind.__name__}.{f.name}", f.name) for f in dataclasses.fields(kind))
        fields = tuple((name, _NORMALISED.get(path)) for path, name in paths if path not in ANSWER_NEUTRAL_FIELDS)
        _KEY_FIELDS[kind] = fields
    return fields


# The interface ----------------------------------------------------------------


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    puts: int = 0
    errors: int = 0  # Redis calls that failed (a get answered as a miss, a put dropped)
    skipped: int = 0  # Redis calls not made because Redis was known to be down
    corrupt: int = 0  # stored values that could not be read (answered as a miss)
    evictions: int = 0  # entries pushed out by the entry or byte bound


class ResponseCache(Protocol):
    stats: CacheStats

    @property
    def healthy(self) -> bool:
        """False while a backing service is unreachable (the cache then misses)."""
        ...

    async def get(self, organisation: str, key: str) -> CachedAnswer | None: ...

    async def lookup(self, organisation: str, key: str) -> CacheHit | None:
        """Like `get`, with the time the entry has left."""
        ...

    async def put(self, organisation: str, key: str, answer: CachedAnswer, ttl_seconds: float) -> None:
        """Stores for `ttl_seconds` (nothing when it is not positive)."""
        ...

    async def aclose(self) -> None: ...


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
