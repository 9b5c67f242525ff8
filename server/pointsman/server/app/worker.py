"""`pointsman worker`: runs batch items from the Redis Streams queue, with the
same settings and orchestrator as `pointsman serve` but no gRPC server. The
server runs the same `BatchWorker` in-process unless
POINTSMAN_BATCH_EMBEDDED_WORKER=false. See docs/batches.md."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import secrets
import signal
import socket
import time
from dataclasses import dataclass

from ..backends.shared import open_redis
from ..backends.shared.batch_queue import BLOCK_MS, Job, RedisBatchQueue
from ..domain.batches import BatchRunner, retry_delay
from ..domain.errors import RateLimited, Unavailable
from ..domain.orchestrator import Orchestrator
from ..metrics import MetricsEndpoint
from ..settings import Settings, describe_invalid
from ..transport.batches import Batches, BatchItemRunner, InProcessBatches, QueuedBatches
from .stack import build_orchestrator
from .state import State, open_state
from .state_metrics import state_metrics

log = logging.getLogger(__name__)

# Connections for blocking reads (XREADGROUP, and XREAD for each watcher while it waits).
BLOCKING_CONNECTIONS = 128
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
        queue: RedisBatchQueue,
        runner: BatchItemRunner,
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
                outcome = BatchItemRunner.cancelled(job.payload)
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
        outcome = BatchItemRunner.failure(job.payload, Unavailable(message, reason=reason))
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


# -- building ------------------------------------------------------------------


def open_batch_queue(settings: Settings, state: State) -> RedisBatchQueue:
    if state.redis is None or settings.redis_url is None:
        raise ValueError("the batch queue needs REDIS_URL")
    block = BLOCK_MS / 1000
    blocking = open_redis(
        settings.redis_url.get_secret_value(),
        max_connections=BLOCKING_CONNECTIONS,
        socket_timeout=block + 5,
        pool_timeout=block + 1,
    )
    return RedisBatchQueue(state.redis, blocking, prefix=settings.redis_prefix, health=state.redis_health)


def batch_worker(settings: Settings, queue: RedisBatchQueue, orchestrator: Orchestrator, consumer: str) -> BatchWorker:
    return BatchWorker(
        queue,
        BatchItemRunner(orchestrator),
        consumer=consumer,
        concurrency=settings.batch_worker_concurrency,
        max_attempts=settings.batch_max_attempts,
        retry_backoff_seconds=settings.batch_retry_backoff_seconds,
        reclaim_idle_seconds=settings.batch_reclaim_idle_seconds,
    )


def consumer_name(base: str) -> str:
    """Unique per worker, even for several servers in one process (tests)."""
    return f"{base}-{os.getpid()}-{secrets.token_hex(3)}"


def build_batches(settings: Settings, state: State, orchestrator: Orchestrator) -> Batches:
    """In-process batches without Redis; with it, the shared queue (and,
    unless turned off, a worker in this process too)."""
    if state.redis is None:
        return InProcessBatches(BatchRunner(orchestrator))
    queue = open_batch_queue(settings, state)
    worker = None
    if settings.batch_embedded_worker:
        worker = batch_worker(settings, queue, orchestrator, consumer_name(settings.orchestrator_id))
    return QueuedBatches(queue, worker)


async def run_worker(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then stops taking items, lets those
    running finish within the grace period and hands back the rest."""
    state = await open_state(settings)
    try:
        stack = build_orchestrator(settings, state)
        queue = open_batch_queue(settings, state)
        worker = batch_worker(settings, queue, stack.orchestrator, consumer_name(f"worker-{socket.gethostname()}"))
        endpoint = None
        if state.metrics is not None and settings.metrics_address:
            state.metrics.collect_state(state_metrics(state, stack.router))
            endpoint = MetricsEndpoint(state.metrics, settings.metrics_address)
            try:
                await endpoint.start()
            except OSError as error:
                await stack.aclose()
                raise OSError(f"could not serve metrics on {settings.metrics_address}: {error.strerror}") from None
        await state.start()
        await stack.rules.start()
        try:
            await queue.ensure_group()
        except Unavailable:
            log.warning("Redis is unavailable; waiting for it")  # `take` creates the group once it answers
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        worker.start()
        await stop.wait()
        log.info("shutting down (grace %.1fs)", settings.shutdown_grace_seconds)
        await worker.stop(settings.shutdown_grace_seconds)
        await queue.aclose()
        await stack.aclose()
        if endpoint is not None:
            await endpoint.stop()
    finally:
        await state.aclose()


def main() -> int:
    """The `pointsman worker` command; exit status 2 for settings it cannot run with."""
    import sys

    from pydantic import ValidationError

    from ..logs import configure_logging
    from .routes import RoutesFileError

    try:
        settings = Settings()
    except ValidationError as error:
        print(f"pointsman: invalid settings: {describe_invalid(error)}", file=sys.stderr)
        return 2
    if settings.redis_url is None:
        print("pointsman: the worker takes batches from Redis: set REDIS_URL", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run_worker(settings))
    except (RoutesFileError, OSError) as error:  # OSError: the metrics port already taken
        print(f"pointsman: {error}", file=sys.stderr)
        return 2
    return 0
