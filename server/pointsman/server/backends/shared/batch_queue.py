"""Batch jobs on Redis Streams, shared by every replica and `pointsman worker`.

Keys (all under the prefix; an organisation is one escaped key segment):

- `batch:jobs`: one stream of runnable items for every batch, read by the
  consumer group `workers`. An entry carries the batch, the caller, the
  attempt number and the item (opaque bytes). Acknowledged entries are deleted.
- `batch:{org}:{id}`: the batch's hash (caller, total, counts, times, max_concurrency).
- `batch:{org}:{id}:todo`: items not yet runnable. A batch has at most
  `max_concurrency` entries in the jobs stream; finishing one moves the next
  item from here to the stream, so the bound holds across every worker.
- `batch:{org}:{id}:results`: one entry per finished item (opaque bytes), read by
  watchers; an item cancelled before it ran is recorded as the item itself.
- `batch:dead`: items that ran out of attempts, for operators (bounded).
- `batch:{org}:index`: the organisation's batch ids by create time, for
  listing; trimmed to the retention period whenever a batch is created.

Finishing, retrying and releasing an entry are single Lua scripts that start
with XACK and do nothing when it acknowledged nothing: an entry that another
worker reclaimed, or that finished already, is never counted twice.
Cancelling moves the batch's `todo` items to its results at once, in one
script; entries already in the jobs stream are finished as cancelled by the
worker that takes them, without running; items already running finish.
A batch's keys expire `ttl_seconds` after its last progress."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio import Redis

from ...domain.batches.ports import CancelledItem, Job
from ...domain.batches.runner import BatchCursor, BatchProgress, batch_already_done, batch_not_found
from ...domain.errors import Unavailable
from ...domain.ports.stores import require_organisation
from .redis_health import DEFAULT_PREFIX, REDIS_ERRORS, RedisHealth, Skipped, key_segment

log = logging.getLogger(__name__)

T = TypeVar("T")

GROUP = "workers"
BATCH_TTL_SECONDS = 7 * 24 * 3600
DEAD_LETTER_MAX_ENTRIES = 10_000
# How long one blocking read waits; the blocking client's socket timeout is longer.
BLOCK_MS = 1000
# A watcher that cannot read for this long ends with UNAVAILABLE.
WATCH_OUTAGE_SECONDS = 10.0


# KEYS: jobs, meta, results, todo, dead
# ARGV: group, entry id, result, "succeeded"|"failed", now ms, ttl ms,
#       dead-letter custom id ("" for none), attempts, error, item, dead-letter max length
_FINISH = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('XADD', KEYS[3], '*', 'r', ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
local m = redis.call('HMGET', KEYS[2], 'organisation', 'id', 'principal', 'request_id', 'total', 'succeeded', 'failed',
  'cancelled')
local nxt = redis.call('LPOP', KEYS[4])
if nxt then
  redis.call('XADD', KEYS[1], '*', 'o', m[1], 'i', m[2], 'u', m[3], 'r', m[4], 'a', '1', 'p', nxt)
end
local outcome = 1
if tonumber(m[6]) + tonumber(m[7]) + tonumber(m[8] or 0) >= tonumber(m[5]) then
  redis.call('HSET', KEYS[2], 'done_ms', ARGV[5])
  outcome = 2
end
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[6]) end
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[11], '*', 'o', m[1], 'i', m[2], 'c', ARGV[7],
    'a', ARGV[8], 'e', ARGV[9], 't', ARGV[5], 'p', ARGV[10])
  redis.call('PEXPIRE', KEYS[5], ARGV[6])
end
return outcome
"""

# KEYS: meta, todo, results; ARGV: now ms, ttl ms
# -1: no such batch; 0: done already; 1: cancelled now; 2: cancelled before
_CANCEL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], 'cancel_ms') == 1 then return 2 end
if redis.call('HEXISTS', KEYS[1], 'done_ms') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'cancel_ms', ARGV[1])
local items = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
for _, item in ipairs(items) do redis.call('XADD', KEYS[3], '*', 'x', item) end
redis.call('HINCRBY', KEYS[1], 'cancelled', #items)
local m = redis.call('HMGET', KEYS[1], 'total', 'succeeded', 'failed', 'cancelled')
if tonumber(m[2]) + tonumber(m[3]) + tonumber(m[4]) >= tonumber(m[1]) then
  redis.call('HSET', KEYS[1], 'done_ms', ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 1
"""

# KEYS: jobs, meta; ARGV: group, entry id, organisation, batch id, principal, request id, attempt, item
_REQUEUE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('XADD', KEYS[1], '*', 'o', ARGV[3], 'i', ARGV[4], 'u', ARGV[5], 'r', ARGV[6], 'a', ARGV[7], 'p', ARGV[8])
return 1
"""


_PROGRESS = ["total", "succeeded", "failed", "cancelled", "create_ms", "cancel_ms"]


def _progress(organisation: str, batch_id: str, values: list[Any]) -> BatchProgress | None:
    """A batch's progress from its hash's `_PROGRESS` fields; None once it expired."""
    total, succeeded, failed, cancelled, create_ms, cancel_ms = values
    if total is None:
        return None
    return BatchProgress(
        batch_id,
        organisation,
        int(total),
        int(succeeded),
        int(failed),
        datetime.fromtimestamp(int(create_ms) / 1000, UTC),
        int(cancelled or 0),
        cancel_ms is not None,
    )


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _jobs(entries: Any) -> list[Job]:
    """Jobs from stream entries, `[(id, {field: value}), ...]`; entries
    deleted meanwhile come without fields and are skipped."""
    return [_job(entry_id, fields) for entry_id, fields in entries if fields]


def _job(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Job:
    return Job(
        _text(entry_id),
        _text(fields[b"o"]),
        _text(fields[b"i"]),
        _text(fields.get(b"u")),
        _text(fields.get(b"r")),
        int(fields[b"a"]),
        fields[b"p"],
    )


class RedisBatchQueue:
    """`client` (the shared one, short timeouts) for plain commands;
    `blocking` (owned: closed by `aclose`) for XREAD and XREADGROUP BLOCK,
    whose socket timeout must outlast `BLOCK_MS`."""

    def __init__(
        self,
        client: Redis,
        blocking: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        health: RedisHealth | None = None,
        ttl_seconds: float = BATCH_TTL_SECONDS,
    ) -> None:
        self._redis = client
        self._blocking = blocking
        self._prefix = f"{prefix}batch:"
        self.jobs_key = f"{self._prefix}jobs"
        self.dead_key = f"{self._prefix}dead"
        self._ttl_ms = max(1, int(ttl_seconds * 1000))
        self.health = health if health is not None else RedisHealth()
        self._finish = client.register_script(_FINISH)
        self._requeue = client.register_script(_REQUEUE)
        self._cancel = client.register_script(_CANCEL)

    def batch_key(self, organisation: str, batch_id: str) -> str:
        return f"{self._prefix}{key_segment(require_organisation(organisation))}:{batch_id}"

    def index_key(self, organisation: str) -> str:
        # Batch ids are hex, so this never names a batch.
        return self.batch_key(organisation, "index")

    async def ensure_group(self) -> None:
        """Creates the jobs stream and its consumer group if missing. From id 0:
        items added before the group existed are worked too."""
        try:
            await self._redis.xgroup_create(self.jobs_key, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise self._unavailable() from error
        except REDIS_ERRORS as error:
            self.health.failed(error)
            raise self._unavailable() from error

    # -- the caller's side --------------------------------------------------

    async def create(
        self, organisation: str, principal: str, request_id: str, items: Sequence[bytes], max_concurrency: int
    ) -> BatchProgress:
        batch_id = secrets.token_hex(8)
        key = self.batch_key(organisation, batch_id)
        create_ms = int(time.time() * 1000)  # what `progress` reads back: milliseconds
        runnable = max(1, max_concurrency)
        job: dict[Any, Any] = {"o": organisation, "i": batch_id, "u": principal, "r": request_id, "a": 1}

        async def write() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    key,
                    mapping={
                        "organisation": organisation,
                        "id": batch_id,
                        "principal": principal,
                        "request_id": request_id,
                        "total": len(items),
                        "succeeded": 0,
                        "failed": 0,
                        "max_concurrency": runnable,
                        "create_ms": create_ms,
                    },
                )
                pipe.pexpire(key, self._ttl_ms)
                for item in items[:runnable]:
                    pipe.xadd(self.jobs_key, {**job, "p": item})
                if len(items) > runnable:
                    pipe.rpush(f"{key}:todo", *items[runnable:])
                    pipe.pexpire(f"{key}:todo", self._ttl_ms)
                index = self.index_key(organisation)
                pipe.zadd(index, {batch_id: create_ms})
                pipe.zremrangebyscore(index, "-inf", f"({create_ms - self._ttl_ms}")
                pipe.pexpire(index, self._ttl_ms)
                await pipe.execute()

        await self._call(write)
        return BatchProgress(batch_id, organisation, len(items), 0, 0, datetime.fromtimestamp(create_ms / 1000, UTC))

    async def progress(self, organisation: str, batch_id: str) -> BatchProgress:
        """Raises NotFound for an unknown or expired id, or another organisation's."""
        key = self.batch_key(organisation, batch_id)
        progress = _progress(organisation, batch_id, await self._call_any(lambda: self._redis.hmget(key, _PROGRESS)))
        if progress is None:
            raise batch_not_found(batch_id)
        return progress

    async def list_batches(self, organisation: str, limit: int, before: BatchCursor | None) -> list[BatchProgress]:
        """Up to `limit` of the organisation's batches, newest first (ties by
        id), those after `before` only. Batches that expired meanwhile are
        left out, and dropped from the index."""
        index = self.index_key(organisation)
        skip, highest = 0, "+inf"
        if before is not None:
            score, last_id = before
            highest = str(score)
            # Entries with the cursor's own time come by id, descending: skip those not after it.
            ties = await self._call_any(lambda: self._redis.zrevrangebyscore(index, score, score))
            skip = sum(1 for member in ties if _text(member) >= last_id)
        ids = [
            _text(member)
            for member in await self._call_any(
                lambda: self._redis.zrevrangebyscore(index, highest, "-inf", start=skip, num=limit)
            )
        ]
        if not ids:
            return []

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for batch_id in ids:
                    pipe.hmget(self.batch_key(organisation, batch_id), _PROGRESS)
                return await pipe.execute()

        replies = await self._call(read)
        found = [_progress(organisation, batch_id, values) for batch_id, values in zip(ids, replies, strict=True)]
        gone = [batch_id for batch_id, progress in zip(ids, found, strict=True) if progress is None]
        if gone:
            await self._call_any(lambda: self._redis.zrem(index, *gone))
        return [progress for progress in found if progress is not None]

    async def cancel(self, organisation: str, batch_id: str) -> BatchProgress:
        """Records the cancellation and moves the items no worker has yet to
        the results, at once. Raises NotFound for an unknown batch, and
        FailedPrecondition when the batch was done before."""
        key = self.batch_key(organisation, batch_id)
        outcome = await self._call(
            lambda: self._cancel(
                keys=[key, f"{key}:todo", f"{key}:results"], args=[int(time.time() * 1000), self._ttl_ms]
            )
        )
        if int(outcome) == -1:
            raise batch_not_found(batch_id)
        if int(outcome) == 0:
            raise batch_already_done(batch_id)
        return await self.progress(organisation, batch_id)

    async def results(self, organisation: str, batch_id: str) -> AsyncIterator[bytes | CancelledItem]:
        """Every result, those already there first, then each as it is
        written; ends after the batch's last."""
        total = (await self.progress(organisation, batch_id)).total
        key = f"{self.batch_key(organisation, batch_id)}:results"
        last, seen = "0-0", 0
        failing_since: float | None = None
        while seen < total:
            try:
                reply: Any = await self._blocking.xread({key: last}, count=256, block=BLOCK_MS)
            except REDIS_ERRORS as error:
                # A busy blocking pool or a blip: try again for a while.
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > WATCH_OUTAGE_SECONDS:
                    raise self._unavailable() from error
                await asyncio.sleep(random.uniform(0.1, 0.5))
                continue
            failing_since = None
            if not reply:
                await self.progress(organisation, batch_id)  # still there? (NotFound once expired)
                continue
            for entry_id, fields in reply[0][1]:
                last = _text(entry_id)
                seen += 1
                yield fields[b"r"] if b"r" in fields else CancelledItem(fields[b"x"])

    # -- the worker's side --------------------------------------------------

    async def take(self, consumer: str, count: int) -> list[Job]:
        """Up to `count` new entries for `consumer`, waiting up to BLOCK_MS."""
        try:
            reply: Any = await self._blocking.xreadgroup(
                GROUP, consumer, {self.jobs_key: ">"}, count=count, block=BLOCK_MS
            )
        except redis.exceptions.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise self._unavailable() from error
            await self.ensure_group()  # Redis lost the stream (restart without persistence, FLUSHALL)
            return []
        except REDIS_ERRORS as error:
            raise self._unavailable() from error
        return await self._marked_cancelled(_jobs(reply[0][1])) if reply else []

    async def _marked_cancelled(self, jobs: list[Job]) -> list[Job]:
        """The jobs, those of cancelled batches marked: one round trip."""
        if not jobs:
            return jobs
        keys = list(dict.fromkeys(self.batch_key(job.organisation, job.batch_id) for job in jobs))

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hexists(key, "cancel_ms")
                return await pipe.execute()

        cancelled = {key for key, flag in zip(keys, await self._call(read), strict=True) if flag}
        if not cancelled:
            return jobs
        return [
            replace(job, batch_cancelled=True) if self.batch_key(job.organisation, job.batch_id) in cancelled else job
            for job in jobs
        ]

    async def finish(
        self,
        job: Job,
        result: bytes,
        *,
        succeeded: bool,
        cancelled: bool = False,
        dead_letter: tuple[str, str] | None = None,
    ) -> int:
        """Records the result, counts it (as succeeded, failed, or cancelled:
        never ran) and acknowledges the entry, at once; `dead_letter` (custom
        id, error) also files the item under `batch:dead`.
        1 when recorded, 2 when that completed the batch; 0 when the entry was
        no longer this worker's to finish, -1 when the batch has expired."""
        key = self.batch_key(job.organisation, job.batch_id)
        custom_id, error = dead_letter or ("", "")
        done = await self._call(
            lambda: self._finish(
                keys=[self.jobs_key, key, f"{key}:results", f"{key}:todo", self.dead_key],
                args=[
                    GROUP,
                    job.entry_id,
                    result,
                    "cancelled" if cancelled else "succeeded" if succeeded else "failed",
                    int(time.time() * 1000),
                    self._ttl_ms,
                    custom_id,
                    job.attempt,
                    error,
                    job.payload,
                    DEAD_LETTER_MAX_ENTRIES,
                ],
            )
        )
        return int(done)

    async def requeue(self, job: Job, attempt: int) -> bool:
        """Acknowledges the entry and adds the item again as attempt `attempt`
        (the same number to release it uncounted, one more to retry it)."""
        key = self.batch_key(job.organisation, job.batch_id)
        done = await self._call(
            lambda: self._requeue(
                keys=[self.jobs_key, key],
                args=[
                    GROUP,
                    job.entry_id,
                    job.organisation,
                    job.batch_id,
                    job.principal,
                    job.request_id,
                    attempt,
                    job.payload,
                ],
            )
        )
        return int(done) == 1

    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Resets the idle time of entries this worker is still running, so
        that nobody reclaims them (JUSTID: not counted as a delivery)."""
        if entry_ids:
            await self._call(
                lambda: self._redis.xclaim(self.jobs_key, GROUP, consumer, 0, list(entry_ids), justid=True)
            )

    async def reclaim(self, consumer: str, min_idle_seconds: float, count: int = 100) -> list[Job]:
        """Entries idle longer than `min_idle_seconds` (their worker stopped
        or lost them), now owned by `consumer`."""
        min_idle_ms = int(min_idle_seconds * 1000)
        reply = await self._call_any(
            lambda: self._redis.xautoclaim(self.jobs_key, GROUP, consumer, min_idle_ms, "0-0", count=count)
        )
        return _jobs(reply[1])

    async def pending(self, consumer: str, count: int = 1000) -> list[Job]:
        """The entries delivered to `consumer` and not yet acknowledged."""
        rows = await self._call_any(
            lambda: self._redis.xpending_range(self.jobs_key, GROUP, "-", "+", count, consumername=consumer)
        )
        if not rows:
            return []
        ids = [row["message_id"] for row in rows]
        return _jobs(await self._call_any(lambda: self._redis.xclaim(self.jobs_key, GROUP, consumer, 0, ids)))

    async def create_consumer(self, consumer: str) -> None:
        """Lists `consumer` in the group (XINFO CONSUMERS) before its first delivery."""
        await self._call(lambda: self._redis.xgroup_createconsumer(self.jobs_key, GROUP, consumer))

    async def delete_consumer(self, consumer: str) -> None:
        await self._call(lambda: self._redis.xgroup_delconsumer(self.jobs_key, GROUP, consumer))

    async def aclose(self) -> None:
        await self._blocking.aclose()

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        result = await self.health.attempt(call)
        if isinstance(result, Skipped):
            raise self._unavailable()
        return result

    async def _call_any(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """For replies whose redis-py types are too loose to be useful."""
        return await self._call(call)

    @staticmethod
    def _unavailable() -> Unavailable:
        return Unavailable(
            "the batch queue is unavailable right now", reason="BATCH_QUEUE_UNAVAILABLE", retry_after_seconds=1.0
        )
