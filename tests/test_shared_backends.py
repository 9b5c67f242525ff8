"""One conformance suite per shared-state interface (response cache and single
flight, conversations, bus, rate limits, breaker opens), run against the
in-process implementation and a real Redis. Each test writes under a key prefix
of its own and, at teardown, deletes everything under it and checks with SCAN
that nothing is left. Outages are made with a closed port and with a TCP proxy
in front of Redis that the test stops and starts again; the real Redis server,
shared with others on this machine, is never touched."""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from pointsman.server.backends.shared import (
    BucketPolicy,
    InProcessBus,
    InProcessConversations,
    InProcessRateLimiter,
    InProcessResponseCache,
    LocalOpenState,
    RateLimiter,
    RedisBus,
    RedisConversations,
    RedisFlightLock,
    RedisHealth,
    RedisOpenState,
    RedisRateLimiter,
    RedisResponseCache,
    TwoLevelCache,
    open_redis,
)
from pointsman.server.backends.shared.cache import decode_answer, encode_answer
from pointsman.server.backends.shared.conversation_store import ConversationStore
from pointsman.server.domain.breaker import BreakerPolicy, CircuitBreaker, share_opens
from pointsman.server.domain.broadcast import SubscriberTooSlow
from pointsman.server.domain.cache_key import cache_key
from pointsman.server.domain.chat import (
    ChatRequest,
    Finish,
    FinishReason,
    GenerationConfig,
    Message,
    Role,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from pointsman.server.domain.errors import NotFound, Unavailable
from pointsman.server.domain.ports.bus import Bus, BusMessage, EventsMissed
from pointsman.server.domain.ports.cache import CachedAnswer, ResponseCache
from pointsman.server.domain.ports.conversations import Conversations
from pointsman.server.domain.single_flight import Outcome, SingleFlight

REDIS_URL = os.environ.get("POINTSMAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
RUN_PREFIX = f"pmtest:{secrets.token_hex(4)}:"


# Set-up -----------------------------------------------------------------------


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    """Polls `predicate` (sync or async) until true, failing after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _keys_under(client: Redis, prefix: str) -> list[bytes]:
    return [key async for key in client.scan_iter(match=prefix + "*", count=1000)]


@pytest.fixture(scope="session", autouse=True)
async def nothing_left_behind() -> AsyncIterator[None]:
    yield
    admin = Redis.from_url(REDIS_URL)
    try:
        assert await _keys_under(admin, RUN_PREFIX) == []
    finally:
        await admin.aclose()


@dataclass
class RedisEnv:
    """A test's own key prefix, and the clients it opened (closed after)."""

    url: str
    prefix: str
    clients: list[Redis] = field(default_factory=list)

    def client(self, url: str | None = None) -> Redis:
        client = open_redis(url or self.url)
        self.clients.append(client)
        return client


@pytest.fixture
async def redis_env() -> AsyncIterator[RedisEnv]:
    env = RedisEnv(REDIS_URL, f"{RUN_PREFIX}{secrets.token_hex(3)}:")
    yield env
    for client in env.clients:
        await client.aclose()
    admin = Redis.from_url(REDIS_URL)
    try:
        keys = await _keys_under(admin, env.prefix)
        if keys:
            await admin.delete(*keys)
        assert await _keys_under(admin, env.prefix) == []
    finally:
        await admin.aclose()


class RedisProxy:
    """A TCP proxy to the real Redis that can be taken down (dropping every
    connection, as a Redis restart does) and brought back on the same port."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, RuntimeError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers.difference_update((writer, upstream_writer))


@pytest.fixture
async def redis_proxy() -> AsyncIterator[RedisProxy]:
    proxy = RedisProxy(REDIS_URL)
    await proxy.start()
    yield proxy
    if proxy._server is not None:
        await proxy.stop()


@pytest.fixture
def org() -> str:
    return f"org-a-{secrets.token_hex(3)}"


@pytest.fixture
def other_org() -> str:
    return f"org-b-{secrets.token_hex(3)}"


def an_answer(text: str = "Paris is the capital of France.") -> CachedAnswer:
    return CachedAnswer(
        deployment="openai-eu",
        text=text,
        tool_calls=(ToolCall("call_1", "lookup", '{"city": "Paris"}'),),
        usage=Usage(12, 7),
        finish_reason=FinishReason.LENGTH,
    )


# Response cache ----------------------------------------------------------------


@pytest.fixture(params=["in_process", "redis", "two_level"])
def make_cache(request: pytest.FixtureRequest, redis_env: RedisEnv) -> Callable[[], ResponseCache]:
    """Each call is another replica's cache (in-process ones share nothing)."""

    def make() -> ResponseCache:
        if request.param == "in_process":
            return InProcessResponseCache()
        redis_cache = RedisResponseCache(redis_env.client(), prefix=redis_env.prefix)
        if request.param == "redis":
            return redis_cache
        return TwoLevelCache(InProcessResponseCache(), redis_cache)

    return make


async def test_cache_round_trips_everything_a_replay_needs(make_cache: Callable[[], ResponseCache], org: str) -> None:
    cache = make_cache()
    answer = an_answer("Ünïcode ✓ " * 100)
    await cache.put(org, "k1", answer, ttl_seconds=60)
    got = await cache.get(org, "k1")
    assert got is not None and got == answer
    assert list(got.replay()) == [
        TextDelta(answer.text),
        ToolCallDelta(0, "call_1", "lookup", '{"city": "Paris"}'),
        Usage(12, 7),
        Finish(FinishReason.LENGTH),
    ]
    hit = await cache.lookup(org, "k1")
    assert hit is not None and 0 < hit.ttl_seconds <= 60
    assert await cache.get(org, "unknown") is None
    assert cache.stats.hits >= 1 and cache.stats.misses >= 1


async def test_cache_replays_text_in_chunks() -> None:
    answer = CachedAnswer("d", "abcdefg")
    assert [e for e in answer.replay(chunk_chars=3) if isinstance(e, TextDelta)] == [
        TextDelta("abc"),
        TextDelta("def"),
        TextDelta("g"),
    ]
    assert list(CachedAnswer("d", "").replay()) == [Finish(FinishReason.STOP)]


def test_cached_answer_encoding_is_compact_and_round_trips() -> None:
    answer = an_answer()
    data = encode_answer(answer, 123)
    assert decode_answer(data) == (answer, 123)
    assert len(data) < len(answer.text) + 150
    plain = CachedAnswer("d", "hi")
    assert decode_answer(encode_answer(plain, 1)) == (plain, 1)
    estimated = CachedAnswer("d", "hi", usage=Usage(5, 1, estimated=True))
    assert decode_answer(encode_answer(estimated, 1)) == (estimated, 1)


async def test_cache_entries_are_partitioned_by_organisation(
    make_cache: Callable[[], ResponseCache], org: str, other_org: str
) -> None:
    cache = make_cache()
    await cache.put(org, "shared-key", an_answer("for org a"), ttl_seconds=60)
    assert await cache.get(other_org, "shared-key") is None
    await cache.put(other_org, "shared-key", an_answer("for org b"), ttl_seconds=60)
    assert (await cache.get(org, "shared-key")) == an_answer("for org a")
    assert (await cache.get(other_org, "shared-key")) == an_answer("for org b")
    # An organisation's name cannot be used to reach into another's keys.
    await cache.put(f"{org}:x", "k", an_answer("for org a:x"), ttl_seconds=60)
    assert await cache.get(org, "x:k") is None
    with pytest.raises(ValueError):
        await cache.put("", "k", an_answer(), ttl_seconds=60)


async def test_cache_entries_expire(make_cache: Callable[[], ResponseCache], org: str) -> None:
    cache = make_cache()
    await cache.put(org, "short", an_answer(), ttl_seconds=0.5)
    await cache.put(org, "long", an_answer(), ttl_seconds=60)
    await eventually(lambda: _is_missing(cache, org, "short"), what="the entry to expire")
    assert await cache.get(org, "long") is not None
    await cache.put(org, "never", an_answer(), ttl_seconds=0)
    assert await cache.get(org, "never") is None


async def _is_missing(cache: ResponseCache, org: str, key: str) -> bool:
    return await cache.get(org, key) is None


async def test_cache_is_shared_by_replicas_through_redis(
    make_cache: Callable[[], ResponseCache], request: pytest.FixtureRequest, org: str
) -> None:
    one, two = make_cache(), make_cache()
    await one.put(org, "k", an_answer(), ttl_seconds=60)
    expected = None if "in_process" in request.node.callspec.id else an_answer()
    assert await two.get(org, "k") == expected


async def test_two_level_cache_fills_l1_on_an_l2_hit_for_no_longer_than_l2_keeps_it(
    redis_env: RedisEnv, org: str
) -> None:
    writer = TwoLevelCache(InProcessResponseCache(), RedisResponseCache(redis_env.client(), prefix=redis_env.prefix))
    reader_l1 = InProcessResponseCache()
    reader = TwoLevelCache(reader_l1, RedisResponseCache(redis_env.client(), prefix=redis_env.prefix))
    await writer.put(org, "k", an_answer(), ttl_seconds=30)
    assert reader_l1.lookup_now(org, "k") is None
    assert await reader.get(org, "k") == an_answer()
    filled = reader_l1.lookup_now(org, "k")
    assert filled is not None and filled.ttl_seconds <= 30
    assert reader.l2.stats.hits == 1
    assert await reader.get(org, "k") == an_answer()
    assert reader.l2.stats.hits == 1  # the second read was served by L1


async def test_in_process_cache_evicts_least_recently_used_entries(org: str) -> None:
    cache = InProcessResponseCache(max_entries=3)
    for key in ("a", "b", "c"):
        await cache.put(org, key, an_answer(), ttl_seconds=60)
    assert await cache.get(org, "a") is not None  # now most recent
    await cache.put(org, "d", an_answer(), ttl_seconds=60)
    assert await cache.get(org, "b") is None
    assert all([await cache.get(org, key) for key in ("a", "c", "d")])
    assert len(cache) == 3 and cache.stats.evictions == 1


async def test_in_process_cache_holds_to_its_byte_bound(org: str) -> None:
    one = an_answer("x" * 1000)
    cache = InProcessResponseCache(max_bytes=3 * one.approximate_size())
    for index in range(10):
        await cache.put(org, f"k{index}", one, ttl_seconds=60)
        assert cache.size_bytes <= 3 * one.approximate_size()
    assert len(cache) == 3
    assert [await cache.get(org, f"k{i}") is not None for i in range(10)] == [False] * 7 + [True] * 3
    await cache.put(org, "huge", an_answer("x" * 10_000), ttl_seconds=60)
    assert await cache.get(org, "huge") is None  # larger than the whole cache: not stored


async def test_redis_cache_reads_a_corrupt_value_as_a_miss(redis_env: RedisEnv, org: str) -> None:
    client = redis_env.client()
    cache = RedisResponseCache(client, prefix=redis_env.prefix)
    await client.set(cache.redis_key(org, "k"), b"not json", px=60_000)
    assert await cache.get(org, "k") is None
    assert cache.stats.corrupt == 1


# The key -----------------------------------------------------------------------


def a_request(**changes: Any) -> ChatRequest:
    config = GenerationConfig(
        temperature=0.0,
        top_p=1,
        max_tokens=100,
        stop=("END", "STOP"),
        seed=7,
        tools=(Tool("lookup", "Find a city", {"type": "object", "properties": {"city": {"type": "string"}}}),),
    )
    messages = [
        Message(Role.SYSTEM, "Be brief."),
        Message(Role.USER, "Capital of France?", name="alice"),
        Message(Role.ASSISTANT, "", tool_calls=(ToolCall("call_1", "lookup", '{"city": "Paris", "n": 1}'),)),
        Message(Role.TOOL, "Paris", tool_call_id="call_1"),
    ]
    request = ChatRequest("gpt-4o-mini", messages, config)
    for name, value in changes.items():
        if name in {"model", "messages"}:
            setattr(request, name, value)
        else:
            request.config = replace(request.config, **{name: value})
    return request


def test_cache_key_is_the_same_for_requests_that_mean_the_same() -> None:
    key = cache_key(a_request())
    assert len(key) == 64 and key == cache_key(a_request())
    same = a_request(temperature=0, top_p=1.0, stop=("STOP", "END", "END"))
    same.messages[2] = Message(Role.ASSISTANT, "", tool_calls=(ToolCall("call_1", "lookup", '{"n":1,"city":"Paris"}'),))
    same.config = replace(
        same.config,
        tools=(Tool("lookup", "Find a city", {"properties": {"city": {"type": "string"}}, "type": "object"}),),
    )
    assert cache_key(same) == key


@pytest.mark.parametrize(
    "changes",
    [
        {"model": "gpt-4o"},
        {"temperature": 0.5},
        {"temperature": None},
        {"top_p": 0.9},
        {"max_tokens": 101},
        {"stop": ("END",)},
        {"seed": 8},
        {"seed": None},
        {"tools": ()},
        {"tools": (Tool("lookup", "Find a town", {"type": "object"}),)},
    ],
    ids=lambda c: ",".join(c),
)
def test_cache_key_changes_with_anything_the_model_sees(changes: dict[str, Any]) -> None:
    assert cache_key(a_request(**changes)) != cache_key(a_request())


@pytest.mark.parametrize(
    "message",
    [
        Message(Role.USER, "Capital of France? "),
        Message(Role.SYSTEM, "Capital of France?", name="alice"),
        Message(Role.USER, "Capital of France?", name="bob"),
        Message(Role.USER, "Capital of France?", name="alice", tool_call_id="x"),
        Message(Role.USER, "Capital of France?", name="alice", tool_calls=(ToolCall("c", "f", "{}"),)),
    ],
)
def test_cache_key_changes_with_any_part_of_a_message(message: Message) -> None:
    request = a_request()
    request.messages[1] = message
    assert cache_key(request) != cache_key(a_request())


def test_cache_key_is_the_same_in_another_process() -> None:
    script = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
        "from test_shared_backends import a_request, cache_key; print(cache_key(a_request()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert output.stdout.strip() == cache_key(a_request())


# Single flight -----------------------------------------------------------------


@dataclass
class Upstream:
    """Counts calls; each call waits for `gate` (so the test decides when the
    answer comes) and may be told to fail."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    calls: int = 0
    fail_first: int = 0

    async def call(self) -> CachedAnswer:
        self.calls += 1
        number = self.calls
        await self.gate.wait()
        if number <= self.fail_first:
            raise RuntimeError("upstream failed")
        return an_answer(f"answer {number}")


async def ask(flights: SingleFlight, org: str, key: str, upstream: Upstream, ttl: float = 60) -> tuple[Outcome, str]:
    async with flights.join(org, key) as flight:
        if flight.answer is not None:
            return flight.outcome, flight.answer.text
        answer = await upstream.call()
        await flight.deliver(answer, ttl)
        return flight.outcome, answer.text


async def test_identical_concurrent_requests_share_one_upstream_call(org: str) -> None:
    flights = SingleFlight(InProcessResponseCache())
    upstream = Upstream()
    tasks = [asyncio.create_task(ask(flights, org, "k", upstream)) for _ in range(20)]
    await eventually(lambda: flights.stats.waiting == 19, what="19 requests waiting")
    upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert upstream.calls == 1
    assert {text for _, text in results} == {"answer 1"}
    assert sorted(outcome.value for outcome, _ in results).count("shared") == 19
    assert await ask(flights, org, "k", upstream) == (Outcome.CACHED, "answer 1")
    # Another organisation's identical request is its own flight.
    assert await ask(flights, f"{org}-other", "k", upstream) == (Outcome.LEADER, "answer 2")


async def test_a_waiting_request_leads_when_the_leader_fails(org: str) -> None:
    flights = SingleFlight(InProcessResponseCache())
    upstream = Upstream(fail_first=1)
    tasks = [asyncio.create_task(ask(flights, org, "k", upstream)) for _ in range(5)]
    await eventually(lambda: flights.stats.waiting == 4, what="4 requests waiting")
    upstream.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    assert upstream.calls == 2
    assert {r[1] for r in results if isinstance(r, tuple)} == {"answer 2"}


async def test_an_answer_not_stored_is_still_shared_with_those_waiting(org: str) -> None:
    cache = InProcessResponseCache()
    flights = SingleFlight(cache)
    upstream = Upstream()
    tasks = [asyncio.create_task(ask(flights, org, "k", upstream, ttl=0)) for _ in range(3)]
    await eventually(lambda: flights.stats.waiting == 2, what="2 requests waiting")
    upstream.gate.set()
    assert {text for _, text in await asyncio.gather(*tasks)} == {"answer 1"}
    assert await cache.get(org, "k") is None


def replica_flights(redis_env: RedisEnv, wait_seconds: float = 10.0) -> SingleFlight:
    client = redis_env.client()
    health = RedisHealth()
    cache = TwoLevelCache(InProcessResponseCache(), RedisResponseCache(client, prefix=redis_env.prefix, health=health))
    lock = RedisFlightLock(client, prefix=redis_env.prefix, health=health)
    return SingleFlight(cache, lock, wait_seconds=wait_seconds, poll_seconds=0.01)


async def test_identical_requests_on_two_replicas_share_one_upstream_call(redis_env: RedisEnv, org: str) -> None:
    one, two = replica_flights(redis_env), replica_flights(redis_env)
    upstream = Upstream()
    tasks = [asyncio.create_task(ask(flights, org, "k", upstream)) for flights in (one, two) for _ in range(10)]
    await eventually(lambda: one.stats.waiting + two.stats.waiting == 19, what="19 requests waiting")
    upstream.gate.set()
    results = await asyncio.gather(*tasks)
    assert upstream.calls == 1
    assert {text for _, text in results} == {"answer 1"}
    assert one.stats.leaders + two.stats.leaders == 1


async def test_a_replica_takes_over_when_the_lock_holder_gives_up(redis_env: RedisEnv, org: str) -> None:
    one, two = replica_flights(redis_env), replica_flights(redis_env)
    upstream = Upstream(fail_first=1)
    first = asyncio.create_task(ask(one, org, "k", upstream))
    await eventually(lambda: upstream.calls == 1, what="the first replica to call upstream")
    second = asyncio.create_task(ask(two, org, "k", upstream))
    await eventually(lambda: two.stats.waiting == 1, what="the second replica to wait")
    upstream.gate.set()
    with pytest.raises(RuntimeError):
        await first
    assert await second == (Outcome.LEADER, "answer 2")


async def test_a_replica_calls_upstream_itself_when_the_lock_holder_is_too_slow(redis_env: RedisEnv, org: str) -> None:
    one, two = replica_flights(redis_env, wait_seconds=0.2), replica_flights(redis_env, wait_seconds=0.2)
    stuck = Upstream()  # never answers until the end of the test
    first = asyncio.create_task(ask(one, org, "k", stuck))
    await eventually(lambda: stuck.calls == 1, what="the first replica to call upstream")
    quick = Upstream()
    quick.gate.set()
    # The lock expired or the wait ran out, whichever came first: either way it leads.
    assert await ask(two, org, "k", quick) == (Outcome.LEADER, "answer 1")
    stuck.gate.set()
    await first


# Conversations -----------------------------------------------------------------


@pytest.fixture(params=["in_process", "redis"])
def make_conversations(request: pytest.FixtureRequest, redis_env: RedisEnv) -> Callable[..., Conversations]:
    def make(ttl_seconds: float = 3600) -> Conversations:
        if request.param == "in_process":
            return InProcessConversations(ConversationStore(ttl_seconds=ttl_seconds))
        return RedisConversations(redis_env.client(), ttl_seconds=ttl_seconds, prefix=redis_env.prefix)

    return make


def a_history() -> list[Message]:
    return [
        Message(Role.SYSTEM, "Be brief."),
        Message(Role.USER, "Weather in Paris?", name="alice"),
        Message(Role.ASSISTANT, "", tool_calls=(ToolCall("call_1", "weather", '{"city":"Paris"}'),)),
        Message(Role.TOOL, "Sunny", tool_call_id="call_1"),
        Message(Role.ASSISTANT, "Sunny ☀"),
    ]


async def test_conversations_round_trip_and_replace(make_conversations: Callable[..., Conversations], org: str) -> None:
    conversations = make_conversations()
    conversation_id = conversations.new_id()
    assert conversation_id != conversations.new_id()
    await conversations.save(org, conversation_id, a_history())
    loaded = await conversations.load(org, conversation_id)
    assert loaded == a_history()
    loaded.append(Message(Role.USER, "not saved"))
    assert await conversations.load(org, conversation_id) == a_history()
    await conversations.save(org, conversation_id, [*a_history(), Message(Role.USER, "and tomorrow?")])
    assert len(await conversations.load(org, conversation_id)) == 6


async def test_unknown_and_foreign_conversations_are_not_found(
    make_conversations: Callable[..., Conversations], org: str, other_org: str
) -> None:
    conversations = make_conversations()
    with pytest.raises(NotFound) as unknown:
        await conversations.load(org, "nope")
    assert unknown.value.reason == "CONVERSATION_NOT_FOUND"
    conversation_id = conversations.new_id()
    await conversations.save(org, conversation_id, a_history())
    with pytest.raises(NotFound) as foreign:
        await conversations.load(other_org, conversation_id)
    assert foreign.value.reason == "CONVERSATION_NOT_FOUND"


async def test_a_deleted_conversation_is_gone_and_no_longer_counted(
    make_conversations: Callable[..., Conversations], org: str, other_org: str
) -> None:
    conversations = make_conversations()
    kept, deleted = conversations.new_id(), conversations.new_id()
    for conversation_id in (kept, deleted):
        await conversations.save(org, conversation_id, a_history())
    with pytest.raises(NotFound):
        await conversations.delete(other_org, deleted)  # another organisation's: not there for it
    assert await conversations.count(org) == 2
    await conversations.delete(org, deleted)
    with pytest.raises(NotFound) as gone:
        await conversations.load(org, deleted)
    assert gone.value.reason == "CONVERSATION_NOT_FOUND"
    assert await conversations.count(org) == 1 and await conversations.load(org, kept) == a_history()
    with pytest.raises(NotFound):
        await conversations.delete(org, deleted)


async def test_conversations_expire(make_conversations: Callable[..., Conversations], org: str) -> None:
    conversations = make_conversations(ttl_seconds=0.3)
    conversation_id = conversations.new_id()
    await conversations.save(org, conversation_id, a_history())

    async def gone() -> bool:
        try:
            await conversations.load(org, conversation_id)
        except NotFound:
            return True
        return False

    await eventually(gone, what="the conversation to expire")


async def test_a_conversation_continues_on_another_replica(redis_env: RedisEnv, org: str) -> None:
    one = RedisConversations(redis_env.client(), prefix=redis_env.prefix)
    two = RedisConversations(redis_env.client(), prefix=redis_env.prefix)
    conversation_id = one.new_id()
    await one.save(org, conversation_id, a_history())
    assert await two.load(org, conversation_id) == a_history()


# Bus -------------------------------------------------------------------------


@pytest.fixture(params=["in_process", "redis"])
async def make_bus(request: pytest.FixtureRequest, redis_env: RedisEnv) -> AsyncIterator[Callable[..., Bus]]:
    """Each call is another replica's bus: a separate Redis connection, or
    (in-process) the one bus of the one process."""
    made: list[Bus] = []
    in_process: dict[int, InProcessBus] = {}

    def make(max_pending: int = 1000) -> Bus:
        bus: Bus
        if request.param == "in_process":
            bus = in_process.setdefault(max_pending, InProcessBus(max_pending))
        else:
            bus = RedisBus(redis_env.client(), prefix=redis_env.prefix, max_pending=max_pending)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.aclose()


async def collect(subscription: Any, count: int) -> list[Any]:
    events = []
    async for event in subscription:
        events.append(event)
        if len(events) == count:
            break
    return events


async def test_bus_delivers_every_message_in_order_to_every_subscriber(make_bus: Callable[..., Bus]) -> None:
    one, two = make_bus(), make_bus()
    subscribers = [await one.subscribe("rules"), await two.subscribe("rules"), await two.subscribe("rules")]
    readers = [asyncio.create_task(collect(s, 100)) for s in subscribers]
    for index in range(100):
        await one.publish("rules", {"n": index})
    for reader in readers:
        events = await asyncio.wait_for(reader, 10)
        assert [e.json()["n"] for e in events] == list(range(100))
        assert {e.topic for e in events} == {"rules"}


async def test_bus_keeps_topics_apart_and_payloads_intact(make_bus: Callable[..., Bus]) -> None:
    one, two = make_bus(), make_bus()
    rules, instances = await two.subscribe("rules"), await two.subscribe("instances")
    await one.publish("instances", b"\x00\xffraw")
    await one.publish("rules", {"rule": "r1", "text": "é"})
    assert await asyncio.wait_for(collect(rules, 1), 10) == [BusMessage("rules", b'{"rule":"r1","text":"\xc3\xa9"}')]
    assert await asyncio.wait_for(collect(instances, 1), 10) == [BusMessage("instances", b"\x00\xffraw")]


async def test_a_slow_subscriber_is_ended_and_others_carry_on(make_bus: Callable[..., Bus]) -> None:
    one, two = make_bus(max_pending=5), make_bus(max_pending=5)
    slow = await two.subscribe("rules")
    fast = await two.subscribe("rules")
    fast_events: list[Any] = []
    fast_reader = asyncio.create_task(_read_into(fast, fast_events))
    for index in range(20):
        await one.publish("rules", {"n": index})
        await eventually(lambda: len(fast_events) == index + 1, what=f"message {index}")  # noqa: B023
    assert [e.json()["n"] for e in fast_events] == list(range(20))
    received = []
    with pytest.raises(SubscriberTooSlow):
        async for event in slow:
            assert isinstance(event, BusMessage)
            received.append(event.json()["n"])
    assert received == list(range(5))
    fast_reader.cancel()


async def test_a_closed_subscription_ends_and_receives_nothing(make_bus: Callable[..., Bus]) -> None:
    one, two = make_bus(), make_bus()
    gone = await two.subscribe("rules")
    kept = await two.subscribe("rules")
    gone.close()
    await one.publish("rules", {"n": 1})
    assert [e.json() for e in await asyncio.wait_for(collect(kept, 1), 10)] == [{"n": 1}]
    assert await asyncio.wait_for(collect(gone, 1), 10) == []


async def test_redis_bus_unsubscribes_when_its_last_subscriber_leaves(redis_env: RedisEnv) -> None:
    bus = RedisBus(redis_env.client(), prefix=redis_env.prefix)
    admin = redis_env.client()
    subscription = await bus.subscribe("rules")

    async def subscribers() -> int:
        counts = await admin.pubsub_numsub(bus.channel("rules"))
        return int(counts[0][1])

    assert await subscribers() == 1
    subscription.close()
    await eventually(lambda: _equals(subscribers(), 0), what="UNSUBSCRIBE")
    await bus.aclose()


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def test_redis_bus_tells_subscribers_of_missed_events_after_reconnecting(
    redis_env: RedisEnv, redis_proxy: RedisProxy
) -> None:
    publisher = RedisBus(redis_env.client(), prefix=redis_env.prefix)
    watcher = RedisBus(redis_env.client(redis_proxy.url), prefix=redis_env.prefix)
    subscription = await watcher.subscribe("rules")
    events: list[Any] = []
    reader = asyncio.create_task(_read_into(subscription, events))
    await publisher.publish("rules", {"n": 1})
    await eventually(lambda: len(events) == 1, what="the first message")

    await redis_proxy.stop()
    await eventually(lambda: not watcher.healthy, what="the watcher to notice the outage")
    await publisher.publish("rules", {"n": 2})  # lost: nobody is connected to hear it
    await redis_proxy.start()
    await eventually(lambda: len(events) == 2, what="the missed-events notice")
    assert events[1] == EventsMissed("rules")
    assert watcher.healthy and watcher.stats.reconnects == 1
    await publisher.publish("rules", {"n": 3})
    await eventually(lambda: len(events) == 3, what="a message after reconnecting")
    assert events[2].json() == {"n": 3}
    reader.cancel()
    await publisher.aclose()
    await watcher.aclose()


async def _read_into(subscription: Any, events: list[Any]) -> None:
    async for event in subscription:
        events.append(event)


# Rate limits -------------------------------------------------------------------


@pytest.fixture(params=["in_process", "redis"])
def make_limiter(request: pytest.FixtureRequest, redis_env: RedisEnv) -> Callable[[BucketPolicy], RateLimiter]:
    def make(policy: BucketPolicy) -> RateLimiter:
        if request.param == "in_process":
            return InProcessRateLimiter(policy)
        return RedisRateLimiter(redis_env.client(), policy, prefix=redis_env.prefix)

    return make


async def test_rate_limit_allows_a_burst_then_refuses_with_retry_after(
    make_limiter: Callable[[BucketPolicy], RateLimiter],
) -> None:
    # One token per 1000 s: the few milliseconds the test takes refill nothing
    # that matters, so retry_after is (tokens short) x 1000 s.
    limiter = make_limiter(BucketPolicy(rate_per_second=0.001, burst=3))
    assert [(await limiter.try_acquire("org:a")).allowed for _ in range(3)] == [True] * 3
    allowed, retry_after = await limiter.try_acquire("org:a")
    assert not allowed and 900 < retry_after <= 1000
    assert (await limiter.try_acquire("org:b", cost=2)).allowed  # its own bucket
    allowed, retry_after = await limiter.try_acquire("org:b", cost=3)
    assert not allowed and 1900 < retry_after <= 2000  # two tokens short
    assert (await limiter.try_acquire("org:b")).allowed  # the refusal took nothing
    assert await limiter.try_acquire("org:b", cost=4) == (False, math.inf)
    assert limiter.stats.allowed == 5 and limiter.stats.denied == 3


async def test_rate_limit_refills(make_limiter: Callable[[BucketPolicy], RateLimiter]) -> None:
    limiter = make_limiter(BucketPolicy(rate_per_second=20, burst=1))
    assert (await limiter.try_acquire("p")).allowed
    assert not (await limiter.try_acquire("p")).allowed

    async def allowed_again() -> bool:
        return (await limiter.try_acquire("p")).allowed

    await eventually(allowed_again, what="the bucket to refill")


async def test_replicas_draw_from_one_redis_bucket_that_expires_when_idle(redis_env: RedisEnv) -> None:
    policy = BucketPolicy(rate_per_second=0.01, burst=5)
    client = redis_env.client()
    one = RedisRateLimiter(client, policy, prefix=redis_env.prefix)
    two = RedisRateLimiter(redis_env.client(), policy, prefix=redis_env.prefix)
    results = await asyncio.gather(*(limiter.try_acquire("org:a") for limiter in (one, two) * 5))
    assert sum(r.allowed for r in results) == 5
    ttl_ms = await client.pttl(one.redis_key("org:a"))
    assert 0 < ttl_ms <= (5 / 0.01 + 1) * 1000


# Breaker opens -----------------------------------------------------------------


async def test_local_open_state_shares_nothing() -> None:
    state = LocalOpenState()
    await state.start()
    state.announce_open("d", time.time() + 30)
    await state.publish_open("d", time.time() + 30)
    assert state.opened_until("d") == 0.0 and not state.is_open("d")
    await state.aclose()


async def replica_open_state(redis_env: RedisEnv, refresh_seconds: float = 3600) -> tuple[RedisOpenState, RedisBus]:
    """By default only the bus can tell this replica of an open in time."""
    client = redis_env.client()
    bus = RedisBus(client, prefix=redis_env.prefix)
    state = RedisOpenState(client, bus, prefix=redis_env.prefix, refresh_seconds=refresh_seconds)
    await state.start()
    return state, bus


async def test_a_breaker_opened_on_one_replica_is_open_on_the_other(redis_env: RedisEnv) -> None:
    (one, one_bus), (two, two_bus) = await replica_open_state(redis_env), await replica_open_state(redis_env)
    until = time.time() + 30
    await one.publish_open("openai-eu", until)
    await eventually(lambda: two.opened_until("openai-eu") == pytest.approx(until, abs=0.002), what="the open")
    assert two.is_open("openai-eu") and not two.is_open("anthropic-us")
    await one.publish_open("openai-eu", until - 10)  # a shorter open does not shorten it
    await two.refresh()
    assert two.opened_until("openai-eu") == pytest.approx(until, abs=0.002)
    for closable in (one, two, one_bus, two_bus):
        await closable.aclose()


async def test_a_replica_that_missed_the_announcement_reads_it_from_redis(redis_env: RedisEnv) -> None:
    one, one_bus = await replica_open_state(redis_env)
    until = time.time() + 30
    await one.publish_open("openai-eu", until)
    late, late_bus = await replica_open_state(redis_env, refresh_seconds=0.02)
    await eventually(lambda: late.is_open("openai-eu"), what="the refresh")
    for closable in (one, late, one_bus, late_bus):
        await closable.aclose()


async def test_a_tripped_circuit_breaker_announces_its_open(redis_env: RedisEnv) -> None:
    (one, one_bus), (two, two_bus) = await replica_open_state(redis_env), await replica_open_state(redis_env)
    policy = BreakerPolicy(consecutive_failures=2, cooldown_seconds=30)
    breaker = CircuitBreaker("openai-eu", policy)
    share_opens(breaker, one, policy.cooldown_seconds)
    breaker.record_failure()
    breaker.record_failure()
    await eventually(lambda: two.is_open("openai-eu"), what="the announcement")
    for closable in (one, two, one_bus, two_bus):
        await closable.aclose()


# Degradation -------------------------------------------------------------------


async def test_cache_without_redis_misses_drops_and_says_unhealthy(redis_env: RedisEnv, org: str) -> None:
    dead = RedisResponseCache(redis_env.client(CLOSED_PORT_URL), prefix=redis_env.prefix)
    assert dead.healthy
    assert await dead.get(org, "k") is None
    await dead.put(org, "k", an_answer(), ttl_seconds=60)
    assert await dead.get(org, "k") is None
    assert not dead.healthy
    assert dead.stats.errors + dead.stats.skipped == 3 and dead.stats.errors >= 1
    # In front of a dead L2, the in-process level still serves.
    two_level = TwoLevelCache(InProcessResponseCache(), dead)
    await two_level.put(org, "k", an_answer(), ttl_seconds=60)
    assert await two_level.get(org, "k") == an_answer()
    assert not two_level.healthy


async def test_an_unreachable_redis_is_probed_by_one_call_per_backoff(redis_env: RedisEnv, org: str) -> None:
    now = [1000.0]
    health = RedisHealth(min_backoff_seconds=1.0, clock=lambda: now[0])
    dead = RedisResponseCache(redis_env.client(CLOSED_PORT_URL), prefix=redis_env.prefix, health=health)
    await dead.get(org, "k")
    assert (health.failures, health.skipped) == (1, 0)
    await asyncio.gather(*(dead.get(org, "k") for _ in range(50)))
    assert (health.failures, health.skipped) == (1, 50)  # not one connection attempt
    now[0] += 1.0
    await asyncio.gather(*(dead.get(org, "k") for _ in range(50)))
    assert (health.failures, health.skipped) == (2, 99)  # one probe, the rest skipped


async def test_the_other_backends_without_redis_fail_as_documented(redis_env: RedisEnv, org: str) -> None:
    client = redis_env.client(CLOSED_PORT_URL)
    conversations = RedisConversations(client, prefix=redis_env.prefix)
    with pytest.raises(Unavailable) as unavailable:
        await conversations.load(org, "c1")
    assert unavailable.value.reason == "CONVERSATIONS_UNAVAILABLE"
    with pytest.raises(Unavailable):
        await conversations.save(org, "c1", a_history())
    assert not conversations.healthy and conversations.errors == 2

    fail_open = RedisRateLimiter(client, BucketPolicy(1, 1), prefix=redis_env.prefix)
    assert await fail_open.try_acquire("k") == (True, 0.0)
    assert fail_open.stats.failed_open == 1 and not fail_open.healthy
    fail_closed = RedisRateLimiter(client, BucketPolicy(1, 1), prefix=redis_env.prefix, fail_open=False)
    assert await fail_closed.try_acquire("k") == (False, 1.0)
    assert fail_closed.stats.failed_closed == 1

    bus = RedisBus(client, prefix=redis_env.prefix, confirm_timeout_seconds=0.05)
    await bus.publish("rules", {"n": 1})
    assert bus.stats.publish_errors == 1
    subscription = await bus.subscribe("rules")  # returns; owed an EventsMissed once connected
    assert not subscription.confirmed and not bus.healthy
    await bus.aclose()

    flights = SingleFlight(
        RedisResponseCache(client, prefix=redis_env.prefix), RedisFlightLock(client, prefix=redis_env.prefix)
    )
    upstream = Upstream()
    upstream.gate.set()
    assert await ask(flights, org, "k", upstream) == (Outcome.LEADER, "answer 1")

    state = RedisOpenState(client, InProcessBus(), prefix=redis_env.prefix)
    await state.publish_open("d", time.time() + 30)
    assert state.errors == 1 and state.is_open("d")  # still known locally


async def test_backends_recover_when_redis_returns(redis_env: RedisEnv, redis_proxy: RedisProxy, org: str) -> None:
    client = redis_env.client(redis_proxy.url)
    health = RedisHealth(min_backoff_seconds=0.05, max_backoff_seconds=0.2)
    cache = RedisResponseCache(client, prefix=redis_env.prefix, health=health)
    limiter = RedisRateLimiter(client, BucketPolicy(0.001, 1), prefix=redis_env.prefix, health=health)
    await cache.put(org, "k", an_answer(), ttl_seconds=60)
    assert await cache.get(org, "k") == an_answer()

    await redis_proxy.stop()
    assert await cache.get(org, "k") is None
    assert (await limiter.try_acquire("p")).allowed
    assert not cache.healthy and not limiter.healthy and limiter.stats.failed_open == 1

    changes: list[bool] = []
    health.subscribe(changes.append)
    await redis_proxy.start()
    await eventually(lambda: _equals(cache.get(org, "k"), an_answer()), what="the cache to recover")
    assert cache.healthy and limiter.healthy and changes == [True]
    assert (await limiter.try_acquire("p")).allowed
    assert not (await limiter.try_acquire("p")).allowed  # limits are shared again
