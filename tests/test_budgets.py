"""Daily spending budgets: the request log's cost since midnight UTC on both
stores, and real servers refusing an organisation's calls once its day is
spent, after a restart too, and on another replica sharing the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import test_stores
from test_stats import call

from pointsman.auth.v1 import auth_pb2
from pointsman.client import AsyncClient, PointsmanError
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.backends.stores import Stores

from helpers_pb import user
from server_fixtures import eventually, raises

# The conformance suite's fixtures: SQLite and a fresh PostgreSQL database.
backend, clock, org, other_org, postgres_url, stores = (
    test_stores.backend,
    test_stores.clock,
    test_stores.org,
    test_stores.other_org,
    test_stores.postgres_url,
    test_stores.stores,
)
START = test_stores.START

# A dollar a token: every call on the built-in model costs a few dollars.
PRICE = {"input_per_million_tokens": 1_000_000, "output_per_million_tokens": 1_000_000}


async def test_cost_since_counts_what_reached_an_upstream(stores: Stores, org: str, other_org: str) -> None:
    await stores.requests.record_many(
        [
            call(org, -1, cost_usd=100.0),  # before the day began
            call(org, 0, cost_usd=1.5),
            call(org, 60, cost_usd=2.25),
            call(org, 90, cost_usd=7.0, cache_hit=True),  # a cached answer costs nothing
            call(other_org, 30, cost_usd=50.0),
        ]
    )
    assert await stores.requests.cost_since(org, START) == pytest.approx(3.75)
    assert await stores.requests.cost_since(org, START + timedelta(seconds=61)) == 0.0
    assert await stores.requests.cost_since(other_org, START) == pytest.approx(50.0)
    await stores.requests.record_many([call(org, 120, cost_usd=4.0, principal="users/bob")])
    assert await stores.requests.cost_since(org, START, principal="users/bob") == pytest.approx(4.0)
    assert await stores.requests.cost_since(org, START, principal="users/alice") == pytest.approx(3.75)


def priced_routes(tmp_path: Path) -> str:
    routes = {
        "endpoints": {"local": {"provider": "builtin"}},
        "models": {
            "priced": {"deployments": [{"endpoint": "local", "model": "m", "price": PRICE}]},
            "free": {"deployments": [{"endpoint": "local", "model": "n"}]},
        },
    }
    path = tmp_path / "routes.yaml"
    path.write_text(json.dumps(routes))
    return str(path)


def ask(text: str) -> orch.CompleteRequest:
    return orch.CompleteRequest(model="priced", messages=[user(text)])


async def test_an_organisation_is_refused_once_its_day_is_spent_until_it_renews(
    start_server: Any, tmp_path: Path
) -> None:
    env = {
        "POINTSMAN_ROUTES_FILE": priced_routes(tmp_path),
        "POINTSMAN_BUDGET_ORG_USD_PER_DAY": 5,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
    }
    server = await start_server(**env)
    async with AsyncClient(server.address, timeout=10) as client:
        first = await client.orchestrator.Complete(ask("one two three"))
        assert first.usage.total_tokens > 5  # more than the budget in dollars
        error = await raises(client.orchestrator.Complete(ask("one more")))
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "BUDGET_EXHAUSTED"
    midnight = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert error.retry_delay is not None
    assert error.retry_delay == pytest.approx((midnight - datetime.now(UTC)).total_seconds(), abs=5)
    # What was spent is in the request log: a restarted server still refuses.
    await server.stop(grace=0)
    restarted = await start_server(**env)
    async with AsyncClient(restarted.address, timeout=10) as client:
        error = await raises(client.orchestrator.Complete(ask("after a restart")))
    assert error.reason == "BUDGET_EXHAUSTED"


async def test_another_replica_refuses_once_it_reads_what_was_spent(start_server: Any, tmp_path: Path) -> None:
    env = {
        "POINTSMAN_ROUTES_FILE": priced_routes(tmp_path),
        "POINTSMAN_BUDGET_ORG_USD_PER_DAY": 5,
        "POINTSMAN_BUDGET_REFRESH_SECONDS": 0.05,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
    }
    a, b = await start_server(**env), await start_server(**env)
    async with AsyncClient(a.address, timeout=10) as on_a, AsyncClient(b.address, timeout=10) as on_b:
        # B has read the (empty) day and spends nothing itself; A spends it all.
        await on_b.orchestrator.Complete(orch.CompleteRequest(model="free", messages=[user("costs nothing")]))
        await on_a.orchestrator.Complete(ask("spend on a"))

        async def refused_on_b() -> bool:
            try:
                # Free calls: B never spends, so a refusal comes from what A spent.
                await on_b.orchestrator.Complete(orch.CompleteRequest(model="free", messages=[user("on b")]))
            except PointsmanError as error:
                assert error.reason == "BUDGET_EXHAUSTED"
                return True
            return False

        await eventually(refused_on_b, timeout=10)


async def test_without_a_budget_nothing_is_refused(start_server: Any, tmp_path: Path) -> None:
    server = await start_server(POINTSMAN_ROUTES_FILE=priced_routes(tmp_path))
    async with AsyncClient(server.address, timeout=10) as client:
        for i in range(3):
            await client.orchestrator.Complete(ask(f"call {i}"))


async def test_a_principal_budget_stops_one_principal_and_not_the_others(start_server: Any, tmp_path: Path) -> None:
    server = await start_server(POINTSMAN_ROUTES_FILE=priced_routes(tmp_path), POINTSMAN_BUDGET_PRINCIPAL_USD_PER_DAY=5)
    async with AsyncClient(server.address, timeout=10) as anonymous:
        tokens = {
            email: (await anonymous.auth.Login(auth_pb2.LoginRequest(email=email))).access_token
            for email in ("developer@pointsman.dev", "admin@pointsman.dev")
        }
    async with (
        AsyncClient(server.address, token=tokens["developer@pointsman.dev"], timeout=10) as developer,
        AsyncClient(server.address, token=tokens["admin@pointsman.dev"], timeout=10) as admin,
    ):
        await developer.orchestrator.Complete(ask("spend it all"))
        error = await raises(developer.orchestrator.Complete(ask("one more")))
        assert error.reason == "BUDGET_EXHAUSTED" and "principal" in error.message
        assert error.metadata["budget_scope"] == "principal"
        await admin.orchestrator.Complete(ask("someone else"))  # has a day of its own
