"""The semantic cache's shared level (domain/ports/semantic_entries.py).

Redis here has no search module, so Redis does not search: it carries entries.
One stream, `{prefix}semantic:entries`, holds every entry (trimmed to about
`max_entries`, oldest first); each replica reads it from the start when it
opens and then follows it, filing every entry in its own in-process index.
A replica that starts later thus sees the entries written before it. Expired
entries are skipped when read (the stream holds at most `max_entries` of them).
Redis errors never reach a chat call: a failed publish keeps the entry local.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from ...domain.ports.semantic_entries import SemanticRecord
from .cache import decode_answer, encode_answer
from .redis_health import DEFAULT_PREFIX

# Short enough to stay under the client's socket timeout (0.5 s).
BLOCK_MS = 250


class LocalSemanticEntries:
    """One replica alone: the cache files its own entries; nothing to hear."""

    async def publish(self, record: SemanticRecord) -> None:
        return None

    async def follow(self, heard: Callable[[SemanticRecord], None]) -> None:
        await asyncio.Event().wait()


def encode_record(record: SemanticRecord) -> dict[str, bytes]:
    meta = {
        "i": record.id,
        "o": record.organisation,
        "s": record.scope,
        "q": record.question,
        "v": base64.b64encode(record.vector).decode(),
        "t": record.saved_tokens,
        "c": record.saved_cost_usd,
    }
    return {
        "m": json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode(),
        "a": encode_answer(record.answer, int(record.expires_at * 1000)),
    }


def decode_record(fields: dict[bytes, bytes]) -> SemanticRecord:
    """Raises ValueError (or KeyError/TypeError) on anything malformed."""
    meta: dict[str, Any] = json.loads(fields[b"m"])
    answer, expires_at_ms = decode_answer(fields[b"a"])
    return SemanticRecord(
        id=str(meta["i"]),
        organisation=str(meta["o"]),
        scope=str(meta["s"]),
        question=str(meta["q"]),
        vector=base64.b64decode(meta["v"]),
        answer=answer,
        expires_at=expires_at_ms / 1000,
        saved_tokens=int(meta.get("t", 0)),
        saved_cost_usd=float(meta.get("c", 0.0)),
    )


class RedisSemanticEntries:
    def __init__(self, client: Redis, *, prefix: str = DEFAULT_PREFIX, max_entries: int = 100_000) -> None:
        self._redis = client
        self.key = f"{prefix}semantic:entries"
        self.max_entries = max_entries
        self.corrupt = 0

    async def publish(self, record: SemanticRecord) -> None:
        fields: Any = encode_record(record)
        await self._redis.xadd(self.key, fields, maxlen=self.max_entries, approximate=True)

    async def follow(self, heard: Callable[[SemanticRecord], None]) -> None:
        last = "0-0"
        while True:
            reply: Any = await self._redis.xread({self.key: last}, count=512, block=BLOCK_MS)
            if not reply:
                continue
            now = time.time()
            for entry_id, fields in reply[0][1]:
                last = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
                try:
                    record = decode_record(fields)
                except (ValueError, KeyError, TypeError):
                    self.corrupt += 1
                    continue
                if record.expires_at > now:
                    heard(record)
