"""A bounded buffer in front of a batch writer (decisions, request log).

Callers never wait on the database: `add` is synchronous and O(1). A
background task writes batches; while the database is down, items wait in the
buffer and the batch is retried with backoff. A batch the database refuses
for another reason is split to find the records it refuses on their own
(a NUL byte PostgreSQL cannot store, say): those are set aside, counted and
logged, and the rest is written, so one bad record never stops the others.
The buffer never grows past its capacity: an item that does not fit is
dropped and counted, and a log line says how many were dropped. `close`
writes what is left."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from .stores.outages import is_database_outage

T = TypeVar("T")
log = logging.getLogger(__name__)

_MAX_BACKOFF_SECONDS = 5.0
_DROP_LOG_INTERVAL_SECONDS = 10.0


def worth_retrying(error: BaseException) -> bool:
    """The database is down, or it rolled the batch back for a reason that
    passes (SQLSTATE class 40: a deadlock, a serialization failure)."""
    sqlstate = getattr(error, "sqlstate", None)
    return is_database_outage(error) or (isinstance(sqlstate, str) and sqlstate.startswith("40"))


class WriteBuffer(Generic[T]):
    def __init__(
        self,
        write_many: Callable[[list[T]], Awaitable[None]],
        *,
        name: str,
        capacity: int = 100_000,
        batch_size: int = 500,
        flush_interval_seconds: float = 0.05,
        is_transient: Callable[[BaseException], bool] = worth_retrying,
    ) -> None:
        self._write_many = write_many
        self._is_transient = is_transient
        self.name = name
        self._capacity = capacity
        self._batch_size = batch_size
        self._interval = flush_interval_seconds
        self._items: deque[T] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.dropped = 0
        self.rejected = 0  # records the database refused on their own, set aside
        self.failures = 0
        self.healthy = True
        self._dropped_unlogged = 0
        self._last_drop_log = 0.0
        self._appended = 0
        self._progress = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._items)

    def add(self, item: T) -> None:
        if len(self._items) >= self._capacity:
            self.dropped += 1
            self._dropped_unlogged += 1
            self._log_drops()
            return
        self._items.append(item)
        self._appended += 1
        if len(self._items) >= self._batch_size:
            self._wakeup.set()

    async def flushed(self, timeout_seconds: float = 1.0) -> None:
        """Waits until what was added before this call is written, so a
        reader sees this process's own writes. Returns at once while the
        database is failing (a read must not wait on an outage), and after the
        timeout at most."""
        target = self._appended
        deadline = time.monotonic() + timeout_seconds
        while self._appended - len(self._items) < target:
            if not self.healthy or self._task is None:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.set()
            self._progress.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._progress.wait()
            except TimeoutError:
                return

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"write-buffer-{self.name}")

    async def close(self, timeout_seconds: float = 5.0) -> None:
        """Writes what is buffered, trying until the timeout; then stops."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_seconds)
            except TimeoutError:
                self._task.cancel()
                lost = len(self._items)
                if lost:
                    self.dropped += lost
                    log.error("%s: %d records could not be written before shutdown", self.name, lost)
            self._task = None
        self._log_drops(force=True)

    async def _run(self) -> None:
        backoff = self._interval
        while True:
            if not self._items:
                if self._closing:
                    return
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(self._interval):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass
                continue
            batch = [self._items[i] for i in range(min(self._batch_size, len(self._items)))]
            try:
                refused = await self._write(batch)
            except Exception as error:  # the database is down (or the batch met a deadlock)
                self.failures += 1
                if self.healthy:
                    log.warning("%s: write failed (%s); %d records wait", self.name, type(error).__name__, self.pending)
                self.healthy = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)
                continue
            for _ in batch:
                self._items.popleft()
            self.written += len(batch) - refused
            self.rejected += refused
            self._progress.set()
            if not self.healthy:
                log.info("%s: writing again; %d records wait", self.name, self.pending)
            self.healthy = True
            backoff = self._interval
            if len(self._items) < self._batch_size and not self._closing:
                # Let a batch gather instead of writing one record per round
                # trip; a full batch, a reader (`flushed`) or `close` cut it short.
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(self._interval):
                        await self._wakeup.wait()
                except TimeoutError:
                    pass

    async def _write(self, batch: list[T]) -> int:
        """Writes the batch, or all of it the database accepts; how many
        records it refused. Raises while the database is down. Writes are
        idempotent, so records written before a failure may be written again."""
        try:
            await self._write_many(batch)
            return 0
        except Exception as error:
            if self._is_transient(error):
                raise
            refused = await self._write_accepted(batch)
            log.error(
                "%s: the database refused %d of %d records (%s); wrote the others and set these aside",
                self.name,
                len(refused),
                len(batch),
                type(error).__name__,
            )
            return len(refused)

    async def _write_accepted(self, records: list[T]) -> list[T]:
        """Halves a refused batch until each part is written or is one record
        the database refuses alone; those records. About 2 log2(n) writes
        per bad record."""
        if len(records) == 1:
            return records
        refused: list[T] = []
        middle = len(records) // 2
        for part in (records[:middle], records[middle:]):
            try:
                await self._write_many(part)
            except Exception as error:
                if self._is_transient(error):
                    raise
                refused += await self._write_accepted(part)
        return refused

    def _log_drops(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._dropped_unlogged and (force or now - self._last_drop_log >= _DROP_LOG_INTERVAL_SECONDS):
            log.error(
                "%s: buffer full (%d records); dropped %d records (%d in total)",
                self.name,
                self._capacity,
                self._dropped_unlogged,
                self.dropped,
            )
            self._dropped_unlogged = 0
            self._last_drop_log = now
