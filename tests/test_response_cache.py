"""The response cache through a real server and the real `openai` SDK: a
repeated request is answered without the upstream, identical requests in
flight share one upstream call, per-request control works, and only clean,
complete answers are kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
import yaml
from google.protobuf.duration_pb2 import Duration

from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from fakes.openai_upstream import FakeOpenAI
from helpers_pb import chat_request, text_of
from server_fixtures import collect, raises

API_KEY = "sk-cache-0123456789abcdef"


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def gateway(start_server: Any, upstream: FakeOpenAI, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    routes = {
        "endpoints": {"fake": {"provider": "openai", "base_url": upstream.base_url, "api_key_env": "OPENAI_API_KEY"}},
        "models": {
            "cached": {"cache_ttl_seconds": 60, "deployments": [{"endpoint": "fake", "model": "gpt-x"}]},
            "slow-cached": {"cache_ttl_seconds": 60, "deployments": [{"endpoint": "fake", "model": "slow-30"}]},
            "uncached": {"deployments": [{"endpoint": "fake", "model": "gpt-x"}]},
            "cut": {"cache_ttl_seconds": 60, "deployments": [{"endpoint": "fake", "model": "fault-cut+slow-20"}]},
        },
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes))
    server = await start_server(POINTSMAN_ROUTES_FILE=str(path), OPENAI_API_KEY=API_KEY)
    async with AsyncClient(server.address, timeout=10) as client:
        yield client


def complete(text: str, model: str, **cache: Any) -> orch.CompleteRequest:
    request = orch.CompleteRequest(model=model, messages=chat_request(text).messages)
    if cache:
        request.cache.CopyFrom(orch.CacheControl(**cache))
    return request


async def test_a_repeated_request_is_served_from_the_cache(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    first = await gateway.orchestrator.Complete(complete("hello cache", "cached"))
    second = await gateway.orchestrator.Complete(complete("hello cache", "cached"))
    assert upstream.requests_total == 1
    assert not first.start.cached and second.start.cached
    assert second.start.deployment.name == "fake/gpt-x"
    assert second.message.content == first.message.content == "Echo: hello cache"
    assert second.usage == first.usage and second.finish.reason == orch.FINISH_REASON_STOP

    # A streamed Chat replays it as a stream, with the same framing.
    events = await collect(gateway.orchestrator.Chat(chat_request("hello cache", model="cached")))
    assert events[0].start.cached and text_of(events) == "Echo: hello cache"
    assert events[-1].HasField("finish") and upstream.requests_total == 1


async def test_different_requests_and_uncached_models_reach_the_upstream(
    gateway: AsyncClient, upstream: FakeOpenAI
) -> None:
    await gateway.orchestrator.Complete(complete("one", "cached"))
    await gateway.orchestrator.Complete(complete("two", "cached"))
    request = complete("one", "cached")
    request.config.temperature = 0.3  # part of the key
    await gateway.orchestrator.Complete(request)
    await gateway.orchestrator.Complete(complete("same", "uncached"))
    await gateway.orchestrator.Complete(complete("same", "uncached"))
    assert upstream.requests_total == 5


async def test_per_request_bypass_and_ttl(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    await gateway.orchestrator.Complete(complete("bypass me", "cached", bypass=True))
    await gateway.orchestrator.Complete(complete("bypass me", "cached"))
    assert upstream.requests_total == 2  # the bypassed answer was not stored

    # A TTL on the request caches a model whose route does not.
    ttl = Duration(seconds=60)
    await gateway.orchestrator.Complete(complete("keep me", "uncached", ttl=ttl))
    again = await gateway.orchestrator.Complete(complete("keep me", "uncached", ttl=ttl))
    assert again.start.cached and upstream.requests_total == 3

    error = await raises(gateway.orchestrator.Complete(complete("x", "cached", ttl=Duration(seconds=-1))))
    assert {v.field for v in error.field_violations} == {"cache.ttl"}


async def test_identical_requests_in_flight_share_one_upstream_call(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    answers = await asyncio.gather(
        *(gateway.orchestrator.Complete(complete("together now", "slow-cached")) for _ in range(8))
    )
    assert upstream.requests_total == 1
    assert {a.message.content for a in answers} == {"Echo: together now"}
    assert sum(not a.start.cached for a in answers) == 1


async def test_incomplete_and_filtered_answers_are_not_kept(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    for _ in range(2):
        await raises(collect(gateway.orchestrator.Chat(chat_request("a b c d e f", model="cut"))))
    assert upstream.requests_total == 2

    await gateway.firewall.CreateRule(
        fw.CreateRuleRequest(
            rule=fw.Rule(
                kind=fw.RULE_KIND_BLOCK,
                match_type=fw.MATCH_TYPE_SUBSTRING,
                pattern="classified",
                scope=fw.RULE_SCOPE_OUTPUT,
                enabled=True,
            )
        )
    )
    for _ in range(2):
        answer = await gateway.orchestrator.Complete(complete("the classified plan", "cached"))
        assert answer.finish.reason == orch.FINISH_REASON_CONTENT_FILTER
    assert upstream.requests_total == 4


async def test_a_replayed_answer_meets_the_output_rules_of_now(gateway: AsyncClient, upstream: FakeOpenAI) -> None:
    for _ in range(2):  # the second replay finds the answer's scan in the firewall's cache
        assert (await gateway.orchestrator.Complete(complete("the secret recipe", "cached"))).message.content
    decisions = (await gateway.firewall.ListDecisions(fw.ListDecisionsRequest())).decisions
    assert len(decisions) == 4  # each prompt and each answer, replays included

    await gateway.firewall.CreateRule(
        fw.CreateRuleRequest(
            rule=fw.Rule(
                kind=fw.RULE_KIND_BLOCK,
                match_type=fw.MATCH_TYPE_SUBSTRING,
                pattern="recipe",
                scope=fw.RULE_SCOPE_OUTPUT,
                enabled=True,
            )
        )
    )
    replay = await gateway.orchestrator.Complete(complete("the secret recipe", "cached"))
    assert replay.start.cached
    assert replay.finish.reason == orch.FINISH_REASON_CONTENT_FILTER
    assert "recipe" not in replay.message.content
    assert upstream.requests_total == 1


async def test_organisations_do_not_share_entries(start_server: Any, upstream: FakeOpenAI, tmp_path: Path) -> None:
    routes = {
        "endpoints": {"fake": {"provider": "openai", "base_url": upstream.base_url}},
        "models": {"cached": {"cache_ttl_seconds": 60, "deployments": [{"endpoint": "fake", "model": "gpt-x"}]}},
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes))
    server_a = await start_server(POINTSMAN_ROUTES_FILE=str(path), ORG_ID="org-a")
    async with AsyncClient(server_a.address, timeout=10) as client:
        await client.orchestrator.Complete(complete("private", "cached"))
    # Same process-wide cache object per server; a server for another
    # organisation must miss even when the cache is shared (Redis, later).
    flights = server_a.orchestrator.flights
    assert flights is not None
    assert await flights.cache.get("org-b", _key_of(server_a, "private")) is None
    assert await flights.cache.get("org-a", _key_of(server_a, "private")) is not None


def _key_of(server: Any, text: str) -> str:
    from pointsman.server.domain.cache_key import cache_key
    from pointsman.server.domain.chat import ChatRequest, Message, Role

    return cache_key(ChatRequest("cached", [Message(Role.USER, text)]))
