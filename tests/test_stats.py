"""GetStats: the stores' aggregations on SQLite and PostgreSQL, the count of
active conversations in process and in Redis, and the RPC end to end through
real servers (the built-in model, the default firewall, the response cache)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import secrets
import string
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import test_stores
from google.protobuf.duration_pb2 import Duration
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.backends.shared import InProcessConversations, RedisConversations, open_redis
from pointsman.server.backends.shared.conversation_store import ConversationStore
from pointsman.server.backends.stores import RequestRecord, Stores
from pointsman.server.domain.chat import Message, Role
from pointsman.server.domain.errors import Unavailable
from pointsman.server.domain.firewall.verdict import Action, Category, Decision, Direction, Finding
from pointsman.server.domain.ports.stores import CategoryCount, DeploymentSummary, RequestSummary
from pointsman.type.v1 import chat_pb2
from pointsman.type.v1 import firewall_pb2 as types

from helpers_pb import user
from server_fixtures import collect, raises

# The conformance suite's fixtures: each store test runs on SQLite and on a
# fresh PostgreSQL database, in organisations of its own.
backend, clock, org, other_org, postgres_url, stores = (
    test_stores.backend,
    test_stores.clock,
    test_stores.org,
    test_stores.other_org,
    test_stores.postgres_url,
    test_stores.stores,
)
START = test_stores.START
HOUR = timedelta(hours=1)
REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


# Request log ------------------------------------------------------------------


def call(organisation: str, at_seconds: float = 0, **changes: Any) -> RequestRecord:
    entry = RequestRecord(
        id=secrets.token_hex(12),
        create_time=START + timedelta(seconds=at_seconds),
        organisation=organisation,
        request_id=secrets.token_hex(8),
        principal="users/alice",
        model="fast",
        deployment="openai/a",
        status_code="OK",
        input_tokens=10,
        output_tokens=20,
        latency_ms=100.0,
    )
    return replace(entry, **changes)


async def test_summary_of_calls_in_the_window(stores: Stores, org: str, other_org: str) -> None:
    # Deployment a: latencies 1..100 ms in random order, 3 failures, a first
    # token measured on 10 of them (10, 20, ... 100 ms).
    a = [
        call(
            org,
            i,
            latency_ms=float(ms),
            time_to_first_token_ms=float(ms) if ms % 10 == 0 else None,
            status_code="UNAVAILABLE" if ms in (3, 50, 97) else "OK",
            cost_usd=0.001,
        )
        for i, ms in enumerate(random.Random(5).sample(range(1, 101), 100))
    ]
    b = [
        call(org, 200 + i, deployment="anthropic/b", latency_ms=ms, cost_usd=0.01)
        for i, ms in enumerate((300.0, 5.0, 7.0))
    ]
    cached = [
        call(org, 300 + i, cache_hit=True, latency_ms=0.5, input_tokens=7, output_tokens=9, cost_usd=0.25)
        for i in range(2)
    ]
    blocked = call(org, 400, deployment="", status_code="PERMISSION_DENIED", input_tokens=0, output_tokens=0)
    edges = [
        call(org, -0.000001, latency_ms=9999.0),  # just before the window
        call(org, HOUR.total_seconds(), latency_ms=9999.0),  # at its end: outside, the window is [start, end)
        call(org, HOUR.total_seconds() - 0.000001, deployment="anthropic/b", latency_ms=6.0, cost_usd=0.01),  # in
    ]
    foreign = [
        call(other_org, 10, latency_ms=5000.0, cache_hit=ch, status_code="INTERNAL", cost_usd=9.0)
        for ch in (False, True)
    ]
    await stores.requests.record_many([*a, *b, *cached, blocked, *edges, *foreign])

    summary = await stores.requests.summarise(org, START, START + HOUR)

    # What reached an upstream, per deployment and in all; what the cache hits saved.
    assert [d.cost_usd for d in summary.deployments] == pytest.approx([100 * 0.001, 4 * 0.01])
    assert (summary.cost_usd, summary.cost_saved_usd) == pytest.approx((100 * 0.001 + 4 * 0.01, 2 * 0.25))
    # Every call in the window, the cache hits and the blocked call included.
    in_window = [*a, *b, *cached, blocked, edges[2]]
    assert summary.average_latency_ms == pytest.approx(sum(c.latency_ms for c in in_window) / len(in_window))
    summary = replace(
        summary,
        cost_usd=0.0,
        cost_saved_usd=0.0,
        average_latency_ms=0.0,
        deployments=tuple(replace(d, cost_usd=0.0) for d in summary.deployments),
    )

    assert summary == RequestSummary(
        requests=107,
        failed_requests=4,
        input_tokens=104 * 10 + 2 * 7,
        output_tokens=104 * 20 + 2 * 9,
        cache_hits=2,
        tokens_saved=2 * (7 + 9),
        llm_calls=104,  # the deployments' calls: not the cache hits, not the blocked call
        deployments=(
            # Nearest rank: the 50th and 99th of 100, the 5th of 10 first tokens.
            DeploymentSummary("openai/a", 100, 3, 50.0, 99.0, 50.0),
            # 4 calls (5, 6, 7, 300): the 2nd and the 4th; no first token measured.
            DeploymentSummary("anthropic/b", 4, 0, 6.0, 300.0, 0.0),
        ),
    )
    assert (await stores.requests.summarise(other_org, START, START + HOUR)).requests == 2


async def test_percentiles_are_the_nearest_rank_for_every_count(stores: Stores, org: str) -> None:
    rng = random.Random(7)
    latencies = {f"d/{n:03d}": [float(rng.randrange(1, 10_000)) for _ in range(n)] for n in range(1, 41)}
    await stores.requests.record_many(
        [call(org, i, deployment=d, latency_ms=ms) for d, values in latencies.items() for i, ms in enumerate(values)]
    )

    def nearest_rank(fraction: float, values: list[float]) -> float:
        return sorted(values)[math.ceil(fraction * len(values)) - 1]

    summary = await stores.requests.summarise(org, START, START + HOUR)
    assert {d.deployment: (d.latency_p50_ms, d.latency_p99_ms) for d in summary.deployments} == {
        d: (nearest_rank(0.5, values), nearest_rank(0.99, values)) for d, values in latencies.items()
    }


async def test_summary_of_an_empty_window(stores: Stores, org: str) -> None:
    await stores.requests.record_many([call(org, 0)])
    assert await stores.requests.summarise(org, START + HOUR, START + 2 * HOUR) == RequestSummary()
    with pytest.raises(ValueError):
        await stores.requests.summarise("", START, START + HOUR)


async def test_deployments_are_busiest_first(stores: Stores, org: str) -> None:
    names = ["m/one", "m/three", "m/two", "M/two"]
    counts = {"m/one": 1, "m/three": 3, "m/two": 2, "M/two": 2}
    await stores.requests.record_many([call(org, i, deployment=n) for n in names for i in range(counts[n])])
    summary = await stores.requests.summarise(org, START, START + HOUR)
    assert [(d.deployment, d.requests) for d in summary.deployments] == [
        ("m/three", 3),
        ("M/two", 2),  # ties by name, byte order on both databases
        ("m/two", 2),
        ("m/one", 1),
    ]


# Decisions --------------------------------------------------------------------


def decision(organisation: str, action: Action, *categories: Category, at_seconds: float = 0) -> Decision:
    return Decision(
        id=secrets.token_hex(12),
        create_time=START + timedelta(seconds=at_seconds),
        organisation=organisation,
        principal="users/alice",
        direction=Direction.INPUT,
        action=action,
        findings=tuple(Finding(c, type="T", start=i, end=i + 1) for i, c in enumerate(categories)),
        content_sha256=hashlib.sha256(b"text").hexdigest(),
        request_id="req-1",
    )


async def test_decisions_counted_per_category_and_action(stores: Stores, org: str, other_org: str) -> None:
    await stores.decisions.record_many(
        [
            # Two secret findings and one PII: once under each category.
            decision(org, Action.BLOCK, Category.SECRET, Category.SECRET, Category.PII),
            decision(org, Action.BLOCK, Category.BLOCK_RULE, at_seconds=1),
            decision(org, Action.REDACT, Category.PII, at_seconds=2),
            decision(org, Action.REDACT, Category.PII, at_seconds=3),
            decision(org, Action.LOG, Category.TOXICITY, at_seconds=4),
            decision(org, Action.ALLOW, at_seconds=5),  # nothing found
            decision(org, Action.BLOCK, Category.SECRET, at_seconds=-1),  # before the window
            decision(org, Action.BLOCK, Category.SECRET, at_seconds=HOUR.total_seconds()),  # at its end
            decision(other_org, Action.BLOCK, Category.NOT_ALLOWED, at_seconds=6),
        ]
    )
    assert await stores.decisions.count_by_category(org, START, START + HOUR) == [
        CategoryCount(Category.BLOCK_RULE, blocked=1),
        CategoryCount(Category.PII, blocked=1, redacted=2),
        CategoryCount(Category.SECRET, blocked=1),
        CategoryCount(Category.TOXICITY, logged=1),
    ]
    assert await stores.decisions.count_by_category(other_org, START, START + HOUR) == [
        CategoryCount(Category.NOT_ALLOWED, blocked=1)
    ]
    assert await stores.decisions.count_by_category(org, START + HOUR, START + 2 * HOUR) == [
        CategoryCount(Category.SECRET, blocked=1)
    ]


# Active conversations ------------------------------------------------------------


class FakeTime:
    """Seconds that move only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


HISTORY = [Message(Role.USER, "hi"), Message(Role.ASSISTANT, "hello")]


async def test_in_process_conversations_count_until_they_expire() -> None:
    fake_time = FakeTime(1000.0)
    conversations = InProcessConversations(ConversationStore(ttl_seconds=60, clock=fake_time))
    await conversations.save("org-a", "c1", HISTORY)
    await conversations.save("org-a", "c2", HISTORY)
    await conversations.save("org-a", "c2", [*HISTORY, *HISTORY])  # the same conversation again
    await conversations.save("org-b", "c1", HISTORY)
    assert (await conversations.count("org-a"), await conversations.count("org-b")) == (2, 1)
    fake_time.now += 30
    await conversations.save("org-a", "c3", HISTORY)
    fake_time.now += 31  # c1 and c2 expired, c3 has 29 s left
    assert (await conversations.count("org-a"), await conversations.count("org-b")) == (1, 0)
    assert len(conversations) == 1  # counting dropped the expired ones


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own, emptied (and checked) afterwards."""
    prefix = f"pmtest:{secrets.token_hex(4)}:"
    yield prefix
    admin = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in admin.scan_iter(match=prefix + "*")]
        if keys:
            await admin.delete(*keys)
        assert [key async for key in admin.scan_iter(match=prefix + "*")] == []
    finally:
        await admin.aclose()


async def test_redis_conversations_count_until_they_expire(redis_prefix: str) -> None:
    fake_time = FakeTime(1_000_000.0)
    client = open_redis(REDIS_URL)
    try:
        one = RedisConversations(client, ttl_seconds=60, prefix=redis_prefix, clock=fake_time)
        two = RedisConversations(client, ttl_seconds=60, prefix=redis_prefix, clock=fake_time)  # another replica
        await one.save("org-a", "c1", HISTORY)
        await two.save("org-a", "c2", HISTORY)
        await one.save("org-a", "c2", [*HISTORY, *HISTORY])
        await one.save("org:b", "c1", HISTORY)  # escaped: not a key of "org"
        await one.save("org", "c9", HISTORY)
        assert [await two.count(o) for o in ("org-a", "org:b", "org", "org-c")] == [2, 1, 1, 0]
        fake_time.now += 30
        await one.save("org-a", "c3", HISTORY)
        fake_time.now += 31
        assert [await two.count(o) for o in ("org-a", "org:b", "org")] == [1, 0, 0]
        # The index holds only live ids: counting trimmed the expired ones.
        assert await client.zrange(one.index_key("org-a"), 0, -1) == [b"c3"]
    finally:
        await client.aclose()


async def test_redis_conversations_count_without_redis_is_unavailable(redis_prefix: str) -> None:
    client = open_redis(CLOSED_PORT_URL)
    try:
        conversations = RedisConversations(client, prefix=redis_prefix)
        with pytest.raises(Unavailable) as unavailable:
            await conversations.count("org-a")
        assert unavailable.value.reason == "CONVERSATIONS_UNAVAILABLE"
        assert not conversations.healthy
    finally:
        await client.aclose()


# GetStats over gRPC ------------------------------------------------------------

# A GitHub token: the default firewall blocks secrets in prompts.
TOKEN = "ghp_" + "".join(random.Random(3).choice(string.ascii_letters + string.digits) for _ in range(36))


def complete(text: str) -> orch.CompleteRequest:
    return orch.CompleteRequest(model="builtin", messages=[user(text)])


async def converse_one_turn(client: AsyncClient, text: str) -> chat_pb2.Usage:
    async def requests() -> AsyncIterator[orch.ConverseRequest]:
        yield orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin"))
        yield orch.ConverseRequest(turn=orch.UserTurn(turn_id="t1", content=text))

    events = await collect(client.orchestrator.Converse(requests()))
    assert events[-1].WhichOneof("event") == "finish"
    return next(e.usage for e in events if e.WhichOneof("event") == "usage")


@dataclass
class Traffic:
    deployment: str
    usages: list[chat_pb2.Usage]  # of every call that was answered
    cached: chat_pb2.Usage


async def make_traffic(client: AsyncClient) -> Traffic:
    """Five calls: answered, answered, from the cache, blocked, a Converse turn."""
    first = await client.orchestrator.Complete(complete("one two"))
    second = await client.orchestrator.Complete(complete("three four five"))
    cached = await client.orchestrator.Complete(complete("one two"))
    assert not first.start.cached and cached.start.cached
    error = await raises(client.orchestrator.Complete(complete(f"deploy with {TOKEN}")))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    turn = await converse_one_turn(client, "six")
    return Traffic(first.start.deployment.name, [first.usage, second.usage, cached.usage, turn], cached.usage)


def check_stats(stats: orch.GetStatsResponse, traffic: Traffic) -> None:
    assert stats.requests == 5
    assert stats.failed_requests == 1
    assert stats.cache_hits == 1 and stats.cache_hit_ratio == pytest.approx(1 / 5)
    assert stats.input_tokens == sum(u.input_tokens for u in traffic.usages)
    assert stats.output_tokens == sum(u.output_tokens for u in traffic.usages)
    assert stats.tokens_saved == traffic.cached.input_tokens + traffic.cached.output_tokens > 0
    [deployment] = stats.deployments
    assert deployment.deployment == traffic.deployment
    assert (deployment.requests, deployment.failed_requests) == (3, 0)  # the cache hit is not the deployment's
    assert 0 < deployment.latency_p50_ms <= deployment.latency_p99_ms
    assert deployment.time_to_first_token_p50_ms > 0
    assert list(stats.firewall) == [orch.FirewallCategoryStats(category=types.CATEGORY_SECRET, blocked=1)]
    assert stats.active_conversations == 1
    window = stats.end_time.ToDatetime() - stats.start_time.ToDatetime()
    assert window == HOUR


async def test_get_stats_end_to_end(start_server: Any) -> None:
    server = await start_server(POINTSMAN_CACHE_TTL_SECONDS=60)
    async with AsyncClient(server.address, timeout=10) as client:
        empty = await client.orchestrator.GetStats(orch.GetStatsRequest())
        assert (empty.requests, empty.cache_hit_ratio, list(empty.deployments)) == (0, 0.0, [])
        traffic = await make_traffic(client)
        # Right after the calls: GetStats waits for this replica's buffered rows.
        check_stats(await client.orchestrator.GetStats(orch.GetStatsRequest()), traffic)
        minute = await client.orchestrator.GetStats(orch.GetStatsRequest(window=Duration(seconds=60)))
        assert minute.requests == 5
        assert minute.end_time.ToDatetime() - minute.start_time.ToDatetime() == timedelta(seconds=60)


async def test_list_calls_pages_and_filters_the_request_log(start_server: Any) -> None:
    server = await start_server(POINTSMAN_CACHE_TTL_SECONDS=60)
    async with AsyncClient(server.address, timeout=10) as client:  # development mode: the admin
        traffic = await make_traffic(client)

        async def calls(**where: Any) -> list[orch.Call]:
            found: list[orch.Call] = []
            token = ""
            while True:
                page = await client.orchestrator.ListCalls(orch.ListCallsRequest(page_token=token, **where))
                found.extend(page.calls)
                token = page.next_page_token
                if not token:
                    return found

        everything = await calls(page_size=2)
        assert len(everything) == 5
        assert [c.create_time.ToNanoseconds() for c in everything] == sorted(
            (c.create_time.ToNanoseconds() for c in everything), reverse=True
        )
        assert all(c.name.startswith("calls/") and c.principal == "users/dev-admin" for c in everything)
        [blocked] = await calls(status_code="PERMISSION_DENIED")
        assert blocked.deployment == "" and blocked.input_tokens == 0
        [cached] = [c for c in everything if c.cache_hit]
        assert cached.input_tokens == traffic.cached.input_tokens
        assert cached.output_tokens == traffic.cached.output_tokens
        answered = [c for c in everything if c.status_code == "OK" and not c.cache_hit]
        assert {c.deployment for c in answered} == {traffic.deployment} and all(c.latency_ms > 0 for c in answered)
        assert await calls(model="no-such-alias") == []
        assert len(await calls(principal="users/dev-admin")) == 5
        error = await raises(client.orchestrator.ListCalls(orch.ListCallsRequest(page_token="%%%")))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        error = await raises(client.orchestrator.ListCalls(orch.ListCallsRequest(model="x" * 300)))
        assert [v.field for v in error.field_violations] == ["model"]


async def test_get_stats_costs_calls_at_the_routes_file_prices(start_server: Any, tmp_path: Path) -> None:
    price = {"input_per_million_tokens": 1000, "output_per_million_tokens": 3000}
    routes = {
        "endpoints": {"local": {"provider": "builtin"}},
        "models": {
            "priced": {"cache_ttl_seconds": 60, "deployments": [{"endpoint": "local", "model": "m", "price": price}]},
            "free": {"deployments": [{"endpoint": "local", "model": "n"}]},
        },
    }
    routes_file = tmp_path / "routes.yaml"
    routes_file.write_text(json.dumps(routes))
    server = await start_server(POINTSMAN_ROUTES_FILE=str(routes_file), POINTSMAN_METRICS_ADDRESS="127.0.0.1:0")

    def cost(usage: chat_pb2.Usage) -> float:
        return (usage.input_tokens * 1000 + usage.output_tokens * 3000) / 1_000_000

    async with AsyncClient(server.address, timeout=10) as client:

        async def ask(model: str, text: str) -> orch.CompleteResponse:
            response: orch.CompleteResponse = await client.orchestrator.Complete(
                orch.CompleteRequest(model=model, messages=[user(text)])
            )
            return response

        first, second = await ask("priced", "one two"), await ask("priced", "three four five")
        cached = await ask("priced", "one two")
        assert cached.start.cached
        await ask("free", "costs nothing")
        stats = await client.orchestrator.GetStats(orch.GetStatsRequest())
    # Each answer says what it cost; the cached one cost nothing.
    assert (first.usage.cost_usd, second.usage.cost_usd) == pytest.approx((cost(first.usage), cost(second.usage)))
    assert first.usage.cost_usd > 0 and cached.usage.cost_usd == 0
    assert stats.cost_usd == pytest.approx(cost(first.usage) + cost(second.usage)) and stats.cost_usd > 0
    assert stats.cost_saved_usd == pytest.approx(cost(cached.usage)) and stats.cost_saved_usd > 0
    by_deployment = {d.deployment: d.cost_usd for d in stats.deployments}
    assert by_deployment == pytest.approx({"local/m": stats.cost_usd, "local/n": 0.0})
    assert server.metrics_endpoint is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.metrics_endpoint.port}/metrics") as response,
    ):
        metrics = await response.text()
    counted = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "pointsman_chat_cost_usd_total" and sample.labels["deployment"] == "local/m"
    ]
    assert counted == pytest.approx([stats.cost_usd])


@pytest.mark.parametrize(
    "window",
    [Duration(seconds=-1), Duration(nanos=-1), Duration(), Duration(seconds=30 * 86400 + 1), Duration(seconds=2**62)],
)
async def test_get_stats_refuses_a_bad_window(client: AsyncClient, window: Duration) -> None:
    error = await raises(client.orchestrator.GetStats(orch.GetStatsRequest(window=window)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["window"]


async def test_get_stats_is_the_same_on_every_replica(
    redis_prefix: str,
    start_server: Any,  # after redis_prefix: the servers stop before their keys are cleaned up
    postgres_url: str,
) -> None:
    # Two replicas sharing PostgreSQL and Redis, in an organisation of this test's own.
    env = {
        "DATABASE_URL": postgres_url,
        "REDIS_URL": REDIS_URL,
        "POINTSMAN_REDIS_PREFIX": redis_prefix,
        "ORG_ID": f"org-{secrets.token_hex(4)}",
        "POINTSMAN_CACHE_TTL_SECONDS": 60,
    }
    one, two = await asyncio.gather(start_server(**env), start_server(**env))
    async with AsyncClient(one.address, timeout=10) as a, AsyncClient(two.address, timeout=10) as b:
        traffic = await make_traffic(a)
        check_stats(await a.orchestrator.GetStats(orch.GetStatsRequest()), traffic)  # lets one's rows land
        check_stats(await b.orchestrator.GetStats(orch.GetStatsRequest()), traffic)


async def test_pointsman_stats_command(start_server: Any) -> None:
    server = await start_server(POINTSMAN_CACHE_TTL_SECONDS=60)
    async with AsyncClient(server.address, timeout=10) as client:
        await make_traffic(client)

    async def run(*args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("pointsman")),
            "stats",
            "--address",
            server.address,
            *args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()
        return stdout.decode()

    as_json = json.loads(await run("--json", "--window", "600"))
    assert as_json["requests"] == "5" and as_json["activeConversations"] == "1"  # int64 is a string in JSON
    text = await run()
    assert "requests\t5\tfailed 1" in text
    assert "firewall secret\tblocked 1\tredacted 0\tlogged 0" in text
