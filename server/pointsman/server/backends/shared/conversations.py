"""Conversation history for Converse behind one async interface: the embedded
in-process store, or Redis so that any replica can continue any conversation.

Unlike the cache, history cannot be guessed at: when Redis is unreachable,
`load` and `save` raise `Unavailable` (retryable) rather than pretend the
conversation does not exist or silently lose a turn."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable

from redis.asyncio import Redis

from ...domain.chat import Message
from ...domain.errors import Unavailable
from ...domain.ports.conversations import conversation_not_found
from ...domain.ports.stores import require_organisation
from ..stores.codec import dataclass_from_plain, dataclass_to_plain
from .conversation_store import ConversationStore
from .redis_health import DEFAULT_PREFIX, RedisHealth, Skipped, key_segment


class InProcessConversations:
    """The domain's in-process LRU store, behind the async interface."""

    def __init__(self, store: ConversationStore | None = None) -> None:
        self.store = store if store is not None else ConversationStore()

    @property
    def healthy(self) -> bool:
        return True

    def new_id(self) -> str:
        return self.store.new_id()

    async def load(self, organisation: str, conversation_id: str) -> list[Message]:
        return self.store.load(require_organisation(organisation), conversation_id)

    async def save(self, organisation: str, conversation_id: str, history: list[Message]) -> None:
        self.store.save(require_organisation(organisation), conversation_id, history)

    async def delete(self, organisation: str, conversation_id: str) -> None:
        self.store.delete(require_organisation(organisation), conversation_id)

    async def count(self, organisation: str) -> int:
        return self.store.count(require_organisation(organisation))

    def __len__(self) -> int:
        return len(self.store)


class RedisConversations:
    """One key per conversation, `{prefix}conv:{organisation}:{id}`, holding
    the history as JSON and expiring `ttl_seconds` after the last save.

    For `count`, each organisation also has a sorted set of its conversation
    ids scored by expiry (wall-clock milliseconds), `{prefix}convs:{organisation}`:
    counting trims the expired ids and reads the size, O(log n) rather than a
    SCAN over every key."""

    def __init__(
        self,
        client: Redis,
        *,
        ttl_seconds: float = 24 * 3600,
        prefix: str = DEFAULT_PREFIX,
        health: RedisHealth | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self._prefix = f"{prefix}conv:"
        self._index_prefix = f"{prefix}convs:"
        self._clock = clock
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self.health = health if health is not None else RedisHealth()
        self.errors = 0

    @property
    def healthy(self) -> bool:
        return self.health.healthy

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(12)

    def redis_key(self, organisation: str, conversation_id: str) -> str:
        return f"{self._prefix}{key_segment(require_organisation(organisation))}:{conversation_id}"

    def index_key(self, organisation: str) -> str:
        return f"{self._index_prefix}{key_segment(require_organisation(organisation))}"

    async def load(self, organisation: str, conversation_id: str) -> list[Message]:
        redis_key = self.redis_key(organisation, conversation_id)
        data = await self.health.attempt(lambda: self._redis.get(redis_key))
        if isinstance(data, Skipped):
            raise self._unavailable()
        if data is None:
            raise conversation_not_found(conversation_id)
        return [dataclass_from_plain(Message, m) for m in json.loads(data)]

    async def save(self, organisation: str, conversation_id: str, history: list[Message]) -> None:
        redis_key = self.redis_key(organisation, conversation_id)
        data = json.dumps([dataclass_to_plain(m) for m in history], ensure_ascii=False, separators=(",", ":"))
        index_key = self.index_key(organisation)
        now_ms = self._now_ms()

        async def write() -> object:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(redis_key, data, px=self._ttl_ms)
                pipe.zadd(index_key, {conversation_id: now_ms + self._ttl_ms})
                # Trimmed here too, so a busy organisation's index holds only live ids.
                pipe.zremrangebyscore(index_key, "-inf", now_ms)
                pipe.pexpire(index_key, self._ttl_ms)  # gone once its last conversation is
                return await pipe.execute()

        done = await self.health.attempt(write)
        if isinstance(done, Skipped):
            raise self._unavailable()

    async def delete(self, organisation: str, conversation_id: str) -> None:
        redis_key = self.redis_key(organisation, conversation_id)
        index_key = self.index_key(organisation)

        async def remove() -> list[int]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(redis_key)
                pipe.zrem(index_key, conversation_id)
                result: list[int] = await pipe.execute()
                return result

        removed = await self.health.attempt(remove)
        if isinstance(removed, Skipped):
            raise self._unavailable()
        if not removed[0]:
            raise conversation_not_found(conversation_id)

    async def count(self, organisation: str) -> int:
        index_key = self.index_key(organisation)
        now_ms = self._now_ms()

        async def trim_and_count() -> list[int]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(index_key, "-inf", now_ms)
                pipe.zcard(index_key)
                result: list[int] = await pipe.execute()
                return result

        counted = await self.health.attempt(trim_and_count)
        if isinstance(counted, Skipped):
            # As for history: a count of 0 would be a guess, not a fact.
            raise self._unavailable()
        return int(counted[1])

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _unavailable(self) -> Unavailable:
        self.errors += 1
        return Unavailable(
            "conversation history is unavailable right now", reason="CONVERSATIONS_UNAVAILABLE", retry_after_seconds=1.0
        )
