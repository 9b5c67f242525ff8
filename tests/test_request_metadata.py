"""Request metadata (end user, tags) and provider options, end to end: a real
server with the real SDKs' request shapes, the fake OpenAI and Anthropic
upstreams saying what they received, the request log's filters and spend
groups on SQLite and PostgreSQL, and bad input refused naming the field."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import grpc
import pytest
import pytest_asyncio
import test_stores
import yaml
from google.protobuf import struct_pb2

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.backends.stores import RequestRecord, Stores
from pointsman.server.domain.ports.stores import RequestFilter, SpendGroup

from fakes.anthropic_upstream import FakeAnthropic
from fakes.openai_upstream import FakeOpenAI
from helpers_pb import user
from server_fixtures import collect, raises

OPENAI_KEY = "sk-test-0123456789abcdef0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef0123456789abcdef"

backend, clock, org, other_org, postgres_url, stores = (
    test_stores.backend,
    test_stores.clock,
    test_stores.org,
    test_stores.other_org,
    test_stores.postgres_url,
    test_stores.stores,
)
START = test_stores.START


@pytest_asyncio.fixture
async def openai_upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def anthropic_upstream() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


@pytest_asyncio.fixture
async def gateway(
    start_server: Any, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> AsyncIterator[AsyncClient]:
    server = await start_server(
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=openai_upstream.base_url,
        OPENAI_MODELS=["gpt-test"],
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_BASE_URL=anthropic_upstream.base_url,
        ANTHROPIC_MODELS=["claude-test"],
    )
    async with AsyncClient(server.address, timeout=10, retry=None) as client:
        yield client


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def chat(model: str, **fields: Any) -> orch.ChatRequest:
    return orch.ChatRequest(model=model, messages=[user("Hello there")], **fields)


# --------------------------------------------------------------------------- what upstreams receive


async def test_openai_gets_the_end_user_and_the_allowed_options(
    gateway: AsyncClient, openai_upstream: FakeOpenAI
) -> None:
    options = {"presence_penalty": 0.5, "logit_bias": {"50256": -100}, "service_tier": "flex", "store": False}
    request = chat(
        "gpt-test",
        metadata=orch.RequestMetadata(end_user_id="user-7", tags={"team": "search"}),
        provider_options=orch.ProviderOptions(openai=struct(options)),
    )
    await collect(gateway.orchestrator.Chat(request))
    sent = openai_upstream.last_request
    assert sent is not None
    assert sent["user"] == "user-7"
    assert sent["presence_penalty"] == 0.5 and sent["service_tier"] == "flex" and sent["store"] is False
    assert sent["logit_bias"] == {"50256": -100} and type(sent["logit_bias"]["50256"]) is int
    assert "metadata" not in sent  # tags stay with the gateway


async def test_anthropic_gets_the_end_user_and_its_options(
    gateway: AsyncClient, anthropic_upstream: FakeAnthropic
) -> None:
    request = orch.CompleteRequest(
        model="claude-test",
        messages=[user("Hello there")],
        metadata=orch.RequestMetadata(end_user_id="user-7"),
        provider_options=orch.ProviderOptions(anthropic=struct({"service_tier": "standard_only", "speed": "fast"})),
    )
    await gateway.orchestrator.Complete(request)
    sent = anthropic_upstream.last_request
    assert sent is not None
    assert sent["metadata"] == {"user_id": "user-7"}
    assert sent["service_tier"] == "standard_only" and sent["speed"] == "fast"


async def test_without_metadata_nothing_extra_is_sent(gateway: AsyncClient, openai_upstream: FakeOpenAI) -> None:
    await collect(gateway.orchestrator.Chat(chat("gpt-test")))
    sent = openai_upstream.last_request
    assert sent is not None and "user" not in sent and "metadata" not in sent


async def test_compare_gives_each_model_its_own_provider_section(
    gateway: AsyncClient, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    request = orch.CompareRequest(
        models=["gpt-test", "claude-test"],
        messages=[user("Hello there")],
        metadata=orch.RequestMetadata(end_user_id="user-9"),
        provider_options=orch.ProviderOptions(
            openai=struct({"verbosity": "low"}), anthropic=struct({"service_tier": "auto"})
        ),
    )
    await collect(gateway.orchestrator.Compare(request))
    assert openai_upstream.last_request is not None and anthropic_upstream.last_request is not None
    assert openai_upstream.last_request["verbosity"] == "low" and "service_tier" not in openai_upstream.last_request
    assert anthropic_upstream.last_request["service_tier"] == "auto"
    assert anthropic_upstream.last_request["metadata"] == {"user_id": "user-9"}


async def test_provider_options_are_part_of_the_cache_key_and_metadata_is_not(
    start_server: Any, openai_upstream: FakeOpenAI, tmp_path: Any
) -> None:
    routes = tmp_path / "routes.yaml"
    endpoint = {"provider": "openai", "base_url": openai_upstream.base_url, "api_key_env": "OPENAI_API_KEY"}
    cached = {"cache_ttl_seconds": 60, "deployments": [{"endpoint": "up", "model": "gpt-test"}]}
    routes.write_text(yaml.safe_dump({"endpoints": {"up": endpoint}, "models": {"cached": cached}}))
    server = await start_server(OPENAI_API_KEY=OPENAI_KEY, POINTSMAN_ROUTES_FILE=str(routes))
    async with AsyncClient(server.address, timeout=10, retry=None) as client:
        complete = client.orchestrator.Complete

        def asking(tier: str, end_user: str) -> orch.CompleteRequest:
            return orch.CompleteRequest(
                model="cached",
                messages=[user("Hello there")],
                metadata=orch.RequestMetadata(end_user_id=end_user),
                provider_options=orch.ProviderOptions(openai=struct({"service_tier": tier})),
            )

        assert not (await complete(asking("flex", "a"))).start.cached
        assert (await complete(asking("flex", "b"))).start.cached  # another end user, the same answer
        assert not (await complete(asking("priority", "a"))).start.cached


# --------------------------------------------------------------------------- the request log through the RPCs


async def test_calls_are_listed_by_end_user_and_tag_and_summed_per_tag(
    gateway: AsyncClient, openai_upstream: FakeOpenAI
) -> None:
    for end_user, team in (("u1", "search"), ("u1", "ads"), ("u2", "search")):
        meta = orch.RequestMetadata(end_user_id=end_user, tags={"team": team, "env": "prod"})
        await collect(gateway.orchestrator.Chat(chat("gpt-test", metadata=meta)))
    await collect(gateway.orchestrator.Chat(chat("gpt-test")))  # no metadata

    calls = (await gateway.orchestrator.ListCalls(orch.ListCallsRequest(end_user_id="u1"))).calls
    assert len(calls) == 2 and {c.tags["team"] for c in calls} == {"search", "ads"}
    assert all(c.end_user_id == "u1" for c in calls)
    tagged = await gateway.orchestrator.ListCalls(orch.ListCallsRequest(tags={"team": "search", "env": "prod"}))
    assert sorted(c.end_user_id for c in tagged.calls) == ["u1", "u2"]

    stats = await gateway.orchestrator.GetStats(orch.GetStatsRequest(tag_keys=["team"], by_end_user=True))
    assert stats.requests == 4
    assert {(g.tag_key, g.value): g.requests for g in stats.tags} == {("team", "search"): 2, ("team", "ads"): 1}
    assert {g.value: g.requests for g in stats.end_users} == {"u1": 2, "u2": 1}
    per_user = {g.value: g for g in stats.end_users}
    assert per_user["u1"].input_tokens > 0 and not stats.groups_truncated

    cut = await gateway.orchestrator.GetStats(orch.GetStatsRequest(tag_keys=["team"], max_groups=1))
    assert [g.value for g in cut.tags] == ["search"] and cut.groups_truncated
    plain = await gateway.orchestrator.GetStats(orch.GetStatsRequest())
    assert not plain.tags and not plain.end_users  # figures per group only when asked for


# --------------------------------------------------------------------------- bad input


BAD_REQUESTS = [
    (
        {"provider_options": orch.ProviderOptions(openai=struct({"temprature": 1}))},
        "provider_options.openai.temprature",
    ),
    ({"provider_options": orch.ProviderOptions(openai=struct({"seed": 3}))}, "provider_options.openai.seed"),
    ({"provider_options": orch.ProviderOptions(openai=struct({"user": "x"}))}, "provider_options.openai.user"),
    (
        {"provider_options": orch.ProviderOptions(openai=struct({"presence_penalty": 3}))},
        "provider_options.openai.presence_penalty",
    ),
    (
        {"provider_options": orch.ProviderOptions(openai=struct({"logit_bias": {"abc": 1}}))},
        "provider_options.openai.logit_bias.abc",
    ),
    (
        {"provider_options": orch.ProviderOptions(openai=struct({"service_tier": "cheap"}))},
        "provider_options.openai.service_tier",
    ),
    (  # gpt-test has no Anthropic deployment: refused, not silently dropped
        {"provider_options": orch.ProviderOptions(anthropic=struct({"service_tier": "auto"}))},
        "provider_options.anthropic",
    ),
    ({"metadata": orch.RequestMetadata(end_user_id="u" * 257)}, "metadata.end_user_id"),
    ({"metadata": orch.RequestMetadata(end_user_id="a\nb")}, "metadata.end_user_id"),
    ({"metadata": orch.RequestMetadata(tags={"team name": "x"})}, "metadata.tags['team name']"),
    ({"metadata": orch.RequestMetadata(tags={"team": "x" * 513})}, "metadata.tags['team']"),
    ({"metadata": orch.RequestMetadata(tags={f"k{i}": "v" for i in range(17)})}, "metadata.tags"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_REQUESTS)
async def test_bad_metadata_and_options_are_invalid_argument_naming_the_field(
    gateway: AsyncClient, openai_upstream: FakeOpenAI, fields: dict[str, Any], field: str
) -> None:
    error = await raises(collect(gateway.orchestrator.Chat(chat("gpt-test", **fields))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == [field]
    assert openai_upstream.requests_total == 0  # refused before any upstream call


async def test_anthropic_refuses_top_k_and_its_metadata_field(gateway: AsyncClient) -> None:
    options = orch.ProviderOptions(anthropic=struct({"top_k": 5, "metadata": {"user_id": "x"}}))
    error = await raises(
        gateway.orchestrator.Complete(
            orch.CompleteRequest(model="claude-test", messages=[user("hi")], provider_options=options)
        )
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field: v.description for v in error.field_violations}
    assert set(fields) == {"provider_options.anthropic.top_k", "provider_options.anthropic.metadata"}
    assert "metadata.end_user_id" in fields["provider_options.anthropic.metadata"]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (orch.GetStatsRequest(tag_keys=["a b"]), "tag_keys[0]"),
        (orch.GetStatsRequest(tag_keys=[f"k{i}" for i in range(9)]), "tag_keys"),
        (orch.GetStatsRequest(max_groups=1001), "max_groups"),
    ],
)
async def test_bad_stats_groupings_are_invalid_argument(
    gateway: AsyncClient, request_: orch.GetStatsRequest, field: str
) -> None:
    error = await raises(gateway.orchestrator.GetStats(request_))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == [field]


async def test_bad_call_filters_are_invalid_argument(gateway: AsyncClient) -> None:
    error = await raises(gateway.orchestrator.ListCalls(orch.ListCallsRequest(tags={"a=b": "c"})))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["tags['a=b']"]


# --------------------------------------------------------------------------- the stores, SQLite and PostgreSQL


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
        cost_usd=0.5,
    )
    return replace(entry, **changes)


async def test_the_store_keeps_filters_and_groups_by_end_user_and_tags(
    stores: Stores, org: str, other_org: str
) -> None:
    log = stores.requests
    await log.record_many(
        [
            call(org, 1, end_user_id="u1", tags={"team": "search", "env": "prod"}),
            call(org, 2, end_user_id="u1", tags={"team": "ads"}, cost_usd=2.0),
            call(org, 3, end_user_id="u2", tags={"team": "search"}, status_code="UNAVAILABLE"),
            call(org, 4, end_user_id="u2", tags={"team": "search"}, cache_hit=True),
            call(org, 5),
            call(other_org, 6, end_user_id="u1", tags={"team": "search"}),
        ]
    )
    page, _ = await log.list_requests(org, RequestFilter(end_user_id="u1"), 100, None)
    assert sorted(r.tags["team"] for r in page) == ["ads", "search"]
    assert {"team": "search", "env": "prod"} in [r.tags for r in page]  # kept whole
    page, _ = await log.list_requests(org, RequestFilter(tags={"team": "search"}), 100, None)
    assert len(page) == 3
    page, _ = await log.list_requests(org, RequestFilter(tags={"team": "search", "env": "prod"}), 100, None)
    assert [r.end_user_id for r in page] == ["u1"]
    assert (await log.list_requests(org, RequestFilter(tags={"team": "nobody"}), 100, None))[0] == []

    end = START + timedelta(hours=1)
    groups = await log.summarise_groups(org, START, end, ["team", "env"], True, 100)
    assert groups.tags == (
        SpendGroup("team", "ads", 1, 0, 10, 20, 0, 2.0),
        SpendGroup("team", "search", 3, 1, 30, 60, 1, 1.0),  # the cache hit cost nothing
        SpendGroup("env", "prod", 1, 0, 10, 20, 0, 0.5),
    )
    assert groups.end_users == (SpendGroup("", "u1", 2, 0, 20, 40, 0, 2.5), SpendGroup("", "u2", 2, 1, 20, 40, 1, 0.5))
    assert not groups.truncated
    cut = await log.summarise_groups(org, START, end, ["team"], False, 1)
    assert [g.value for g in cut.tags] == ["ads"] and cut.truncated and cut.end_users == ()
    # Calls outside the window, and other organisations' calls, are not counted.
    assert (await log.summarise_groups(org, end, end + timedelta(hours=1), ["team"], True, 10)).tags == ()


async def test_converse_turns_and_batch_items_carry_their_metadata(
    gateway: AsyncClient, openai_upstream: FakeOpenAI
) -> None:
    setup = orch.ConversationSetup(
        model="gpt-test",
        metadata=orch.RequestMetadata(end_user_id="talker", tags={"feature": "chat"}),
        provider_options=orch.ProviderOptions(openai=struct({"verbosity": "high"})),
    )
    requests = [
        orch.ConverseRequest(setup=setup),
        orch.ConverseRequest(turn=orch.UserTurn(turn_id="t1", content="Hello there")),
    ]
    await collect(gateway.orchestrator.Converse(iter_async(requests)))
    assert openai_upstream.last_request is not None
    assert openai_upstream.last_request["user"] == "talker" and openai_upstream.last_request["verbosity"] == "high"

    item = orch.BatchItem(
        custom_id="a",
        model="gpt-test",
        messages=[user("Hello there")],
        metadata=orch.RequestMetadata(end_user_id="batcher"),
    )
    batch = (await gateway.orchestrator.CreateBatch(orch.CreateBatchRequest(items=[item]))).batch
    await collect(gateway.orchestrator.WatchBatch(orch.WatchBatchRequest(name=batch.name)))

    for end_user in ("talker", "batcher"):
        calls = (await gateway.orchestrator.ListCalls(orch.ListCallsRequest(end_user_id=end_user))).calls
        assert len(calls) == 1, end_user


async def iter_async(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
