"""Batch jobs: what a batch is and how far it got, when a failed item is worth
another attempt, and the in-process runner (the embedded default: many chat
requests, bounded concurrency, results kept for watchers, encoded, within a
bound on the bytes held per organisation and in total). A failed item
records its error; the batch goes on. Cancelling a batch gives each item not
yet started a CANCELLED result at once; items already running finish. With Redis, `backends/shared/batch_queue.py`
and `pointsman worker` run batches instead (docs/batches.md)."""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..caller import Caller
from ..chat import ChatRequest
from ..errors import Cancelled, DomainError, FailedPrecondition, NotFound, RateLimited, Unavailable
from ..orchestrator import CompletedAnswer, Orchestrator

log = logging.getLogger(__name__)

MAX_ITEMS = 10_000
MAX_CONCURRENCY = 64
DEFAULT_CONCURRENCY = 4
# The longest wait before another attempt at a failed item.
MAX_RETRY_DELAY_SECONDS = 60.0
# What Python holds beyond the encoded bytes: for an item waiting to run, its
# parsed request (measured with tracemalloc: about 1.2 KB for a one-message
# request); for a result, the bytes object and its list slot.
ITEM_OVERHEAD_BYTES = 1536
RESULT_OVERHEAD_BYTES = 64


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Bytes the in-process runner may hold for batches (items waiting to run
    and results), in total and per organisation; how long a finished batch's
    results are kept. docs/batches.md says what happens past them."""

    max_bytes: int = 256 * 1024 * 1024
    max_bytes_per_organisation: int = 64 * 1024 * 1024
    retention_seconds: float = 3600.0


def item_bytes(item: BatchItem) -> int:
    return len(item.encoded) + ITEM_OVERHEAD_BYTES


def batches_full(scope: str, held: int, limit: int, retry_after_seconds: float) -> RateLimited:
    error = RateLimited(
        f"batches of this {scope} hold {held} bytes of items and results and the limit is {limit}: "
        "retry once running batches finish or finished ones expire",
        retry_after_seconds=retry_after_seconds,
        metadata={"scope": scope, "held_bytes": str(held), "limit_bytes": str(limit)},
    )
    error.reason = "BATCHES_FULL"
    return error


@dataclass(frozen=True, slots=True)
class BatchItem:
    custom_id: str
    request: ChatRequest
    # The item as the client sent it (its protobuf encoding), for queues that
    # carry it to another process; opaque here.
    encoded: bytes = b""


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """A batch's counts at one moment."""

    id: str
    organisation: str
    total: int
    succeeded: int
    failed: int
    create_time: datetime
    cancelled: int = 0  # items that never ran because the batch was cancelled
    cancel_requested: bool = False

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    @property
    def done(self) -> bool:
        """Every item has a result."""
        return self.succeeded + self.failed + self.cancelled >= self.total

    @property
    def cursor(self) -> BatchCursor:
        """Where the batch sits in a listing: newest first, then by id."""
        return create_ms(self.create_time), self.id


# (create time in epoch milliseconds, id): listings run from high to low.
BatchCursor = tuple[int, str]


def create_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def batch_not_found(batch_id: str) -> NotFound:
    return NotFound(f"batch 'batches/{batch_id}' does not exist", reason="BATCH_NOT_FOUND")


def batch_already_done(batch_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"batch 'batches/{batch_id}' is done already: there is nothing left to cancel", reason="BATCH_DONE"
    )


def item_cancelled() -> Cancelled:
    return Cancelled("the batch was cancelled before this item ran", reason="BATCH_CANCELLED")


def retry_delay(error: DomainError, attempt: int, base_seconds: float) -> float | None:
    """How long to wait before another attempt at an item that failed with
    `error` on attempt `attempt` (1-based); None when another attempt cannot
    help (invalid request, blocked content, unknown model, ...). Exponential
    with full jitter, never sooner than the upstream asked."""
    if not isinstance(error, Unavailable | RateLimited):
        return None
    backoff = random.uniform(0, min(MAX_RETRY_DELAY_SECONDS, base_seconds * 2 ** (attempt - 1)))
    return min(MAX_RETRY_DELAY_SECONDS, max(backoff, error.retry_after_seconds or 0.0))


@dataclass(frozen=True, slots=True)
class BatchResult:
    custom_id: str
    answer: CompletedAnswer | None = None
    error: DomainError | None = None


# How a result is kept: encoded (the contract's BatchResult message, from the
# transport), about a tenth of the objects it was made of.
ResultEncoder = Callable[[BatchResult], bytes]


@dataclass
class Batch:
    id: str
    organisation: str
    total: int
    create_time: datetime
    results: list[bytes] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    # Custom ids of the items no slot has taken yet, in order.
    not_started: dict[str, None] = field(default_factory=dict)
    cancel_requested: bool = False
    # Counted as results arrive, so progress (and listing) costs no walk over them.
    failed: int = 0
    cancelled: int = 0
    # Bytes counted against the limits: results, and items not finished yet.
    held_bytes: int = 0
    finish_time: float | None = None  # monotonic; set when the last result arrives

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    @property
    def done(self) -> bool:
        return len(self.results) == self.total

    def add(self, results: Iterable[BatchResult], encode: ResultEncoder) -> int:
        """Records results; call under `changed`, then notify. Returns the
        bytes the results hold."""
        added = 0
        for result in results:
            encoded = encode(result)
            self.results.append(encoded)
            added += len(encoded) + RESULT_OVERHEAD_BYTES
            if isinstance(result.error, Cancelled):
                self.cancelled += 1
            elif result.error is not None:
                self.failed += 1
        return added

    def progress(self) -> BatchProgress:
        return BatchProgress(
            self.id,
            self.organisation,
            self.total,
            len(self.results) - self.failed - self.cancelled,
            self.failed,
            self.create_time,
            self.cancelled,
            self.cancel_requested,
        )


class BatchRunner:
    """Keeps the newest `max_batches` batches, and within `limits` the bytes
    they hold: a finished batch is forgotten `retention_seconds` after it
    finished; a new batch that would take its organisation over its bound
    first displaces the organisation's oldest finished batches, and is refused
    (RESOURCE_EXHAUSTED, BATCHES_FULL) if that is not enough, or if it would
    take the server over its total."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        encode: ResultEncoder,
        limits: BatchLimits | None = None,
        max_batches: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._orchestrator = orchestrator
        self._encode = encode
        self._limits = limits or BatchLimits()
        self._clock = clock
        self._batches: OrderedDict[tuple[str, str], Batch] = OrderedDict()
        self._finished: OrderedDict[tuple[str, str], Batch] = OrderedDict()  # in the order they finished
        self._held: dict[str, int] = {}  # per organisation
        self.held_bytes = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_batches = max_batches

    def submit(self, items: list[BatchItem], max_concurrency: int, caller: Caller) -> Batch:
        self._expire()
        incoming = sum(item_bytes(item) for item in items)
        self._make_room(caller.organisation, incoming)
        batch = Batch(secrets.token_hex(8), caller.organisation, len(items), datetime.now(UTC))
        batch.not_started = dict.fromkeys(item.custom_id for item in items)
        self._batches[(caller.organisation, batch.id)] = batch
        self._hold(batch, incoming)
        self._forget_old()
        task = asyncio.create_task(self._run(batch, items, max_concurrency, caller))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return batch

    def held_by(self, organisation: str) -> int:
        return self._held.get(organisation, 0)

    def get(self, organisation: str, batch_id: str) -> Batch:
        self._expire()
        batch = self._batches.get((organisation, batch_id))
        if batch is None:
            raise batch_not_found(batch_id)
        return batch

    async def watch(self, organisation: str, batch_id: str) -> AsyncIterator[bytes]:
        """Every result, those already done first; ends when the batch is done."""
        batch = self.get(organisation, batch_id)
        sent = 0

        def more() -> bool:
            return len(batch.results) > sent or batch.done

        while True:
            async with batch.changed:
                await batch.changed.wait_for(more)
                fresh = batch.results[sent:]
            for result in fresh:
                yield result
            sent += len(fresh)
            if batch.done and sent == batch.total:
                return

    def list_batches(self, organisation: str, limit: int, before: BatchCursor | None) -> list[BatchProgress]:
        """Up to `limit` of the organisation's batches, newest first, those
        after `before` (a previous page's last cursor) only."""
        self._expire()
        mine = sorted(
            (batch.progress() for (org, _), batch in self._batches.items() if org == organisation),
            key=lambda progress: progress.cursor,
            reverse=True,
        )
        return [p for p in mine if before is None or p.cursor < before][:limit]

    async def cancel(self, organisation: str, batch_id: str) -> BatchProgress:
        """Items not yet started get a CANCELLED result now and never run;
        running ones finish. Cancelling again changes nothing; a batch that
        is done already raises FailedPrecondition."""
        batch = self.get(organisation, batch_id)
        if batch.cancel_requested:
            return batch.progress()
        if batch.done:
            raise batch_already_done(batch_id)
        batch.cancel_requested = True
        async with batch.changed:
            cancelled = [BatchResult(custom_id, error=item_cancelled()) for custom_id in batch.not_started]
            batch.not_started.clear()
            self._record(batch, cancelled)  # their items are released as their slots see them
            batch.changed.notify_all()
        return batch.progress()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _forget_old(self) -> None:
        for key, batch in list(self._finished.items()):
            if len(self._batches) <= self._max_batches:
                break
            self._forget(key, batch)

    def _hold(self, batch: Batch, delta: int) -> None:
        if self._batches.get((batch.organisation, batch.id)) is not batch:
            return  # forgotten already: what it held was released then
        batch.held_bytes += delta
        self._held[batch.organisation] = self._held.get(batch.organisation, 0) + delta
        if not self._held[batch.organisation]:
            del self._held[batch.organisation]
        self.held_bytes += delta

    def _forget(self, key: tuple[str, str], batch: Batch) -> None:
        self._hold(batch, -batch.held_bytes)
        del self._batches[key]
        del self._finished[key]

    def _expire(self) -> None:
        """Forgets finished batches past their retention, oldest first."""
        cutoff = self._clock() - self._limits.retention_seconds
        for key, batch in list(self._finished.items()):
            if batch.finish_time is None or batch.finish_time > cutoff:
                break
            self._forget(key, batch)

    def _retry_after(self, organisation: str | None) -> float:
        """Until the oldest finished batch (of `organisation`, or any) expires;
        the retention time when none has finished."""
        now = self._clock()
        for (org, _), batch in self._finished.items():
            if organisation in (None, org) and batch.finish_time is not None:
                return max(1.0, batch.finish_time + self._limits.retention_seconds - now)
        return max(1.0, self._limits.retention_seconds)

    def _make_room(self, organisation: str, incoming: int) -> None:
        limits = self._limits
        if self.held_by(organisation) + incoming > limits.max_bytes_per_organisation:
            # The organisation's own oldest finished batches make way for its new one.
            for key, batch in list(self._finished.items()):
                if self.held_by(organisation) + incoming <= limits.max_bytes_per_organisation:
                    break
                if key[0] == organisation:
                    log.info("batch %s forgotten early: its organisation's batches are at their bound", batch.name)
                    self._forget(key, batch)
            held = self.held_by(organisation)
            if held + incoming > limits.max_bytes_per_organisation:
                raise batches_full(
                    "organisation", held, limits.max_bytes_per_organisation, self._retry_after(organisation)
                )
        if self.held_bytes + incoming > limits.max_bytes:
            raise batches_full("server", self.held_bytes, limits.max_bytes, self._retry_after(None))

    def _record(self, batch: Batch, results: list[BatchResult]) -> None:
        """Adds results (under `batch.changed`) and counts their bytes."""
        self._hold(batch, batch.add(results, self._encode))
        key = (batch.organisation, batch.id)
        if batch.done and key in self._batches and key not in self._finished:
            batch.finish_time = self._clock()
            self._finished[key] = batch

    async def _run(self, batch: Batch, items: list[BatchItem], concurrency: int, caller: Caller) -> None:
        slots = asyncio.Semaphore(concurrency)

        async def run_one(item: BatchItem) -> None:
            async with slots:
                if item.custom_id not in batch.not_started:
                    # Cancelled: its result is recorded already; its item goes now.
                    self._hold(batch, -item_bytes(item))
                    return
                del batch.not_started[item.custom_id]
                item_caller = Caller(f"{caller.request_id}/{item.custom_id}", caller.organisation, caller.principal)
                try:
                    result = BatchResult(
                        item.custom_id, answer=await self._orchestrator.complete(item.request, item_caller)
                    )
                except DomainError as error:
                    result = BatchResult(item.custom_id, error=error)
                except Exception:
                    log.exception("batch item %s failed", item.custom_id)
                    result = BatchResult(item.custom_id, error=DomainError("internal error"))
            async with batch.changed:
                self._record(batch, [result])
                self._hold(batch, -item_bytes(item))
                batch.changed.notify_all()

        await asyncio.gather(*(run_one(item) for item in items))
