"""What batches need from a shared queue (backends/shared/batch_queue.py
implements it on Redis Streams) and from whoever runs one queued item
(transport/batches.py, which reads and writes the contract's own messages)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import DomainError
from .runner import BatchCursor, BatchProgress


@dataclass(frozen=True, slots=True)
class Job:
    """One delivery of one item to one worker."""

    entry_id: str
    organisation: str
    batch_id: str
    principal: str
    request_id: str
    attempt: int  # 1 for the first run
    payload: bytes
    batch_cancelled: bool = False  # as of when it was taken: finish it as cancelled, do not run it


@dataclass(frozen=True, slots=True)
class CancelledItem:
    """A result entry for an item that never ran: the item as submitted."""

    item: bytes


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    custom_id: str
    result: bytes  # an encoded result: the answer, or the error
    error: DomainError | None = None


class ItemRunner(Protocol):
    """Runs one queued item as the caller who submitted its batch."""

    async def run(self, job: Job) -> ItemOutcome: ...

    def cancelled(self, payload: bytes) -> ItemOutcome:
        """The result of an item whose batch was cancelled before it ran."""
        ...

    def failure(self, payload: bytes, error: DomainError) -> ItemOutcome: ...


class BatchQueue(Protocol):
    """Batches queued for every replica and worker. Items and results are
    opaque bytes. Raises `Unavailable` when the queue cannot be reached."""

    async def ensure_group(self) -> None: ...

    async def create(
        self, organisation: str, principal: str, request_id: str, items: Sequence[bytes], max_concurrency: int
    ) -> BatchProgress: ...

    async def progress(self, organisation: str, batch_id: str) -> BatchProgress: ...
    async def list_batches(self, organisation: str, limit: int, before: BatchCursor | None) -> list[BatchProgress]: ...
    async def cancel(self, organisation: str, batch_id: str) -> BatchProgress: ...

    def results(self, organisation: str, batch_id: str) -> AsyncIterator[bytes | CancelledItem]:
        """Every result, those already done first; ends when the batch is done."""
        ...

    async def take(self, consumer: str, count: int) -> list[Job]: ...

    async def finish(
        self,
        job: Job,
        result: bytes,
        *,
        succeeded: bool,
        cancelled: bool = False,
        dead_letter: tuple[str, str] | None = None,
    ) -> int:
        """Records the result and acknowledges the entry: 1 when recorded, 2
        when that completed the batch; 0 when the entry was no longer this
        worker's to finish, -1 when the batch has expired."""
        ...

    async def requeue(self, job: Job, attempt: int) -> bool: ...
    async def touch(self, consumer: str, entry_ids: Sequence[str]) -> None: ...
    async def reclaim(self, consumer: str, min_idle_seconds: float, count: int = 100) -> list[Job]: ...
    async def pending(self, consumer: str, count: int = 1000) -> list[Job]: ...
    async def create_consumer(self, consumer: str) -> None: ...
    async def delete_consumer(self, consumer: str) -> None: ...
    async def aclose(self) -> None: ...
