"""What the batch RPCs run on: batches in this process (the embedded default),
or queued on Redis Streams for workers; and how a worker runs one queued item.
Queued items and results are the contract's own messages (`BatchItem`,
`BatchResult`), so what one version stored the next can read."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

from ..domain.batches.ports import BatchQueue, CancelledItem, ItemOutcome, Job
from ..domain.batches.runner import BatchCursor, BatchItem, BatchProgress, BatchResult, BatchRunner, item_cancelled
from ..domain.caller import Caller
from ..domain.errors import DomainError, Unavailable, ViolationCollector
from ..domain.orchestrator import Orchestrator
from . import convert
from .errors import turn_error

log = logging.getLogger(__name__)


class Batches(Protocol):
    async def start(self) -> None: ...

    async def submit(self, items: Sequence[BatchItem], max_concurrency: int, caller: Caller) -> BatchProgress: ...

    async def get(self, organisation: str, batch_id: str) -> BatchProgress:
        """Raises NotFound (BATCH_NOT_FOUND), also for another organisation's batch."""
        ...

    def watch(self, organisation: str, batch_id: str) -> AsyncIterator[pb.BatchResult]:
        """Every result, those already done first; ends when the batch is done."""
        ...

    async def list_batches(self, organisation: str, limit: int, before: BatchCursor | None) -> list[BatchProgress]:
        """Up to `limit` batches, newest first, after `before` (the cursor of
        a previous page's last batch)."""
        ...

    async def cancel(self, organisation: str, batch_id: str) -> BatchProgress:
        """Items not yet started get a CANCELLED result and never run; running
        ones finish. Idempotent; FailedPrecondition (BATCH_DONE) when every
        item had a result before."""
        ...

    async def aclose(self) -> None: ...


class BackgroundWorker(Protocol):
    def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


def encode_result(result: BatchResult) -> bytes:
    """How the in-process runner keeps a result."""
    return result_to_proto(result).SerializeToString()


def result_to_proto(result: BatchResult) -> pb.BatchResult:
    out = pb.BatchResult(custom_id=result.custom_id)
    if result.answer is not None:
        out.response.CopyFrom(convert.complete_response(result.answer))
    if result.error is not None:
        out.error.CopyFrom(turn_error(result.error))
    return out


class InProcessBatches:
    """The embedded default: `BatchRunner`, results kept in memory, encoded
    (`encode_result`)."""

    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner

    async def start(self) -> None:
        pass

    async def submit(self, items: Sequence[BatchItem], max_concurrency: int, caller: Caller) -> BatchProgress:
        return self._runner.submit(list(items), max_concurrency, caller).progress()

    async def get(self, organisation: str, batch_id: str) -> BatchProgress:
        return self._runner.get(organisation, batch_id).progress()

    async def watch(self, organisation: str, batch_id: str) -> AsyncIterator[pb.BatchResult]:
        async for result in self._runner.watch(organisation, batch_id):
            yield pb.BatchResult.FromString(result)

    async def cancel(self, organisation: str, batch_id: str) -> BatchProgress:
        return await self._runner.cancel(organisation, batch_id)

    async def list_batches(self, organisation: str, limit: int, before: BatchCursor | None) -> list[BatchProgress]:
        return self._runner.list_batches(organisation, limit, before)

    async def aclose(self) -> None:
        await self._runner.aclose()


class QueuedBatches:
    """With REDIS_URL: batches go to the shared queue, and whichever worker
    (a `pointsman worker` process, or `worker` here) runs their items."""

    def __init__(self, queue: BatchQueue, worker: BackgroundWorker | None = None) -> None:
        self.queue = queue
        self.worker = worker

    async def start(self) -> None:
        try:
            await self.queue.ensure_group()
        except Unavailable:
            log.warning("Redis is unavailable: batches cannot be queued until it returns")
        if self.worker is not None:
            self.worker.start()

    async def submit(self, items: Sequence[BatchItem], max_concurrency: int, caller: Caller) -> BatchProgress:
        encoded = [item.encoded for item in items]
        return await self.queue.create(
            caller.organisation, caller.principal, caller.request_id, encoded, max_concurrency
        )

    async def get(self, organisation: str, batch_id: str) -> BatchProgress:
        return await self.queue.progress(organisation, batch_id)

    async def watch(self, organisation: str, batch_id: str) -> AsyncIterator[pb.BatchResult]:
        async for data in self.queue.results(organisation, batch_id):
            if isinstance(data, CancelledItem):
                yield pb.BatchResult.FromString(BatchItemRunner.cancelled(data.item).result)
            else:
                yield pb.BatchResult.FromString(data)

    async def cancel(self, organisation: str, batch_id: str) -> BatchProgress:
        return await self.queue.cancel(organisation, batch_id)

    async def list_batches(self, organisation: str, limit: int, before: BatchCursor | None) -> list[BatchProgress]:
        return await self.queue.list_batches(organisation, limit, before)

    async def aclose(self) -> None:
        # After the server's grace period: items still running are handed back
        # to the queue at once rather than finished.
        if self.worker is not None:
            await self.worker.stop(grace=0)
        await self.queue.aclose()


class BatchItemRunner:
    """Runs one queued item through the orchestrator, as the caller who
    submitted its batch."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self._orchestrator = orchestrator

    async def run(self, job: Job) -> ItemOutcome:
        item = pb.BatchItem.FromString(job.payload)
        errors = ViolationCollector()  # checked at submission; reported with the orchestrator's checks
        request = convert.chat_request_from_proto(item, errors, self._orchestrator.default_model)
        caller = Caller(f"{job.request_id}/{item.custom_id}", job.organisation, job.principal)
        try:
            answer = await self._orchestrator.complete(request, caller, errors)
        except DomainError as error:
            return self.failure(job.payload, error)
        except Exception:
            log.exception("batch item %s of batches/%s failed", item.custom_id, job.batch_id)
            return self.failure(job.payload, DomainError("internal error"))
        result = pb.BatchResult(custom_id=item.custom_id, response=convert.complete_response(answer))
        return ItemOutcome(item.custom_id, result.SerializeToString())

    @staticmethod
    def cancelled(payload: bytes) -> ItemOutcome:
        """The result of an item whose batch was cancelled before it ran."""
        return BatchItemRunner.failure(payload, item_cancelled())

    @staticmethod
    def failure(payload: bytes, error: DomainError) -> ItemOutcome:
        custom_id = pb.BatchItem.FromString(payload).custom_id
        result = pb.BatchResult(custom_id=custom_id, error=turn_error(error))
        return ItemOutcome(custom_id, result.SerializeToString(), error)
