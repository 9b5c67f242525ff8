"""The semantic cache through a real server, the real client and a fake
upstream that counts calls: a paraphrase is answered from the cache and marked
semantic, a near neighbour reaches the upstream, organisations and
conversations stay apart, bypass skips it, and replicas share entries through
Redis. The fake upstream answers "Echo: <question>", so a replayed answer
shows which question it was given for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import yaml
from state_fixtures import REDIS_URL

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.auth import issue_token
from pointsman.server.backends.stores import UserRole
from pointsman.type.v1 import chat_pb2

from fakes.openai_upstream import FakeOpenAI
from helpers_pb import chat_request, text_of, user
from server_fixtures import collect, eventually

API_KEY = "sk-semantic-0123456789abcdef"
SECRET = "semantic-secret-that-is-long-enough-for-hs256"
QUESTION = "Who is the prime minister of Spain?"
PARAPHRASE = "Who currently leads the Spanish government as prime minister?"


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def routes_file(tmp_path: Path, upstream: FakeOpenAI) -> str:
    fake = [{"endpoint": "fake", "model": "gpt-x"}]
    routes = {
        "endpoints": {"fake": {"provider": "openai", "base_url": upstream.base_url, "api_key_env": "OPENAI_API_KEY"}},
        "models": {
            "meaning": {"semantic_cache": True, "semantic_cache_ttl_seconds": 600, "deployments": fake},
            "both": {"semantic_cache": True, "cache_ttl_seconds": 60, "deployments": fake},
            "plain": {"deployments": fake},
            "priced": {
                "semantic_cache": True,
                "deployments": [
                    {**fake[0], "price": {"input_per_million_tokens": 1000, "output_per_million_tokens": 3000}}
                ],
            },
        },
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes))
    return str(path)


@pytest_asyncio.fixture
async def gateway(start_server: Any, upstream: FakeOpenAI, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    server = await start_server(POINTSMAN_ROUTES_FILE=routes_file(tmp_path, upstream), OPENAI_API_KEY=API_KEY)
    async with AsyncClient(server.address, timeout=10) as client:
        yield client


def ask(text: str, model: str = "meaning", *, before: list[chat_pb2.ChatMessage] = (), **cache: Any) -> Any:  # type: ignore[assignment]
    request = orch.CompleteRequest(model=model, messages=[*before, user(text)])
    if cache:
        request.cache.CopyFrom(orch.CacheControl(**cache))
    return request


async def test_a_paraphrase_is_served_from_the_semantic_cache(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    first = await gateway.orchestrator.Complete(ask(QUESTION))
    second = await gateway.orchestrator.Complete(ask(PARAPHRASE))
    assert upstream.requests_total == 1
    assert not first.start.cached and first.start.cache_source == orch.CACHE_SOURCE_UNSPECIFIED
    assert second.start.cached and second.start.cache_source == orch.CACHE_SOURCE_SEMANTIC
    assert second.message.content == f"Echo: {QUESTION}"
    assert second.start.deployment.name == "fake/gpt-x"

    # A streamed Chat replays it as a stream, marked the same way.
    events = await collect(
        gateway.orchestrator.Chat(chat_request("Who leads Spain's government as prime minister?", model="meaning"))
    )
    assert events[0].start.cache_source == orch.CACHE_SOURCE_SEMANTIC
    assert text_of(events) == f"Echo: {QUESTION}" and upstream.requests_total == 1


async def test_near_neighbours_reach_the_upstream(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    pairs = [
        (QUESTION, "Who is the prime minister of Italy?"),
        ("How do I sort a list in Python in ascending order?", "How do I sort a list in Python in descending order?"),
        ("How far is 50 km in miles?", "How far is 50 miles in km?"),
        ("How do I enable dark mode in VS Code?", "How do I disable dark mode in VS Code?"),
    ]
    for question, neighbour in pairs:
        await gateway.orchestrator.Complete(ask(question))
        answer = await gateway.orchestrator.Complete(ask(neighbour))
        assert not answer.start.cached, neighbour
        assert answer.message.content == f"Echo: {neighbour}"
    assert upstream.requests_total == 2 * len(pairs)


async def test_off_unless_the_route_turns_it_on(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    await gateway.orchestrator.Complete(ask(QUESTION, "plain"))
    answer = await gateway.orchestrator.Complete(ask(PARAPHRASE, "plain"))
    assert not answer.start.cached and upstream.requests_total == 2


async def test_an_exact_repeat_is_marked_exact(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    await gateway.orchestrator.Complete(ask(QUESTION, "both"))
    exact = await gateway.orchestrator.Complete(ask(QUESTION, "both"))
    semantic = await gateway.orchestrator.Complete(ask(PARAPHRASE, "both"))
    assert exact.start.cache_source == orch.CACHE_SOURCE_EXACT
    assert semantic.start.cache_source == orch.CACHE_SOURCE_SEMANTIC
    assert upstream.requests_total == 1


async def test_bypass_skips_the_semantic_cache(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    await gateway.orchestrator.Complete(ask(QUESTION, bypass=True))  # not stored either
    answer = await gateway.orchestrator.Complete(ask(PARAPHRASE))
    assert not answer.start.cached
    bypassed = await gateway.orchestrator.Complete(ask("Who is Spain's prime minister?", bypass=True))
    assert not bypassed.start.cached and upstream.requests_total == 3


async def test_the_conversation_before_the_last_turn_must_match(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    history = [
        user("We are talking about Europe."),
        chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, content="Sure."),
    ]
    other = [user("We are talking about history."), chat_pb2.ChatMessage(role=chat_pb2.ROLE_ASSISTANT, content="Sure.")]
    await gateway.orchestrator.Complete(ask(QUESTION, before=history))
    same = await gateway.orchestrator.Complete(ask(PARAPHRASE, before=history))
    assert same.start.cache_source == orch.CACHE_SOURCE_SEMANTIC
    for before in (other, []):
        answer = await gateway.orchestrator.Complete(ask(PARAPHRASE, before=before))
        assert not answer.start.cached
    # The system prompt and the config are part of the scope too.
    answer = await gateway.orchestrator.Complete(
        ask(PARAPHRASE, before=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content="Be terse.")])
    )
    assert not answer.start.cached
    request = ask(PARAPHRASE, before=history)
    request.config.temperature = 0.9
    assert not (await gateway.orchestrator.Complete(request)).start.cached


async def test_another_organisation_never_sees_an_entry(
    start_server: Any, upstream: FakeOpenAI, tmp_path: Path
) -> None:
    server = await start_server(
        POINTSMAN_ROUTES_FILE=routes_file(tmp_path, upstream),
        OPENAI_API_KEY=API_KEY,
        POINTSMAN_DEV_MODE=False,
        JWT_SECRET=SECRET,
    )
    async with (
        AsyncClient(server.address, token=token_of("org-a"), timeout=10) as a,
        AsyncClient(server.address, token=token_of("org-b"), timeout=10) as b,
    ):
        await a.orchestrator.Complete(ask(QUESTION))
        assert not (await b.orchestrator.Complete(ask(PARAPHRASE))).start.cached
        reused = await a.orchestrator.Complete(ask(PARAPHRASE))
        assert reused.start.cache_source == orch.CACHE_SOURCE_SEMANTIC
        assert reused.message.content == f"Echo: {QUESTION}"
    assert upstream.requests_total == 2


async def test_every_route_with_the_environment_switch(start_server: Any, upstream: FakeOpenAI) -> None:
    server = await start_server(
        OPENAI_API_KEY=API_KEY, OPENAI_BASE_URL=upstream.base_url, OPENAI_MODELS="gpt-x", POINTSMAN_SEMANTIC_CACHE=True
    )
    async with AsyncClient(server.address, timeout=10) as client:
        await client.orchestrator.Complete(ask(QUESTION, "gpt-x"))
        answer = await client.orchestrator.Complete(ask(PARAPHRASE, "gpt-x"))
    assert answer.start.cache_source == orch.CACHE_SOURCE_SEMANTIC and upstream.requests_total == 1


async def test_replicas_share_entries_through_redis(
    start_server: Any, upstream: FakeOpenAI, tmp_path: Path, redis_prefix: str
) -> None:
    env = {
        "POINTSMAN_ROUTES_FILE": routes_file(tmp_path, upstream),
        "OPENAI_API_KEY": API_KEY,
        "REDIS_URL": REDIS_URL,
        "POINTSMAN_REDIS_PREFIX": redis_prefix,
    }
    first = await start_server(**env)
    second = await start_server(**env)
    async with AsyncClient(first.address, timeout=10) as a, AsyncClient(second.address, timeout=10) as b:
        await a.orchestrator.Complete(ask(QUESTION))
        # The entry travels through a Redis stream: wait until the second replica has filed it.
        await eventually(lambda: len(second.orchestrator.semantic.index) == 1)
        answer = await b.orchestrator.Complete(ask(PARAPHRASE))
        assert answer.start.cache_source == orch.CACHE_SOURCE_SEMANTIC
        assert answer.message.content == f"Echo: {QUESTION}"
        # A replica started later reads the entries written before it.
        third = await start_server(**env)
        await eventually(lambda: len(third.orchestrator.semantic.index) == 1)
    assert upstream.requests_total == 1


async def test_get_stats_counts_semantic_hits_and_what_they_saved(gateway: AsyncClient) -> None:
    await gateway.orchestrator.Complete(ask(QUESTION, "priced"))
    hit = await gateway.orchestrator.Complete(ask(PARAPHRASE, "priced"))
    await gateway.orchestrator.Complete(ask(QUESTION, "both"))
    await gateway.orchestrator.Complete(ask(QUESTION, "both"))  # an exact hit
    stats = await gateway.orchestrator.GetStats(orch.GetStatsRequest())
    assert stats.cache_hits == 2 and stats.semantic_cache_hits == 1
    tokens = hit.usage.input_tokens + hit.usage.output_tokens
    assert tokens > 0 and stats.semantic_tokens_saved == tokens
    expected = (hit.usage.input_tokens * 1000 + hit.usage.output_tokens * 3000) / 1_000_000
    assert abs(stats.semantic_cost_saved_usd - expected) < 1e-9


def token_of(organisation: str) -> str:
    token, _ = issue_token(
        SECRET,
        subject=f"admin-{organisation}",
        organisation=organisation,
        role=UserRole.ADMIN,
        email=f"admin@{organisation}.test",
        issuer="pointsman",
        audience="pointsman",
        ttl_seconds=600,
    )
    return token
