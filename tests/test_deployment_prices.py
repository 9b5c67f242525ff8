"""One deployment listed by several aliases: one price for it, or the routes
file is refused; and a cache hit is credited at the price of the deployment
that served the alias, whichever alias lists it last."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.routes import RoutesFileError, load_routes_file
from pointsman.type.v1 import chat_pb2

from helpers_pb import user

PRICE = {"input_per_million_tokens": 1000, "output_per_million_tokens": 3000}


def write_routes(tmp_path: Path, models: dict[str, Any]) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(json.dumps({"endpoints": {"local": {"provider": "builtin"}}, "models": models}))
    return path


def test_two_prices_for_one_deployment_are_refused_naming_both_aliases(tmp_path: Path) -> None:
    cheap = {"input_per_million_tokens": 1, "output_per_million_tokens": 2}
    path = write_routes(
        tmp_path,
        {
            "first": {"deployments": [{"endpoint": "local", "model": "m", "price": PRICE}]},
            "second": {"deployments": [{"endpoint": "local", "model": "m", "price": cheap}]},
        },
    )
    with pytest.raises(RoutesFileError) as caught:
        load_routes_file(path)
    message = str(caught.value)
    assert "models.second.deployments[0].price" in message
    assert "'local/m'" in message and "models.first" in message


def test_a_deployment_priced_once_keeps_that_price_in_every_alias(tmp_path: Path) -> None:
    path = write_routes(
        tmp_path,
        {
            "priced": {"deployments": [{"endpoint": "local", "model": "m", "price": PRICE}]},
            "plain": {"deployments": [{"endpoint": "local", "model": "m"}]},
        },
    )
    load_routes_file(path)  # no conflict: a price stated once is the deployment's price


async def test_cost_saved_counts_a_cache_hit_when_two_aliases_list_the_deployment(
    start_server: Any, tmp_path: Path
) -> None:
    # The unpriced alias comes last: before the fix its copy of `local/m`
    # replaced the priced one, and the cache hit was credited at no price.
    path = write_routes(
        tmp_path,
        {
            "priced": {"cache_ttl_seconds": 60, "deployments": [{"endpoint": "local", "model": "m", "price": PRICE}]},
            "plain": {"deployments": [{"endpoint": "local", "model": "m", "weight": 3}]},
        },
    )
    server = await start_server(POINTSMAN_ROUTES_FILE=str(path))

    def cost(usage: chat_pb2.Usage) -> float:
        return (usage.input_tokens * 1000 + usage.output_tokens * 3000) / 1_000_000

    async with AsyncClient(server.address, timeout=10) as client:
        request = orch.CompleteRequest(model="priced", messages=[user("one two")])
        first = await client.orchestrator.Complete(request)
        cached = await client.orchestrator.Complete(request)
        assert cached.start.cached and cached.start.deployment.name == "local/m"
        stats = await client.orchestrator.GetStats(orch.GetStatsRequest())
    assert stats.cost_usd == pytest.approx(cost(first.usage)) and stats.cost_usd > 0
    assert stats.cost_saved_usd == pytest.approx(cost(cached.usage)) and stats.cost_saved_usd > 0
