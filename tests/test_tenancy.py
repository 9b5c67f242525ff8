"""Tenancy through a real server with auth on: the organisation comes from the
credential, and one organisation never sees, changes or reuses another's
rules, decisions, conversations, batches, instances or cached answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest_asyncio
import yaml
from google.protobuf import field_mask_pb2

from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.registry.v1 import registry_pb2 as reg
from pointsman.server.auth import issue_token
from pointsman.server.backends.stores import UserRole
from pointsman.type.v1 import firewall_pb2 as types

from fakes.openai_upstream import FakeOpenAI
from helpers_pb import chat_request, user
from server_fixtures import collect, raises

SECRET = "tenancy-secret-that-is-long-enough-for-hs256"


def admin_of(organisation: str) -> str:
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


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def orgs(
    start_server: Any, upstream: FakeOpenAI, tmp_path: Path
) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    """Clients for organisations A and B on one server with auth on."""
    routes = {
        "endpoints": {"fake": {"provider": "openai", "base_url": upstream.base_url, "api_key_env": "OPENAI_API_KEY"}},
        "models": {
            "builtin-ish": {"deployments": [{"endpoint": "fake", "model": "gpt-x"}]},
            "cached": {"cache_ttl_seconds": 60, "deployments": [{"endpoint": "fake", "model": "gpt-x"}]},
        },
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes))
    server = await start_server(
        POINTSMAN_ROUTES_FILE=str(path),
        OPENAI_API_KEY="sk-tenancy-0123456789abcdef",
        POINTSMAN_DEV_MODE=False,
        JWT_SECRET=SECRET,
    )
    async with (
        AsyncClient(server.address, token=admin_of("org-a"), timeout=10) as a,
        AsyncClient(server.address, token=admin_of("org-b"), timeout=10) as b,
    ):
        yield a, b


def block_rule(pattern: str) -> fw.Rule:
    return fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_SUBSTRING, pattern=pattern, enabled=True)


async def test_rules_are_invisible_and_untouchable_across_organisations(orgs: tuple[AsyncClient, AsyncClient]) -> None:
    a, b = orgs
    rule = (await a.firewall.CreateRule(fw.CreateRuleRequest(rule=block_rule("falcon")))).rule

    for attempt in (
        b.firewall.GetRule(fw.GetRuleRequest(name=rule.name)),
        b.firewall.UpdateRule(
            fw.UpdateRuleRequest(
                rule=fw.Rule(name=rule.name, enabled=False), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])
            )
        ),
        b.firewall.DeleteRule(fw.DeleteRuleRequest(name=rule.name)),
    ):
        error = await raises(attempt)
        assert error.code == grpc.StatusCode.NOT_FOUND
    assert not (await b.firewall.ListRules(fw.ListRulesRequest())).rules
    # A's rule is intact and does not block B's prompts.
    kept = (await a.firewall.GetRule(fw.GetRuleRequest(name=rule.name))).rule
    assert kept.pattern == "falcon" and kept.enabled
    assert (await b.firewall.Scan(fw.ScanRequest(text="project falcon"))).verdict.action == types.ACTION_ALLOW


async def test_a_rule_watch_sees_only_its_own_organisation(orgs: tuple[AsyncClient, AsyncClient]) -> None:
    a, b = orgs
    watch = b.firewall.WatchRules(fw.WatchRulesRequest()).__aiter__()
    assert (await watch.__anext__()).HasField("snapshot")
    await a.firewall.CreateRule(fw.CreateRuleRequest(rule=block_rule("only-a")))
    mine = (await b.firewall.CreateRule(fw.CreateRuleRequest(rule=block_rule("only-b")))).rule
    # Events arrive in order, so A's change would have come first.
    assert (await watch.__anext__()).change.rule.name == mine.name
    await watch.aclose()


async def test_decisions_are_listed_only_to_their_organisation(orgs: tuple[AsyncClient, AsyncClient]) -> None:
    a, b = orgs
    await a.firewall.CreateRule(fw.CreateRuleRequest(rule=block_rule("classified")))
    scanned = await a.firewall.Scan(fw.ScanRequest(text="the classified plan"))
    theirs = (await b.firewall.ListDecisions(fw.ListDecisionsRequest())).decisions
    ours = (await a.firewall.ListDecisions(fw.ListDecisionsRequest())).decisions
    assert scanned.verdict.decision in [d.name for d in ours]
    assert scanned.verdict.decision not in [d.name for d in theirs]


async def converse(client: AsyncClient, setup: orch.ConversationSetup, *turns: str) -> list[orch.ConverseResponse]:
    queue: asyncio.Queue[orch.ConverseRequest | None] = asyncio.Queue()
    await queue.put(orch.ConverseRequest(setup=setup))
    for i, text in enumerate(turns):
        await queue.put(orch.ConverseRequest(turn=orch.UserTurn(turn_id=f"t{i}", content=text)))
    await queue.put(None)

    async def requests() -> AsyncIterator[orch.ConverseRequest]:
        while (item := await queue.get()) is not None:
            yield item

    return await collect(client.orchestrator.Converse(requests()))


async def test_a_conversation_cannot_be_resumed_by_another_organisation(
    orgs: tuple[AsyncClient, AsyncClient],
) -> None:
    a, b = orgs
    events = await converse(a, orch.ConversationSetup(model="builtin-ish"), "my secret plan")
    conversation = events[0].started.conversation
    error = await raises(converse(b, orch.ConversationSetup(model="builtin-ish", conversation=conversation)))
    assert error.code == grpc.StatusCode.NOT_FOUND
    for reach in (
        b.orchestrator.GetConversation(orch.GetConversationRequest(name=conversation)),
        b.orchestrator.DeleteConversation(orch.DeleteConversationRequest(name=conversation)),
    ):
        assert (await raises(reach)).code == grpc.StatusCode.NOT_FOUND
    resumed = await converse(a, orch.ConversationSetup(model="builtin-ish", conversation=conversation))
    assert resumed[0].started.history_length == 2


async def test_batches_are_invisible_across_organisations(orgs: tuple[AsyncClient, AsyncClient]) -> None:
    a, b = orgs
    items = [orch.BatchItem(custom_id="one", model="builtin-ish", messages=[user("batch question")])]
    batch = (await a.orchestrator.CreateBatch(orch.CreateBatchRequest(items=items))).batch
    error = await raises(b.orchestrator.GetBatch(orch.GetBatchRequest(name=batch.name)))
    assert error.code == grpc.StatusCode.NOT_FOUND
    error = await raises(collect(b.orchestrator.WatchBatch(orch.WatchBatchRequest(name=batch.name))))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert (await a.orchestrator.GetBatch(orch.GetBatchRequest(name=batch.name))).batch.name == batch.name


async def test_instances_are_invisible_across_organisations(orgs: tuple[AsyncClient, AsyncClient]) -> None:
    a, b = orgs
    registered = await a.registry.RegisterInstance(
        reg.RegisterInstanceRequest(instance=reg.Instance(instance_id="a-1", address="10.0.0.1:50051"))
    )
    name = registered.instance.name
    error = await raises(b.registry.GetInstance(reg.GetInstanceRequest(name=name)))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert not (await b.registry.ListInstances(reg.ListInstancesRequest())).instances
    error = await raises(b.registry.DeregisterInstance(reg.DeregisterInstanceRequest(name=name)))
    assert error.code == grpc.StatusCode.NOT_FOUND
    assert [i.name for i in (await a.registry.ListInstances(reg.ListInstancesRequest())).instances] == [name]


async def test_a_cached_answer_is_not_a_hit_for_another_organisation(
    orgs: tuple[AsyncClient, AsyncClient], upstream: FakeOpenAI
) -> None:
    a, b = orgs
    request = orch.CompleteRequest(model="cached", messages=chat_request("the same question").messages)
    first = await a.orchestrator.Complete(request)
    assert not first.start.cached and upstream.requests_total == 1
    theirs = await b.orchestrator.Complete(request)
    assert not theirs.start.cached and upstream.requests_total == 2
    again = await a.orchestrator.Complete(request)
    assert again.start.cached and upstream.requests_total == 2
