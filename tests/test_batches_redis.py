"""Batches on Redis Streams: a server with REDIS_URL queues them, `pointsman
worker` processes run them (retrying, dead-lettering, reclaiming a killed
worker's items), watchers see each result as it is written. Real Redis under a
key prefix of each test's own, a fake OpenAI upstream over HTTP, real worker
processes."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.backends.shared import open_redis
from pointsman.server.backends.shared.batch_queue import RedisBatchQueue

from fakes.gated_openai import GatedOpenAI
from helpers_pb import user
from server_fixtures import eventually, raises

pytestmark = pytest.mark.slow  # outages, restarts and workers: seconds per test

REDIS_URL = os.environ.get("POINTSMAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POINTSMAN = str(Path(sys.executable).with_name("pointsman"))
# Worker processes need a couple of seconds to start (the firewall's detectors).
SLOW = 30.0

Spawn = Callable[[dict[str, str]], subprocess.Popen[bytes]]


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[GatedOpenAI]:
    fake = GatedOpenAI()
    async with fake:
        yield fake


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """A key prefix of the test's own; every key under it is deleted after."""
    prefix = f"pointsman-test:{secrets.token_hex(4)}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
def env(prefix: str, upstream: GatedOpenAI) -> dict[str, str]:
    """Settings shared by the server and the workers of a test."""
    return {
        "REDIS_URL": REDIS_URL,
        "POINTSMAN_REDIS_PREFIX": prefix,
        "DATABASE_URL": "sqlite://:memory:",
        "OPENAI_BASE_URL": upstream.base_url,
        "OPENAI_API_KEY": "test",
        "OPENAI_MODELS": "ok,gated,fault-503,fault-400",
        "POINTSMAN_UPSTREAM_RETRIES": "0",  # one upstream call per attempt
        "POINTSMAN_BATCH_EMBEDDED_WORKER": "false",
        "POINTSMAN_BATCH_RETRY_BACKOFF_SECONDS": "0.01",
    }


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Spawn]:
    """Starts `pointsman worker` processes; stops those still running afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ANTHROPIC_", "POINTSMAN_", "REDIS_", "DATABASE_", "REGISTRY_", "ORG_ID"))
    }

    def spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"worker-{len(started)}.log", "wb") as log:
            process = subprocess.Popen(
                [POINTSMAN, "worker"], env={**base, "LOG_LEVEL": "INFO", **env}, stdout=log, stderr=subprocess.STDOUT
            )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def items(**models: str) -> list[orch.BatchItem]:
    return [
        orch.BatchItem(custom_id=cid, model=model, messages=[user(f"about {cid}")]) for cid, model in models.items()
    ]


async def watch_all(client: AsyncClient, name: str) -> list[orch.WatchBatchResponse]:
    return [event async for event in client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=name), timeout=60)]


async def get_batch(client: AsyncClient, name: str) -> orch.Batch:
    return (await client.orchestrator.GetBatch(orch.GetBatchRequest(name=name))).batch


async def test_a_worker_process_runs_the_batch_and_watchers_see_each_result_as_it_completes(
    start_server: Any, env: dict[str, str], workers: Spawn, upstream: GatedOpenAI
) -> None:
    server = await start_server(**env)
    async with AsyncClient(server.address, timeout=10) as client:
        # One at a time, in order: three quick items, then one that waits for the gate.
        batch = (
            await client.orchestrator.CreateBatch(
                orch.CreateBatchRequest(items=items(a="ok", b="ok", c="ok", slow="gated"), max_concurrency=1)
            )
        ).batch
        assert batch.state == orch.BATCH_STATE_RUNNING and batch.total_items == 4
        stream = aiter(client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=batch.name), timeout=60))
        workers(env)
        first = [await asyncio.wait_for(anext(stream), SLOW) for _ in range(3)]
        assert [e.result.custom_id for e in first] == ["a", "b", "c"]
        assert first[0].result.response.message.content == "Echo: about a"
        # Those three arrived while the batch was still running.
        progress = await get_batch(client, batch.name)
        assert progress.state == orch.BATCH_STATE_RUNNING and progress.succeeded_items == 3
        upstream.gate.set()
        rest = [event async for event in stream]
        assert [e.WhichOneof("event") for e in rest] == ["result", "done"]
        assert rest[0].result.custom_id == "slow" and rest[0].result.response.message.content == "Echo: about slow"
        assert rest[1].done.state == orch.BATCH_STATE_DONE and rest[1].done.succeeded_items == 4
        # A late watcher gets every result again, then done.
        again = await watch_all(client, batch.name)
        assert sorted(e.result.custom_id for e in again[:-1]) == ["a", "b", "c", "slow"]
        assert again[-1].done.succeeded_items == 4
    assert upstream.calls["gated"] == 1


async def test_retryable_failures_are_retried_then_dead_lettered_and_the_batch_completes(
    start_server: Any, env: dict[str, str], workers: Spawn, upstream: GatedOpenAI, redis: Redis, prefix: str
) -> None:
    server = await start_server(**env)
    workers({**env, "POINTSMAN_BATCH_MAX_ATTEMPTS": "3"})
    async with AsyncClient(server.address, timeout=10) as client:
        request = orch.CreateBatchRequest(
            items=items(a="ok", b="ok", c="ok", down="fault-503", bad="fault-400", missing="no-such-model"),
            max_concurrency=8,
        )
        batch = (await client.orchestrator.CreateBatch(request)).batch
        events = await watch_all(client, batch.name)
    results = {e.result.custom_id: e.result for e in events[:-1]}
    assert set(results) == {"a", "b", "c", "down", "bad", "missing"}
    assert all(results[cid].HasField("response") for cid in "abc")
    # Upstream down on every attempt: tried three times, then a failed result.
    down = results["down"].error
    assert down.code == 14 and "gave up after 3 attempts" in down.message
    assert upstream.calls["fault-503"] == 3
    # Errors a retry cannot fix fail at once.
    assert results["bad"].error.code == 3 and upstream.calls["fault-400"] == 1
    assert results["missing"].error.code == 5
    done = events[-1].done
    assert (done.state, done.succeeded_items, done.failed_items) == (orch.BATCH_STATE_DONE, 3, 3)
    dead = await redis.xrange(f"{prefix}batch:dead")
    assert len(dead) == 1
    fields = dead[0][1]
    assert fields[b"c"] == b"down" and fields[b"a"] == b"3" and fields[b"i"] == batch.name.split("/")[1].encode()
    assert orch.BatchItem.FromString(fields[b"p"]).model == "fault-503"


async def test_a_killed_workers_item_is_reclaimed_by_another_worker(
    start_server: Any, env: dict[str, str], workers: Spawn, upstream: GatedOpenAI
) -> None:
    env = {**env, "POINTSMAN_BATCH_RECLAIM_IDLE_SECONDS": "1"}
    server = await start_server(**env)
    async with AsyncClient(server.address, timeout=10) as client:
        batch = (await client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items(slow="gated")))).batch
        first = workers(env)
        await eventually(lambda: upstream.calls["gated"] == 1, timeout=SLOW)
        first.kill()  # SIGKILL mid-item: no hand-back
        await asyncio.to_thread(first.wait, 10)
        upstream.gate.set()
        workers(env)
        await eventually(lambda: upstream.calls["gated"] == 2, timeout=SLOW)
        events = await watch_all(client, batch.name)
    assert events[0].result.response.message.content == "Echo: about slow"
    assert events[-1].done.succeeded_items == 1


async def test_sigterm_hands_unfinished_items_back_without_using_an_attempt(
    start_server: Any, env: dict[str, str], workers: Spawn, upstream: GatedOpenAI, redis: Redis, prefix: str
) -> None:
    env = {**env, "POINTSMAN_SHUTDOWN_GRACE_SECONDS": "0.2"}
    server = await start_server(**env)
    async with AsyncClient(server.address, timeout=10) as client:
        batch = (await client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items(slow="gated")))).batch
        first = workers(env)
        await eventually(lambda: upstream.calls["gated"] == 1, timeout=SLOW)
        first.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait, 15) == 0
        # Back in the queue at once, still as the first attempt, owned by nobody.
        queued = await redis.xrange(f"{prefix}batch:jobs")
        assert [fields[b"a"] for _, fields in queued] == [b"1"]
        assert (await redis.xpending(f"{prefix}batch:jobs", "workers"))["pending"] == 0
        upstream.gate.set()
        workers(env)  # reclaim idle is the default 30 s: it takes the item as new
        events = await watch_all(client, batch.name)
    assert events[-1].done.succeeded_items == 1 and upstream.calls["gated"] == 2


async def cancel(client: AsyncClient, name: str) -> orch.Batch:
    return (await client.orchestrator.CancelBatch(orch.CancelBatchRequest(name=name))).batch


def cancelled_ids(events: list[orch.WatchBatchResponse]) -> list[str]:
    return sorted(e.result.custom_id for e in events if e.result.error.reason == "BATCH_CANCELLED")


async def test_cancelling_skips_what_has_not_started_and_lets_the_running_item_finish(
    start_server: Any, env: dict[str, str], workers: Spawn, upstream: GatedOpenAI
) -> None:
    server = await start_server(**env)
    async with AsyncClient(server.address, timeout=10) as client:
        request = orch.CreateBatchRequest(items=items(slow="gated", a="ok", b="ok", c="ok"), max_concurrency=1)
        batch = (await client.orchestrator.CreateBatch(request)).batch
        workers(env)
        await eventually(lambda: upstream.calls["gated"] == 1, timeout=SLOW)
        cancelling = await cancel(client, batch.name)
        assert cancelling.state == orch.BATCH_STATE_CANCELLING
        assert (cancelling.cancelled_items, cancelling.succeeded_items, cancelling.failed_items) == (3, 0, 0)
        # The three that never started have their results before the running one ends.
        stream = aiter(client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=batch.name), timeout=60))
        first = [await asyncio.wait_for(anext(stream), SLOW) for _ in range(3)]
        assert cancelled_ids(first) == ["a", "b", "c"]
        assert all(e.result.error.code == 1 and not e.result.HasField("response") for e in first)
        assert (await cancel(client, batch.name)).cancelled_items == 3  # again: unchanged
        upstream.gate.set()
        rest = [event async for event in stream]
        assert rest[0].result.custom_id == "slow" and rest[0].result.HasField("response")
        done = rest[1].done
        assert (done.state, done.succeeded_items, done.cancelled_items) == (orch.BATCH_STATE_CANCELLED, 1, 3)
        assert (await get_batch(client, batch.name)).state == orch.BATCH_STATE_CANCELLED
        error = await raises(client.orchestrator.CancelBatch(orch.CancelBatchRequest(name="batches/0123456789abcdef")))
        assert error.code.name == "NOT_FOUND" and error.reason == "BATCH_NOT_FOUND"
    assert upstream.calls["ok"] == 0


async def test_items_queued_before_the_cancel_are_finished_as_cancelled_without_running(
    start_server: Any, env: dict[str, str], workers: Spawn, upstream: GatedOpenAI
) -> None:
    server = await start_server(**env)
    async with AsyncClient(server.address, timeout=10) as client:
        # Two items in the jobs stream, one waiting behind them; no worker yet.
        request = orch.CreateBatchRequest(items=items(a="ok", b="ok", c="ok"), max_concurrency=2)
        batch = (await client.orchestrator.CreateBatch(request)).batch
        assert (await cancel(client, batch.name)).cancelled_items == 1
        workers(env)
        events = await asyncio.wait_for(watch_all(client, batch.name), SLOW)
        assert cancelled_ids(events) == ["a", "b", "c"]
        assert events[-1].done.state == orch.BATCH_STATE_CANCELLED and events[-1].done.cancelled_items == 3
    assert upstream.calls["ok"] == 0


async def test_a_batch_that_is_done_cannot_be_cancelled(start_server: Any, env: dict[str, str]) -> None:
    server = await start_server(**{**env, "POINTSMAN_BATCH_EMBEDDED_WORKER": "true"})
    async with AsyncClient(server.address, timeout=10) as client:
        batch = (await client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items(x="ok")))).batch
        await watch_all(client, batch.name)
        error = await raises(client.orchestrator.CancelBatch(orch.CancelBatchRequest(name=batch.name)))
        assert error.code.name == "FAILED_PRECONDITION" and error.reason == "BATCH_DONE"
        assert (await get_batch(client, batch.name)).state == orch.BATCH_STATE_DONE


async def test_batches_are_listed_on_any_replica_newest_first_and_only_to_their_organisation(
    start_server: Any, env: dict[str, str], redis: Redis, prefix: str
) -> None:
    a = await start_server(**env)
    b = await start_server(**env)
    other = await start_server(**{**env, "ORG_ID": "org-other"})
    async with (
        AsyncClient(a.address, timeout=10) as client_a,
        AsyncClient(b.address, timeout=10) as client_b,
        AsyncClient(other.address, timeout=10) as client_other,
    ):
        names = []
        for i in range(3):
            request = orch.CreateBatchRequest(items=items(**{f"x{i}": "ok"}))
            names.append((await client_a.orchestrator.CreateBatch(request)).batch.name)
        listed, token = [], ""
        while True:
            page = await client_b.orchestrator.ListBatches(orch.ListBatchesRequest(page_size=1, page_token=token))
            listed.extend(batch.name for batch in page.batches)
            token = page.next_page_token
            if not token:
                break
        assert sorted(listed) == sorted(names) and len(listed) == 3
        nothing = await client_other.orchestrator.ListBatches(orch.ListBatchesRequest())
        assert list(nothing.batches) == []
        # A batch whose keys expired is left out, and dropped from the index.
        expired = listed[1].removeprefix("batches/")
        index = f"{prefix}batch:default:index"
        assert await redis.zscore(index, expired) is not None
        await redis.delete(f"{prefix}batch:default:{expired}")
        remaining = await client_b.orchestrator.ListBatches(orch.ListBatchesRequest())
        assert [batch.name for batch in remaining.batches] == [listed[0], listed[2]]
        assert await redis.zscore(index, expired) is None


async def test_a_batch_belongs_to_its_organisation(start_server: Any, env: dict[str, str]) -> None:
    # Server a also works batches itself (the default): no worker process needed.
    a = await start_server(**{**env, "ORG_ID": "org-a", "POINTSMAN_BATCH_EMBEDDED_WORKER": "true"})
    b = await start_server(**{**env, "ORG_ID": "org-b"})
    async with AsyncClient(a.address, timeout=10) as client_a, AsyncClient(b.address, timeout=10) as client_b:
        batch = (await client_a.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items(x="ok", y="ok")))).batch
        error = await raises(client_b.orchestrator.GetBatch(orch.GetBatchRequest(name=batch.name)))
        assert error.code.name == "NOT_FOUND" and error.reason == "BATCH_NOT_FOUND"
        error = await raises(watch_all(client_b, batch.name))
        assert error.code.name == "NOT_FOUND"
        error = await raises(client_b.orchestrator.CancelBatch(orch.CancelBatchRequest(name=batch.name)))
        assert error.code.name == "NOT_FOUND"
        events = await watch_all(client_a, batch.name)
        assert events[-1].done.succeeded_items == 2
        unknown = await raises(client_a.orchestrator.GetBatch(orch.GetBatchRequest(name="batches/0123456789abcdef")))
        assert unknown.code.name == "NOT_FOUND"


async def test_a_batch_has_at_most_max_concurrency_items_runnable_and_finishes_count_once(
    redis: Redis, prefix: str
) -> None:
    queue = RedisBatchQueue(redis, open_redis(REDIS_URL, socket_timeout=5), prefix=prefix)
    await queue.ensure_group()
    payloads = [orch.BatchItem(custom_id=f"i{n}", model="ok").SerializeToString() for n in range(10)]
    batch = await queue.create("org", "someone", "req-1", payloads, max_concurrency=2)
    assert await redis.xlen(queue.jobs_key) == 2
    assert await redis.llen(f"{queue.batch_key('org', batch.id)}:todo") == 8
    first, second = await queue.take("c1", 10)
    assert (first.organisation, first.principal, first.request_id, first.attempt) == ("org", "someone", "req-1", 1)
    assert first.payload == payloads[0]
    assert await queue.finish(first, b"result", succeeded=True) == 1
    # The finished item's place went to the next one.
    assert await redis.xlen(queue.jobs_key) == 2
    # A retried entry is gone: finishing it again (a slow worker) counts nothing.
    assert await queue.requeue(second, 2)
    assert await queue.finish(second, b"late", succeeded=True) == 0
    assert await queue.finish(first, b"twice", succeeded=True) == 0
    progress = await queue.progress("org", batch.id)
    assert (progress.succeeded, progress.failed, progress.done) == (1, 0, False)
    retried = [job for job in await queue.take("c2", 10) if job.payload == payloads[1]]
    assert [job.attempt for job in retried] == [2]
    await queue.aclose()


def test_the_worker_needs_redis() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "POINTSMAN_"))}
    done = subprocess.run([POINTSMAN, "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "REDIS_URL" in done.stderr


async def test_without_redis_batches_are_unavailable_and_chat_still_works(start_server: Any) -> None:
    server = await start_server(REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens there
    async with AsyncClient(server.address, timeout=10) as client:
        error = await raises(client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items(x="builtin"))))
        assert error.code.name == "UNAVAILABLE" and error.reason == "BATCH_QUEUE_UNAVAILABLE"
        assert error.retry_delay is not None
        answer = await client.orchestrator.Complete(orch.CompleteRequest(model="builtin", messages=[user("hi")]))
        assert answer.message.content.endswith("hi")
