"""The batch worker: takes queued items and runs them, at most `concurrency`
at a time, with retries, dead letters and reclaiming of items whose worker
died. `pointsman worker` runs it on its own; the server runs one in-process
unless POINTSMAN_BATCH_EMBEDDED_WORKER=false. See docs/batches.md."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from dataclasses import dataclass

from ..errors import RateLimited, Unavailable
from .ports import BatchQueue, ItemRunner, Job
from .runner import retry_delay

log = logging.getLogger(__name__)

SUMMARY_EVERY_SECONDS = 30.0


@dataclass
class WorkerCounts:
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead_lettered: int = 0
    cancelled: int = 0
    reclaimed: int = 0
    batches_done: int = 0

    def line(self) -> str:
        return (
            f"{self.succeeded} succeeded, {self.failed} failed ({self.dead_lettered} dead-lettered), "
            f"{self.retried} retried, {self.cancelled} cancelled, {self.reclaimed} reclaimed, "
            f"{self.batches_done} batches done"
        )


class BatchWorker:
    """Takes items from the queue and runs them, at most `concurrency` at a
    time; reads only as many as it has room for, so other workers get the rest.

    A retryable failure is tried again (requeued as the next attempt, after a
    backoff) until `max_attempts`, then dead-lettered as a failed result. Items
    it runs are touched every `reclaim_idle_seconds / 3`; another worker's items
    idle longer than that (their worker died) are reclaimed, which counts as an
    attempt. `stop` stops taking, lets items run for `grace` seconds, then hands
    the rest back to the queue uncounted."""

    def __init__(
        self,
        queue: BatchQueue,
        runner: ItemRunner,
        *,
        consumer: str,
        concurrency: int,
        max_attempts: int,
        retry_backoff_seconds: float,
        reclaim_idle_seconds: float,
    ) -> None:
        self.queue = queue
        self.runner = runner
        self.consumer = consumer
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.retry_backoff_seconds = retry_backoff_seconds
        self.reclaim_idle_seconds = reclaim_idle_seconds
        self.counts = WorkerCounts()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        log.info("batch worker %s: up to %d items at a time", self.consumer, self.concurrency)
        self._loops = [
            asyncio.create_task(self._take_loop(), name="batch-take"),
            asyncio.create_task(self._keep_loop(), name="batch-keep"),
        ]

    async def stop(self, grace: float) -> None:
        if not self._loops:
            return
        taker, keeper = self._loops
        self._loops = []
        taker.cancel()
        await asyncio.gather(taker, return_exceptions=True)
        if self._running and grace > 0:
            log.info("waiting up to %.1fs for %d batch items", grace, len(self._running))
            await asyncio.wait(list(self._running.values()), timeout=grace)
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        await self._release()
        log.info("batch worker %s stopped: %s", self.consumer, self.counts.line())

    async def _release(self) -> None:
        """Hands back what this worker holds (including entries a cancelled
        read had taken), so that another worker starts them at once."""
        try:
            held = await self.queue.pending(self.consumer)
            for job in held:
                await self.queue.requeue(job, job.attempt)
            await self.queue.delete_consumer(self.consumer)
        except Unavailable:
            log.warning("could not reach Redis to hand back unfinished items, if any; others reclaim them once idle")
            return
        if held:
            log.info("handed back %d unfinished batch items", len(held))

    async def _take_loop(self) -> None:
        failures = 0
        try:
            await self.queue.create_consumer(self.consumer)  # so that it shows as a live worker at once
        except Unavailable:
            pass  # the first read adds it
        while True:
            if len(self._running) >= self.concurrency:
                await asyncio.wait(list(self._running.values()), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                jobs = await self.queue.take(self.consumer, self.concurrency - len(self._running))
            except Unavailable:
                failures += 1
                if failures == 1:
                    log.warning("batch queue unavailable; retrying")
                await asyncio.sleep(min(5.0, 0.05 * 2**failures) * random.uniform(0.5, 1.0))
                continue
            except Exception:
                log.exception("batch worker could not take items")
                await asyncio.sleep(1.0)
                continue
            if failures:
                log.info("batch queue available again")
                failures = 0
            for job in jobs:
                task = asyncio.create_task(self._work(job))
                self._running[job.entry_id] = task
                task.add_done_callback(functools.partial(self._forget, job.entry_id))

    def _forget(self, entry_id: str, _: asyncio.Task[None]) -> None:
        self._running.pop(entry_id, None)

    async def _keep_loop(self) -> None:
        """Heartbeats for our items, reclaiming for dead workers', and a
        summary in the log now and then."""
        logged = WorkerCounts()
        logged_at = time.monotonic()
        while True:
            await asyncio.sleep(self.reclaim_idle_seconds / 3)
            try:
                await self.queue.touch(self.consumer, list(self._running))
                for job in await self.queue.reclaim(self.consumer, self.reclaim_idle_seconds):
                    await self._reclaimed(job)
            except Unavailable:
                pass  # the take loop reports outages
            except Exception:
                log.exception("batch worker upkeep failed")
            if time.monotonic() - logged_at >= SUMMARY_EVERY_SECONDS and self.counts != logged:
                log.info("batch worker %s: %s; %d running", self.consumer, self.counts.line(), len(self._running))
                logged, logged_at = WorkerCounts(**vars(self.counts)), time.monotonic()

    async def _work(self, job: Job) -> None:
        try:
            if job.batch_cancelled:
                outcome = self.runner.cancelled(job.payload)
                await self._finish(job, outcome.result, succeeded=False, cancelled=True)
                return
            outcome = await self.runner.run(job)
            error = outcome.error
            delay = None if error is None else retry_delay(error, job.attempt, self.retry_backoff_seconds)
            if error is None or delay is None:
                await self._finish(job, outcome.result, succeeded=error is None)
                return
            # A rate limit says "not now", not "failed": it does not use up an attempt.
            counted = not isinstance(error, RateLimited)
            if counted and job.attempt >= self.max_attempts:
                await self._dead_letter(job, f"gave up after {job.attempt} attempts: {error.message}", error.reason)
                return
            log.debug("batch item of batches/%s failed (%s); retrying in %.2fs", job.batch_id, error.reason, delay)
            await asyncio.sleep(delay)
            if await self.queue.requeue(job, job.attempt + 1 if counted else job.attempt):
                self.counts.retried += 1
        except Unavailable:
            log.warning("could not record a batch item of batches/%s; it will be reclaimed", job.batch_id)
        except Exception:
            log.exception("batch item of batches/%s: unexpected error; it will be reclaimed", job.batch_id)

    async def _finish(
        self,
        job: Job,
        result: bytes,
        *,
        succeeded: bool,
        cancelled: bool = False,
        dead_letter: tuple[str, str] | None = None,
    ) -> None:
        outcome = await self.queue.finish(
            job, result, succeeded=succeeded, cancelled=cancelled, dead_letter=dead_letter
        )
        if outcome <= 0:
            return  # reclaimed by another worker meanwhile, or the batch expired
        if cancelled:
            self.counts.cancelled += 1
        elif succeeded:
            self.counts.succeeded += 1
        else:
            self.counts.failed += 1
        if outcome == 2:
            self.counts.batches_done += 1
            log.info("batches/%s done", job.batch_id)

    async def _dead_letter(self, job: Job, message: str, reason: str) -> None:
        outcome = self.runner.failure(job.payload, Unavailable(message, reason=reason))
        log.warning("batch item %s of batches/%s dead-lettered: %s", outcome.custom_id, job.batch_id, message)
        self.counts.dead_lettered += 1
        await self._finish(job, outcome.result, succeeded=False, dead_letter=(outcome.custom_id, message))

    async def _reclaimed(self, job: Job) -> None:
        self.counts.reclaimed += 1
        log.warning(
            "reclaimed an item of batches/%s from a worker that stopped (attempt %d)", job.batch_id, job.attempt
        )
        if job.attempt >= self.max_attempts:
            message = f"gave up after {job.attempt} attempts: the worker running it stopped"
            await self._dead_letter(job, message, "BATCH_WORKER_LOST")
        else:
            await self.queue.requeue(job, job.attempt + 1)
