"""Batches wired up: in-process without Redis, else the Redis Streams queue and
(unless POINTSMAN_BATCH_EMBEDDED_WORKER=false) a worker in the server; and
`pointsman worker`, the same settings and orchestrator as `pointsman serve`
running only the worker, no gRPC server. See docs/batches.md."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket

from ..backends.shared import open_redis
from ..backends.shared.batch_queue import BLOCK_MS, RedisBatchQueue
from ..domain.batches.runner import BatchLimits, BatchRunner
from ..domain.batches.worker import BatchWorker
from ..domain.errors import Unavailable
from ..domain.orchestrator import Orchestrator
from ..metrics import MetricsEndpoint
from ..settings import Settings, describe_invalid
from ..transport.batches import Batches, BatchItemRunner, InProcessBatches, QueuedBatches, encode_result
from .stack import build_orchestrator
from .state import State, open_state
from .state_metrics import state_metrics

log = logging.getLogger(__name__)

# Connections for blocking reads (XREADGROUP, and XREAD for each watcher while it waits).
BLOCKING_CONNECTIONS = 128


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
        limits = BatchLimits(
            max_bytes=settings.batch_max_bytes,
            max_bytes_per_organisation=settings.batch_max_bytes_per_organisation,
            retention_seconds=settings.batch_retention_seconds,
        )
        return InProcessBatches(BatchRunner(orchestrator, encode_result, limits))
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
