"""Batches in the server's own process (no Redis): cancelling one. Running
and watching are in test_chat.py; the Redis queue and workers in
test_batches_redis.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest_asyncio

from pointsman.client import AsyncClient, PointsmanError
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from fakes.gated_openai import GatedOpenAI
from helpers_pb import user
from server_fixtures import collect, eventually, raises


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[GatedOpenAI]:
    fake = GatedOpenAI()
    async with fake:
        yield fake


def items(**models: str) -> list[orch.BatchItem]:
    return [orch.BatchItem(custom_id=cid, model=m, messages=[user(f"about {cid}")]) for cid, m in models.items()]


async def test_cancel_skips_items_not_started_and_lets_running_ones_finish(
    start_server: Any, upstream: GatedOpenAI
) -> None:
    server = await start_server(OPENAI_BASE_URL=upstream.base_url, OPENAI_API_KEY="test", OPENAI_MODELS=["ok", "gated"])
    async with AsyncClient(server.address, timeout=10) as client:
        request = orch.CreateBatchRequest(items=items(slow="gated", a="ok", b="ok"), max_concurrency=1)
        batch = (await client.orchestrator.CreateBatch(request)).batch
        await eventually(lambda: upstream.calls["gated"] == 1)
        cancelled = (await client.orchestrator.CancelBatch(orch.CancelBatchRequest(name=batch.name))).batch
        assert cancelled.state == orch.BATCH_STATE_CANCELLING and cancelled.cancelled_items == 2
        stream = aiter(client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=batch.name)))
        first = [await asyncio.wait_for(anext(stream), 5) for _ in range(2)]
        assert sorted(e.result.custom_id for e in first) == ["a", "b"]
        assert all((e.result.error.code, e.result.error.reason) == (1, "BATCH_CANCELLED") for e in first)
        again = (await client.orchestrator.CancelBatch(orch.CancelBatchRequest(name=batch.name))).batch
        assert again == cancelled
        upstream.gate.set()
        rest = await collect(stream)
        assert rest[0].result.custom_id == "slow" and rest[0].result.response.message.content == "Echo: about slow"
        done = rest[1].done
        assert (done.state, done.succeeded_items, done.failed_items, done.cancelled_items) == (
            orch.BATCH_STATE_CANCELLED,
            1,
            0,
            2,
        )
    assert upstream.calls["ok"] == 0


async def test_cancel_needs_a_batch_that_is_not_done(client: AsyncClient) -> None:
    created = await client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items(x="builtin")))
    await collect(client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=created.batch.name)))
    error = await raises(client.orchestrator.CancelBatch(orch.CancelBatchRequest(name=created.batch.name)))
    assert error.code.name == "FAILED_PRECONDITION" and error.reason == "BATCH_DONE"
    unknown = await raises(client.orchestrator.CancelBatch(orch.CancelBatchRequest(name="batches/0123456789abcdef")))
    assert unknown.code.name == "NOT_FOUND" and unknown.reason == "BATCH_NOT_FOUND"
    malformed = await raises(client.orchestrator.CancelBatch(orch.CancelBatchRequest(name="not-a-batch-name")))
    assert malformed.code.name == "INVALID_ARGUMENT"


async def list_all(client: AsyncClient, page_size: int) -> list[list[str]]:
    pages, token = [], ""
    while True:
        response = await client.orchestrator.ListBatches(orch.ListBatchesRequest(page_size=page_size, page_token=token))
        pages.append([batch.name for batch in response.batches])
        token = response.next_page_token
        if not token:
            return pages


async def test_list_batches_pages_newest_first(client: AsyncClient) -> None:
    names = []
    for i in range(5):  # several are created within the same millisecond: ties go by id
        request = orch.CreateBatchRequest(items=items(**{f"x{i}": "builtin"}))
        names.append((await client.orchestrator.CreateBatch(request)).batch.name)
    pages = await list_all(client, page_size=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    listed = [name for page in pages for name in page]
    assert sorted(listed) == sorted(names)
    times = [(await client.orchestrator.GetBatch(orch.GetBatchRequest(name=n))).batch.create_time for n in listed]
    order = [(t.ToMilliseconds(), n.removeprefix("batches/")) for t, n in zip(times, listed, strict=True)]
    assert order == sorted(order, reverse=True)
    assert await list_all(client, page_size=0) == [listed]  # 0 means the default page size
    error = await raises(client.orchestrator.ListBatches(orch.ListBatchesRequest(page_token="not-a-token")))
    assert error.code.name == "INVALID_ARGUMENT"


async def test_too_many_items_are_refused_on_the_count_alone(client: AsyncClient) -> None:
    # 100,000 items, the first of them invalid: the count is the one thing
    # named, so the items were not checked one by one (which held the event
    # loop for about 2 s).
    bad = orch.BatchItem(custom_id="", model="builtin", messages=[user("hi")])
    good = orch.BatchItem(custom_id="x", model="builtin", messages=[user("hi")])
    request = orch.CreateBatchRequest(items=[bad] + [good] * 99_999)
    error = await raises(client.orchestrator.CreateBatch(request))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["items"]
    assert "10000" in error.field_violations[0].description


def long_items(model: str, *custom_ids: str) -> list[orch.BatchItem]:
    # Answers echo the prompt, so each result holds about as many bytes as its item.
    return [orch.BatchItem(custom_id=cid, model=model, messages=[user(cid * 1000)]) for cid in custom_ids]


async def test_an_organisation_past_its_batch_bound_is_refused_then_its_oldest_finished_batch_makes_way(
    start_server: Any, upstream: GatedOpenAI
) -> None:
    # Two 1,000-character items fit (about 2.5 kB each while they wait, 1.2 kB
    # as results), a third does not.
    server = await start_server(
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_API_KEY="test",
        OPENAI_MODELS=["ok", "gated"],
        POINTSMAN_BATCH_MAX_BYTES_PER_ORGANISATION=5300,
    )
    async with AsyncClient(server.address, timeout=10) as client:
        first = (
            await client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=long_items("gated", "a", "b")))
        ).batch
        over = orch.CreateBatchRequest(items=long_items("ok", "c"))
        error = await raises(client.orchestrator.CreateBatch(over))
        assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "BATCHES_FULL")
        assert error.metadata["scope"] == "organisation" and error.metadata["limit_bytes"] == "5300"
        assert error.retry_delay is not None and error.retry_delay > 0
        upstream.gate.set()
        await collect(client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=first.name)))
        # Done, the first batch's results still count; the next batch of two
        # only fits without them, so they are forgotten to make way.
        second = (
            await client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=long_items("ok", "c", "d")))
        ).batch
        events = await collect(client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=second.name)))
        assert events[-1].done.succeeded_items == 2
        gone = await raises(client.orchestrator.GetBatch(orch.GetBatchRequest(name=first.name)))
        assert gone.reason == "BATCH_NOT_FOUND"


async def test_a_server_past_its_batch_bound_refuses_new_batches(start_server: Any, upstream: GatedOpenAI) -> None:
    server = await start_server(
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_API_KEY="test",
        OPENAI_MODELS=["ok", "gated"],
        POINTSMAN_BATCH_MAX_BYTES=5300,
    )
    async with AsyncClient(server.address, timeout=10) as client:
        await client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=long_items("gated", "a", "b")))
        error = await raises(client.orchestrator.CreateBatch(orch.CreateBatchRequest(items=long_items("ok", "c"))))
        assert (error.code, error.reason, error.metadata["scope"]) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "BATCHES_FULL",
            "server",
        )
        upstream.gate.set()


async def test_a_finished_batch_is_forgotten_after_the_retention_time(start_server: Any) -> None:
    server = await start_server(POINTSMAN_BATCH_RETENTION_SECONDS=1)
    async with AsyncClient(server.address, timeout=10) as client:
        request = orch.CreateBatchRequest(items=[orch.BatchItem(custom_id="a", model="builtin", messages=[user("hi")])])
        batch = (await client.orchestrator.CreateBatch(request)).batch
        events = await collect(client.orchestrator.WatchBatch(orch.WatchBatchRequest(name=batch.name)))
        assert events[0].result.custom_id == "a" and events[-1].done.succeeded_items == 1

        async def forgotten() -> bool:
            try:
                await client.orchestrator.GetBatch(orch.GetBatchRequest(name=batch.name))
            except PointsmanError as error:
                return error.reason == "BATCH_NOT_FOUND"
            return False

        await eventually(forgotten)
