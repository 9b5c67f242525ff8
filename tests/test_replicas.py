"""Several replicas on one PostgreSQL database and one Redis, and what each
replica does when one of them goes away: real servers on port 0, the real
databases, outages made by refusing connections or cutting a proxy."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from state_fixtures import REDIS_URL, PostgresDatabase
from test_shared_backends import RedisProxy

from pointsman.auth.v1 import auth_pb2
from pointsman.client import AsyncClient, PointsmanError
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from helpers_pb import chat_request, text_of
from server_fixtures import collect, eventually, raises

pytestmark = pytest.mark.slow  # outages, restarts and workers: seconds per test


def complete(text: str, **fields: Any) -> orch.CompleteRequest:
    return orch.CompleteRequest(model="builtin", messages=chat_request(text).messages, **fields)


def block_rule(word: str) -> fw.CreateRuleRequest:
    return fw.CreateRuleRequest(
        rule=fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_SUBSTRING, pattern=word, enabled=True)
    )


async def is_blocked(client: AsyncClient, text: str) -> bool:
    try:
        await client.orchestrator.Complete(complete(text))
    except Exception as error:
        if getattr(error, "code", None) == grpc.StatusCode.PERMISSION_DENIED:
            return True
        raise
    return False


async def health_of(client: AsyncClient, service: str) -> int:
    return await client.health(service)


@pytest.fixture
async def replica_servers(redis_prefix: str, postgres_database: PostgresDatabase, start_server: Any) -> tuple[Any, Any]:
    shared = {
        "DATABASE_URL": postgres_database.url,
        "REDIS_URL": REDIS_URL,
        "POINTSMAN_REDIS_PREFIX": redis_prefix,
        "POINTSMAN_CACHE_TTL_SECONDS": 60,
    }
    return await start_server(**shared), await start_server(**shared)


@pytest.fixture
async def two_replicas(replica_servers: tuple[Any, Any]) -> tuple[AsyncClient, AsyncClient]:
    first, second = replica_servers
    a, b = AsyncClient(first.address, timeout=10), AsyncClient(second.address, timeout=10)
    yield a, b
    await a.close()
    await b.close()


async def test_a_rule_created_on_one_replica_blocks_on_the_other(two_replicas: Any) -> None:
    a, b = two_replicas
    assert not await is_blocked(b, "tell me about pineapples")  # B has compiled its (empty) rules
    await a.firewall.CreateRule(block_rule("pineapple"))
    await eventually(lambda: is_blocked(b, "tell me about pineapples"))


async def test_a_rule_change_reaches_watchers_on_the_other_replica(two_replicas: Any) -> None:
    a, b = two_replicas
    watch = b.firewall.WatchRules(fw.WatchRulesRequest())
    first = await anext(watch)
    assert first.WhichOneof("event") == "snapshot"
    created = (await a.firewall.CreateRule(block_rule("mango"))).rule
    change = await asyncio.wait_for(anext(watch), 5)
    assert change.change.rule.name == created.name
    assert change.change.change_type == fw.CHANGE_TYPE_CREATED
    await watch.aclose()


async def test_a_conversation_started_on_one_replica_continues_on_the_other(two_replicas: Any) -> None:
    a, b = two_replicas

    async def turns(*requests: orch.ConverseRequest) -> Any:
        for request in requests:
            yield request

    started = await collect(
        a.orchestrator.Converse(
            turns(
                orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin")),
                orch.ConverseRequest(turn=orch.UserTurn(turn_id="t1", content="first on A")),
            )
        )
    )
    conversation = started[0].started.conversation
    resumed = await collect(
        b.orchestrator.Converse(
            turns(
                orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin", conversation=conversation)),
                orch.ConverseRequest(turn=orch.UserTurn(turn_id="t2", content="then on B")),
            )
        )
    )
    assert resumed[0].started.history_length == 2  # the turn A answered
    assert text_of([e for e in resumed if e.turn_id == "t2"]).endswith("then on B")


async def test_an_answer_cached_by_one_replica_is_a_hit_on_the_other(two_replicas: Any) -> None:
    a, b = two_replicas
    first = await a.orchestrator.Complete(complete("cache me across replicas"))
    assert not first.start.cached
    second = await b.orchestrator.Complete(complete("cache me across replicas"))
    assert second.start.cached
    assert second.message.content == first.message.content


async def test_an_api_key_revoked_on_one_replica_stops_on_the_other_at_once(
    two_replicas: Any, replica_servers: Any
) -> None:
    a, _ = two_replicas  # development mode: calls without a credential act as the dev admin
    created = await a.auth.CreateApiKey(auth_pb2.CreateApiKeyRequest(display_name="ci"))
    async with AsyncClient(replica_servers[1].address, api_key=created.key, timeout=10) as with_key:
        me = await with_key.auth.WhoAmI(auth_pb2.WhoAmIRequest())  # B now holds the key in its cache
        assert me.principal.name == created.api_key.user
        await a.auth.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(name=created.api_key.name))
        # Well within B's cache lifetime (30 s): the revocation reached B on the bus.
        await eventually(lambda: refused(with_key, "CREDENTIAL_INVALID"), timeout=5)


async def refused(client: AsyncClient, reason: str) -> bool:
    """Whether the client's credential is refused now, for `reason`."""
    try:
        await client.auth.WhoAmI(auth_pb2.WhoAmIRequest())
    except PointsmanError as error:
        assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == reason
        return True
    return False


async def test_a_token_revoked_on_one_replica_is_refused_on_the_other_at_once(
    redis_prefix: str, postgres_database: PostgresDatabase, start_server: Any
) -> None:
    shared = {
        "DATABASE_URL": postgres_database.url,
        "REDIS_URL": REDIS_URL,
        "POINTSMAN_REDIS_PREFIX": redis_prefix,
        "JWT_SECRET": "a-secret-both-replicas-sign-and-verify-with",
    }
    a_server, b_server = await start_server(**shared), await start_server(**shared)
    async with AsyncClient(a_server.address, timeout=10) as anonymous:
        login = await anonymous.auth.Login(auth_pb2.LoginRequest(email="developer@pointsman.dev"))
    async with (
        AsyncClient(a_server.address, token=login.access_token, timeout=10) as on_a,
        AsyncClient(b_server.address, token=login.access_token, timeout=10) as on_b,
    ):
        await on_b.auth.WhoAmI(auth_pb2.WhoAmIRequest())  # B has verified (and cached) the token
        await on_a.auth.RevokeToken(auth_pb2.RevokeTokenRequest(token=login.access_token))
        # Well within B's reload period (30 s): the revocation reached B on the bus.
        await eventually(lambda: refused(on_b, "CREDENTIAL_REVOKED"), timeout=5)


async def test_rate_limits_are_shared_by_replicas(
    redis_prefix: str, postgres_database: PostgresDatabase, start_server: Any
) -> None:
    shared = {
        "DATABASE_URL": postgres_database.url,
        "REDIS_URL": REDIS_URL,
        "POINTSMAN_REDIS_PREFIX": redis_prefix,
        # One call per minute per organisation, a burst of two.
        "POINTSMAN_RATE_LIMIT_ORG_RPS": 1 / 60,
        "POINTSMAN_RATE_LIMIT_ORG_BURST": 2,
    }
    servers = [await start_server(**shared), await start_server(**shared)]
    async with AsyncClient(servers[0].address) as a, AsyncClient(servers[1].address) as b:
        await a.orchestrator.Complete(complete("one"))
        await b.orchestrator.Complete(complete("two"))
        error = await raises(a.orchestrator.Complete(complete("three")))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "RATE_LIMITED"
    assert 0 < error.retry_delay <= 60


async def test_redis_outage_serves_without_shared_state_and_recovers(redis_prefix: str, start_server: Any) -> None:
    proxy = RedisProxy(REDIS_URL)
    await proxy.start()
    try:
        server = await start_server(
            REDIS_URL=proxy.url, POINTSMAN_REDIS_PREFIX=redis_prefix, POINTSMAN_CACHE_TTL_SECONDS=60
        )
        async with AsyncClient(server.address, timeout=10) as client:
            assert await health_of(client, "dependencies/redis") == health_pb2.HealthCheckResponse.SERVING
            await proxy.stop()
            answer = await client.orchestrator.Complete(complete("still answering"))
            assert answer.message.content.endswith("still answering")
            await eventually(
                lambda: _status_is(client, "dependencies/redis", health_pb2.HealthCheckResponse.NOT_SERVING)
            )
            assert await health_of(client, "") == health_pb2.HealthCheckResponse.SERVING
            await proxy.start()
            await eventually(
                lambda: _status_is(client, "dependencies/redis", health_pb2.HealthCheckResponse.SERVING), timeout=15
            )
            # The shared cache works again: an answer stored now is found in Redis.
            await client.orchestrator.Complete(complete("after the outage"))
            again = await client.orchestrator.Complete(complete("after the outage"))
            assert again.start.cached
    finally:
        if proxy._server is not None:
            await proxy.stop()


async def _status_is(client: AsyncClient, service: str, status: int) -> bool:
    return await health_of(client, service) == status


async def test_database_outage_keeps_enforcing_rules_and_loses_no_decision(
    postgres_database: PostgresDatabase, start_server: Any
) -> None:
    server = await start_server(DATABASE_URL=postgres_database.url)
    async with AsyncClient(server.address, timeout=10) as client:
        await client.firewall.CreateRule(block_rule("durian"))
        assert await is_blocked(client, "durian please")
        await server.state.decisions.buffer.flushed()
        before = await postgres_database.fetchval("SELECT count(*) FROM decisions")

        await postgres_database.set_down(True)
        # The rules loaded before the outage are still enforced; other prompts pass.
        for _ in range(5):
            assert await is_blocked(client, "durian again")
            assert not await is_blocked(client, "an apple")
        await eventually(
            lambda: _status_is(client, "dependencies/database", health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        assert server.state.decisions.buffer.pending == 15
        # What needs the database now is UNAVAILABLE, worth retrying, not an internal error.
        error = await raises(client.firewall.CreateRule(block_rule("rambutan")))
        assert error.code == grpc.StatusCode.UNAVAILABLE and error.reason == "DATABASE_UNAVAILABLE"
        assert error.retry_delay is not None and "durian" not in str(error)

        await postgres_database.set_down(False)
        await eventually(lambda: server.state.decisions.buffer.pending == 0, timeout=15)
        await eventually(lambda: _status_is(client, "dependencies/database", health_pb2.HealthCheckResponse.SERVING))
    after = await postgres_database.fetchval("SELECT count(*) FROM decisions")
    assert after == before + 15  # a decision per prompt, and per answer of the five that passed
    assert server.state.decisions.buffer.dropped == 0


async def test_shutdown_writes_what_the_buffers_hold(postgres_database: PostgresDatabase, start_server: Any) -> None:
    server = await start_server(DATABASE_URL=postgres_database.url)
    async with AsyncClient(server.address, timeout=10) as client:
        for i in range(20):
            await client.orchestrator.Complete(complete(f"request {i}"))
    await server.stop(grace=1)
    assert await postgres_database.fetchval("SELECT count(*) FROM request_log") == 20
    assert await postgres_database.fetchval("SELECT count(*) FROM decisions") == 40  # prompt and answer each
