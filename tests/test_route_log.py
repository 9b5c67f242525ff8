"""What a router alias decided, kept and shown: the request log's route class,
routed model and decision (migration 0010) through real servers on SQLite and
PostgreSQL, ListCalls filtered by class, GetStats per router and class, the
CLI; Compare and a judge taking router aliases; health reporting
`models/{router}` while any model it routes to is serving."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import test_stores
import yaml
from grpc_health.v1 import health_pb2
from test_route_classes import CODE, MATH

from pointsman.cli.main import main as cli_main
from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.backends.stores import RequestRecord, Stores
from pointsman.server.backends.stores.migrate import load_migrations
from pointsman.server.domain.chat import RouteDecision
from pointsman.server.domain.ports.stores import RequestFilter, SpendGroup

from fakes.openai_upstream import FakeOpenAI
from helpers_pb import user
from server_fixtures import eventually, raises

backend, clock, org, other_org, postgres_url, stores = (
    test_stores.backend,
    test_stores.clock,
    test_stores.org,
    test_stores.other_org,
    test_stores.postgres_url,
    test_stores.stores,
)
Backend = test_stores.Backend
START = test_stores.START
API_KEY = "sk-test-0123456789abcdef0123456789abcdef"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

BROKEN = ["Frobnicate the widget.", "Please frobnicate it again.", "Can you frobnicate this for me?"]


def routes(upstream_url: str) -> dict[str, Any]:
    offline = {"endpoint": "offline"}
    return {
        # One failure opens a circuit, for a long time: health is read before it closes.
        "defaults": {
            "retry": {"retries": 0, "backoff_base_ms": 1, "backoff_max_ms": 5},
            "circuit_breaker": {"consecutive_failures": 1, "cooldown_seconds": 300},
        },
        "endpoints": {
            "offline": {"provider": "builtin"},
            "fake": {"provider": "openai", "base_url": upstream_url, "api_key_env": "OPENAI_API_KEY"},
        },
        "models": {
            "coder": {"deployments": [{**offline, "model": "coder"}]},
            "mathematician": {"deployments": [{**offline, "model": "mathematician"}]},
            "general": {"deployments": [{**offline, "model": "general"}]},
            "broken": {"deployments": [{"endpoint": "fake", "model": "fault-502"}]},
        },
        "routers": {
            "auto": {
                "default": "general",
                "classes": {
                    "code": {"model": "coder", "examples": CODE, "keywords": ["stack trace"]},
                    "math": {"model": "mathematician", "examples": MATH},
                    "odd": {"model": "broken", "examples": BROKEN, "keywords": ["frobnicate"]},
                },
            },
            # Every model it routes to is `broken`: it is down when that is.
            "flaky": {"default": "broken", "classes": {"odd": {"model": "broken", "examples": BROKEN}}},
        },
    }


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The gateway's own database: a file, or a PostgreSQL database made for this test alone."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
    else:
        async with test_stores._fresh_postgres_database() as url:
            yield url


@pytest_asyncio.fixture
async def gateway(
    database_url: str, start_server: Any, tmp_path: Path, upstream: FakeOpenAI
) -> AsyncIterator[tuple[Any, AsyncClient]]:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(routes(upstream.base_url)))
    server = await start_server(POINTSMAN_ROUTES_FILE=str(path), OPENAI_API_KEY=API_KEY, DATABASE_URL=database_url)
    async with AsyncClient(server.address, timeout=10, retry=None) as client:
        yield server, client


def ask(text: str, model: str = "auto") -> orch.CompleteRequest:
    return orch.CompleteRequest(model=model, messages=[user(text)])


async def _four_calls(client: AsyncClient) -> None:
    """A keyword, a class by meaning, the default, a plain model; then a routed call that fails."""
    await client.orchestrator.Complete(ask("Here is the stack trace of my crash"))
    await client.orchestrator.Complete(ask("What is the integral of x cubed?"))
    await client.orchestrator.Complete(ask("Good morning!"))
    await client.orchestrator.Complete(ask("hello", model="coder"))
    error = await raises(client.orchestrator.Complete(ask("Please frobnicate the gizmo")))
    assert error.code == grpc.StatusCode.UNAVAILABLE


async def test_the_request_log_keeps_where_a_router_sent_each_call(gateway: tuple[Any, AsyncClient]) -> None:
    _, client = gateway
    await _four_calls(client)

    calls = (await client.orchestrator.ListCalls(orch.ListCallsRequest())).calls
    seen = [(c.model, c.route_class, c.routed_model, c.route_decision, c.deployment, c.status_code) for c in calls]
    assert seen == [  # newest first
        ("auto", "odd", "broken", orch.ROUTE_DECISION_KEYWORD, "", "UNAVAILABLE"),  # failed, still says where
        ("coder", "", "", orch.ROUTE_DECISION_UNSPECIFIED, "offline/coder", "OK"),
        ("auto", "default", "general", orch.ROUTE_DECISION_EMBEDDING, "offline/general", "OK"),
        ("auto", "math", "mathematician", orch.ROUTE_DECISION_EMBEDDING, "offline/mathematician", "OK"),
        ("auto", "code", "coder", orch.ROUTE_DECISION_KEYWORD, "offline/coder", "OK"),
    ]

    by_class = await client.orchestrator.ListCalls(orch.ListCallsRequest(route_class="math"))
    assert [c.routed_model for c in by_class.calls] == ["mathematician"]
    both = await client.orchestrator.ListCalls(orch.ListCallsRequest(route_class="default", model="auto"))
    assert [c.deployment for c in both.calls] == ["offline/general"]
    assert not (await client.orchestrator.ListCalls(orch.ListCallsRequest(route_class="code", model="coder"))).calls


async def test_stats_sum_the_calls_per_router_and_class(gateway: tuple[Any, AsyncClient]) -> None:
    _, client = gateway
    await _four_calls(client)
    await client.orchestrator.Complete(ask("How do I reverse a list in Python?"))

    stats = await client.orchestrator.GetStats(orch.GetStatsRequest(by_route_class=True))
    assert stats.requests == 6
    groups = {(g.router, g.value): g for g in stats.route_classes}
    assert {key: g.requests for key, g in groups.items()} == {
        ("auto", "code"): 2,
        ("auto", "math"): 1,
        ("auto", "default"): 1,
        ("auto", "odd"): 1,
    }  # the plain call to coder is not counted
    assert groups[("auto", "odd")].failed_requests == 1 and groups[("auto", "code")].failed_requests == 0
    assert groups[("auto", "code")].input_tokens > 0 and groups[("auto", "code")].tag_key == ""
    assert stats.route_classes[0].value == "code"  # busiest first (no prices: no costs)
    assert not stats.groups_truncated

    cut = await client.orchestrator.GetStats(orch.GetStatsRequest(by_route_class=True, max_groups=1))
    assert [(g.router, g.value) for g in cut.route_classes] == [("auto", "code")] and cut.groups_truncated
    plain = await client.orchestrator.GetStats(orch.GetStatsRequest())
    assert not plain.route_classes  # only when asked for


@pytest.mark.parametrize("value", ["c" * 257, "co\nde", "co\x00de"])
async def test_a_bad_route_class_filter_is_invalid_argument(gateway: tuple[Any, AsyncClient], value: str) -> None:
    _, client = gateway
    error = await raises(client.orchestrator.ListCalls(orch.ListCallsRequest(route_class=value)))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["route_class"]


async def test_the_cli_shows_the_class_and_the_model_chosen(
    gateway: tuple[Any, AsyncClient], capsys: pytest.CaptureFixture[str]
) -> None:
    server, client = gateway
    await client.orchestrator.Complete(ask("Here is the stack trace of my crash"))
    await client.orchestrator.Complete(ask("hello", model="coder"))
    capsys.readouterr()
    # The CLI's blocking client runs off the event loop the server is on.
    assert await asyncio.to_thread(cli_main, ["calls", "--address", server.address]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "\tauto -> code: coder (keyword)\toffline/coder\t" in lines[1]
    assert "\tcoder\toffline/coder\t" in lines[0] and "->" not in lines[0]
    assert await asyncio.to_thread(cli_main, ["calls", "--route-class", "code", "--address", server.address]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert await asyncio.to_thread(cli_main, ["stats", "--by-route-class", "--address", server.address]) == 0
    assert any(line.startswith("route auto/code\t1 requests") for line in capsys.readouterr().out.splitlines())


# --------------------------------------------------------------------------- Compare


async def test_compare_routes_a_router_alias_like_a_chat(gateway: tuple[Any, AsyncClient]) -> None:
    _, client = gateway
    request = orch.CompareRequest(
        models=["auto", "general"], messages=[user("How do I reverse a list in Python?")], judge_model="auto"
    )
    events = [e async for e in client.orchestrator.Compare(request)]
    starts = {(e.model, e.synthesis): e.start for e in events if e.HasField("start")}
    assert (starts[("auto", False)].route_class, starts[("auto", False)].routed_model) == ("code", "coder")
    assert starts[("auto", False)].deployment.name == "offline/coder"
    assert starts[("general", False)].route_class == "" and starts[("general", False)].deployment.name == (
        "offline/general"
    )
    assert starts[("auto", True)].model == "auto" and starts[("auto", True)].routed_model  # the judge, routed
    assert not [e for e in events if e.HasField("error")]
    calls = (await client.orchestrator.ListCalls(orch.ListCallsRequest(model="auto"))).calls
    assert len(calls) == 2 and {c.route_class for c in calls} >= {"code"}


async def test_compare_names_an_unknown_model_in_its_field(gateway: tuple[Any, AsyncClient]) -> None:
    _, client = gateway
    request = orch.CompareRequest(models=["auto", "ghost"], messages=[user("hi")])
    error = await raises(_drain(client.orchestrator.Compare(request)))
    assert error.code == grpc.StatusCode.NOT_FOUND and "ghost" in error.message


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass


async def test_converse_routes_each_turn_of_a_router_alias_by_its_own_text(gateway: tuple[Any, AsyncClient]) -> None:
    _, client = gateway
    requests = [
        orch.ConverseRequest(setup=orch.ConversationSetup(model="auto")),
        orch.ConverseRequest(turn=orch.UserTurn(turn_id="t1", content="Here is the stack trace of my crash")),
        orch.ConverseRequest(turn=orch.UserTurn(turn_id="t2", content="What is the integral of x cubed?")),
    ]
    events = [e async for e in client.orchestrator.Converse(iter(requests))]
    starts = [e.start for e in events if e.HasField("start")]
    assert [(s.model, s.route_class, s.routed_model) for s in starts] == [
        ("auto", "code", "coder"),
        ("auto", "math", "mathematician"),
    ]
    calls = (await client.orchestrator.ListCalls(orch.ListCallsRequest(model="auto"))).calls
    assert [c.route_class for c in calls] == ["math", "code"]


async def test_converse_refuses_an_embedding_alias_at_setup(gateway: tuple[Any, AsyncClient]) -> None:
    _, client = gateway
    requests = [orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin-embedding"))]
    error = await raises(_drain(client.orchestrator.Converse(iter(requests))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.reason == "MODEL_KIND_MISMATCH"
    assert [v.field for v in error.field_violations] == ["setup.model"]


# --------------------------------------------------------------------------- health


async def test_health_reports_a_router_while_any_model_it_routes_to_serves(
    gateway: tuple[Any, AsyncClient], capsys: pytest.CaptureFixture[str]
) -> None:
    server, client = gateway
    assert await client.health("models/auto") == SERVING
    assert await client.health("models/flaky") == SERVING
    # One failure opens `broken`'s only circuit: `flaky` routes nowhere else, `auto` does.
    await raises(client.orchestrator.Complete(ask("Please frobnicate the gizmo", model="flaky")))

    async def flaky_down() -> bool:
        return await client.health("models/flaky") == NOT_SERVING

    await eventually(flaky_down)
    assert await client.health("models/broken") == NOT_SERVING
    assert await client.health("models/auto") == SERVING
    assert await asyncio.to_thread(cli_main, ["health", "--service", "models/flaky", "--address", server.address]) == 1
    assert capsys.readouterr().out.strip() == "NOT_SERVING"


# --------------------------------------------------------------------------- the stores, SQLite and PostgreSQL


def call(organisation: str, at_seconds: float = 0, **changes: Any) -> RequestRecord:
    entry = RequestRecord(
        id=f"{int(at_seconds * 1000):016x}{secrets.token_hex(4)}",  # sorts by time, as the log's ids do
        create_time=START + timedelta(seconds=at_seconds),
        organisation=organisation,
        request_id=secrets.token_hex(8),
        principal="users/alice",
        model="auto",
        deployment="openai/a",
        status_code="OK",
        input_tokens=10,
        output_tokens=20,
        latency_ms=100.0,
        cost_usd=0.5,
    )
    return replace(entry, **changes)


async def test_the_store_keeps_filters_and_groups_by_route_class(stores: Stores, org: str, other_org: str) -> None:
    log = stores.requests
    code = {"route_class": "code", "routed_model": "coder"}
    await log.record_many(
        [
            call(org, 1, **code, route_decision=RouteDecision.KEYWORD),
            call(org, 2, **code, route_decision=RouteDecision.CLASSIFIER_MODEL, cost_usd=2.0),
            call(org, 3, **code, route_decision=RouteDecision.EMBEDDING, status_code="UNAVAILABLE"),
            call(org, 4, route_class="default", routed_model="general", route_decision=RouteDecision.EMBEDDING),
            # Another router with a class of the same name: its own group.
            call(org, 5, model="smart", **code, route_decision=RouteDecision.CLASSIFIER_FALLBACK, cache_hit=True),
            call(org, 6, model="coder"),  # a plain model
            call(other_org, 7, **code, route_decision=RouteDecision.KEYWORD),
        ]
    )
    page, _ = await log.list_requests(org, RequestFilter(route_class="code"), 100, None)
    assert [(r.model, r.routed_model, r.route_decision) for r in page] == [
        ("smart", "coder", RouteDecision.CLASSIFIER_FALLBACK),
        ("auto", "coder", RouteDecision.EMBEDDING),
        ("auto", "coder", RouteDecision.CLASSIFIER_MODEL),
        ("auto", "coder", RouteDecision.KEYWORD),
    ]
    page, _ = await log.list_requests(org, RequestFilter(model="coder"), 100, None)
    assert [(r.route_class, r.routed_model, r.route_decision) for r in page] == [("", "", None)]

    end = START + timedelta(hours=1)
    groups = await log.summarise_groups(org, START, end, [], False, 100, by_route_class=True)
    assert groups.route_classes == (
        SpendGroup("", "code", 3, 1, 30, 60, 0, 3.0, router="auto"),
        SpendGroup("", "default", 1, 0, 10, 20, 0, 0.5, router="auto"),
        SpendGroup("", "code", 1, 0, 10, 20, 1, 0.0, router="smart"),  # the cache hit cost nothing
    )
    assert groups.tags == () and groups.end_users == () and not groups.truncated
    cut = await log.summarise_groups(org, START, end, [], False, 2, by_route_class=True)
    assert [(g.router, g.value) for g in cut.route_classes] == [("auto", "code"), ("auto", "default")]
    assert cut.truncated
    assert (await log.summarise_groups(org, end, end + timedelta(hours=1), [], False, 10, True)).route_classes == ()


async def test_rows_written_before_migration_10_read_as_not_routed(
    backend: test_stores.Backend, tmp_path: Path, org: str
) -> None:
    async with test_stores._fresh(backend, tmp_path) as fresh:
        before = [m for m in load_migrations(fresh.name) if m.version < 10]
        await test_stores._migrate(fresh, before)
        when = "now()" if fresh.url is not None else "0"
        await _execute(
            fresh,
            "INSERT INTO request_log (organisation, id, create_time, request_id, principal, model, deployment,"
            " status_code, input_tokens, output_tokens, latency_ms, cache_hit)"
            f" VALUES ('{org}', 'old-row', {when}, 'r1', 'users/a', 'auto', 'offline/general', 'OK', 1, 2, 3.0,"
            f" {'false' if fresh.url is not None else '0'})",
        )
        opened = await fresh.open()  # applies 0010
        try:
            page, _ = await opened.requests.list_requests(org, RequestFilter(), 10, None)
            assert [(r.id, r.route_class, r.routed_model, r.route_decision) for r in page] == [
                ("old-row", "", "", None)
            ]
        finally:
            await opened.aclose()


async def _execute(backend: test_stores.Backend, sql: str) -> None:
    if backend.url is None:
        import sqlite3

        with sqlite3.connect(backend.data_dir / "pointsman.db") as connection:
            connection.execute(sql)
        return
    import asyncpg

    connection = await asyncpg.connect(backend.url)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()
