"""Routing from a routes file: fallback before the first event, never after,
retries with backoff, circuit breakers, deployment timeouts and strategies.
A real server, the real `openai` SDK and a fake upstream with faults."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml
from grpc_health.v1 import health_pb2

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from fakes.openai_upstream import FakeOpenAI
from helpers_pb import chat_request, text_of
from server_fixtures import collect, eventually, raises

API_KEY = "sk-routing-0123456789abcdef"
BUILTIN = {"endpoint": "offline", "model": "echo"}


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(first_byte_delay_s=5.0) as fake:
        yield fake


@pytest.fixture
def routes(tmp_path: Path, upstream: FakeOpenAI) -> Any:
    """Writes a routes file with the fake upstream and the built-in model as endpoints."""

    def write(models: dict[str, Any], **defaults: Any) -> Path:
        path = tmp_path / "routes.yaml"
        config = {
            "defaults": {"retry": {"retries": 0, "backoff_base_ms": 1, "backoff_max_ms": 5}, **defaults},
            "endpoints": {
                "fake": {"provider": "openai", "base_url": upstream.base_url, "api_key_env": "OPENAI_API_KEY"},
                "offline": {"provider": "builtin"},
            },
            "models": models,
        }
        path.write_text(yaml.safe_dump(config))
        return path

    return write


@pytest_asyncio.fixture
async def gateway(start_server: Any) -> Any:
    clients: list[AsyncClient] = []

    async def open_gateway(routes_file: Path) -> tuple[Any, AsyncClient]:
        server = await start_server(POINTSMAN_ROUTES_FILE=str(routes_file), OPENAI_API_KEY=API_KEY)
        client = AsyncClient(server.address, timeout=10, retry=None)
        clients.append(client)
        return server, client

    yield open_gateway
    for client in clients:
        await client.close()


async def deployment_states(client: AsyncClient, alias: str) -> dict[str, orch.DeploymentState]:
    models = (await client.orchestrator.ListModels(orch.ListModelsRequest())).models
    model = next(m for m in models if m.alias == alias)
    return {d.name: d.state for d in model.deployments}


async def test_falls_back_to_the_next_deployment_before_the_first_event(
    routes: Any, gateway: Any, upstream: FakeOpenAI
) -> None:
    _, client = await gateway(
        routes({"smart": {"deployments": [{"endpoint": "fake", "model": "fault-500"}, BUILTIN]}}, retry={"retries": 2})
    )
    events = await collect(client.orchestrator.Chat(chat_request("hello", model="smart")))
    assert events[0].start.deployment.name == "offline/echo"
    assert "hello" in text_of(events)
    assert events[-1].finish.reason == orch.FINISH_REASON_STOP
    assert upstream.requests_total == 3  # the first try and two retries, then the fallback


async def test_retries_a_failed_deployment_and_the_retry_succeeds(
    routes: Any, gateway: Any, upstream: FakeOpenAI
) -> None:
    _, client = await gateway(routes({"smart": {"deployments": [{"endpoint": "fake", "model": "gpt-x"}, BUILTIN]}}))
    upstream.set_fault("fault-503", times=1)
    answer = await client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "smart")))
    assert upstream.requests_total == 1 and answer.start.deployment.name == "offline/echo"  # retries: 0

    _, client = await gateway(
        routes({"smart": {"retry": {"retries": 1}, "deployments": [{"endpoint": "fake", "model": "gpt-x"}, BUILTIN]}})
    )
    upstream.reset()
    upstream.set_fault("fault-503", times=1)
    answer = await client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "smart")))
    assert answer.start.deployment.name == "fake/gpt-x"
    assert answer.message.content == "Echo: hi"
    assert upstream.requests_total == 2


async def test_a_retry_after_longer_than_allowed_falls_back_at_once(
    routes: Any, gateway: Any, upstream: FakeOpenAI
) -> None:
    # The fake's 429 says retry-after: 1 s; this route waits at most 0.5 s.
    _, client = await gateway(
        routes(
            {"smart": {"deployments": [{"endpoint": "fake", "model": "fault-429"}, BUILTIN]}},
            retry={"retries": 3, "max_retry_after_seconds": 0.5},
        )
    )
    answer = await client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "smart")))
    assert answer.start.deployment.name == "offline/echo"
    assert upstream.requests_total == 1


async def test_no_fallback_after_the_first_event(routes: Any, gateway: Any, upstream: FakeOpenAI) -> None:
    _, client = await gateway(
        routes({"smart": {"deployments": [{"endpoint": "fake", "model": "fault-cut+long-20+slow-20"}, BUILTIN]}})
    )
    received: list[Any] = []
    error = await raises(_collect_into(client.orchestrator.Chat(chat_request("hi", model="smart")), received))
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.metadata["incomplete"] == "true"
    assert error.metadata["deployment"] == "fake/fault-cut+long-20+slow-20"
    assert received[0].start.deployment.name == "fake/fault-cut+long-20+slow-20"
    assert text_of(received)  # the client got part of the answer, from one model only
    assert not any(e.HasField("finish") for e in received)


async def test_incomplete_turn_is_marked_in_compare(routes: Any, gateway: Any) -> None:
    _, client = await gateway(
        routes(
            {
                "cut": {"deployments": [{"endpoint": "fake", "model": "fault-cut+long-20+slow-20"}, BUILTIN]},
                "fine": {"deployments": [BUILTIN]},
            }
        )
    )
    events = await collect(
        client.orchestrator.Compare(orch.CompareRequest(models=["cut", "fine"], messages=chat_request("hi").messages))
    )
    errors = [e for e in events if e.HasField("error")]
    assert [(e.model, e.error.incomplete) for e in errors] == [("cut", True)]
    assert any(e.model == "fine" and e.HasField("finish") for e in events)


async def test_a_deployment_slow_to_start_times_out_and_falls_back(
    routes: Any, gateway: Any, upstream: FakeOpenAI
) -> None:
    _, client = await gateway(
        routes(
            {
                "smart": {
                    "deployments": [
                        {"endpoint": "fake", "model": "fault-slow-first-byte", "timeout_seconds": 0.2},
                        BUILTIN,
                    ]
                }
            }
        )
    )
    answer = await client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "smart")))
    assert answer.start.deployment.name == "offline/echo"
    await upstream.wait_for(lambda: upstream.requests_open == 0)  # the slow request was abandoned


async def test_circuit_opens_skips_the_deployment_then_probes_and_closes(
    routes: Any, gateway: Any, upstream: FakeOpenAI
) -> None:
    _, client = await gateway(
        routes(
            {
                "smart": {"deployments": [{"endpoint": "fake", "model": "gpt-x"}, BUILTIN]},
                "solo": {"deployments": [{"endpoint": "fake", "model": "gpt-x"}]},
            },
            circuit_breaker={"consecutive_failures": 2, "cooldown_seconds": 0.3},
        )
    )
    upstream.set_fault("fault-500")
    for _ in range(2):
        answer = await client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "smart")))
        assert answer.start.deployment.name == "offline/echo"
    states = await deployment_states(client, "smart")
    assert states["fake/gpt-x"].circuit == orch.CIRCUIT_STATE_OPEN
    assert states["fake/gpt-x"].consecutive_failures == 2

    # Open: the deployment is skipped without a request; a model with no other
    # deployment fails at once, with a time to retry, and health says so.
    answer = await client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "smart")))
    assert answer.start.deployment.name == "offline/echo" and upstream.requests_total == 2
    error = await raises(client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "solo"))))
    assert error.code == grpc.StatusCode.UNAVAILABLE and error.reason == "CIRCUIT_OPEN"
    assert error.retry_delay is not None and error.retry_delay > 0
    assert upstream.requests_total == 2
    models = {m.alias: m for m in (await client.orchestrator.ListModels(orch.ListModelsRequest())).models}
    assert not models["solo"].available and models["smart"].available
    assert await _model_health(client, "solo") == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await _model_health(client, "smart") == health_pb2.HealthCheckResponse.SERVING

    # After the cool-down a probe goes through; it succeeds and the circuit closes.
    upstream.set_fault(None)
    await eventually(lambda: _is_serving(client, "solo"))
    answer = await client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "solo")))
    assert answer.start.deployment.name == "fake/gpt-x"
    assert (await deployment_states(client, "solo"))["fake/gpt-x"].circuit == orch.CIRCUIT_STATE_CLOSED


async def test_a_failed_probe_reopens_the_circuit(routes: Any, gateway: Any, upstream: FakeOpenAI) -> None:
    _, client = await gateway(
        routes(
            {"solo": {"deployments": [{"endpoint": "fake", "model": "fault-502"}]}},
            circuit_breaker={"consecutive_failures": 1, "cooldown_seconds": 0.2},
        )
    )
    await raises(client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "solo"))))
    await eventually(lambda: _is_serving(client, "solo"))  # half-open after the cool-down
    error = await raises(client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "solo"))))
    assert error.reason == "UPSTREAM_UNAVAILABLE"  # the probe itself reached the upstream
    assert upstream.requests_total == 2
    assert (await deployment_states(client, "solo"))["fake/fault-502"].circuit == orch.CIRCUIT_STATE_OPEN


async def test_client_errors_do_not_trip_the_breaker_or_fall_back(
    routes: Any, gateway: Any, upstream: FakeOpenAI
) -> None:
    _, client = await gateway(
        routes(
            {"smart": {"deployments": [{"endpoint": "fake", "model": "fault-400"}, BUILTIN]}},
            circuit_breaker={"consecutive_failures": 1},
        )
    )
    error = await raises(client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "smart"))))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (await deployment_states(client, "smart"))["fake/fault-400"].circuit == orch.CIRCUIT_STATE_CLOSED


async def test_weighted_strategy_spreads_calls_by_weight(routes: Any, gateway: Any) -> None:
    _, client = await gateway(
        routes(
            {
                "spread": {
                    "strategy": "weighted",
                    "deployments": [
                        {"endpoint": "offline", "model": "heavy", "weight": 4},
                        {"endpoint": "offline", "model": "light", "weight": 1},
                        {"endpoint": "offline", "model": "never", "weight": 0},
                    ],
                }
            }
        )
    )
    used = Counter()
    for _ in range(200):
        answer = await client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "spread")))
        used[answer.start.deployment.name] += 1
    assert used["offline/never"] == 0
    assert used["offline/heavy"] > used["offline/light"] > 0


async def test_latency_strategy_prefers_the_faster_deployment(routes: Any, gateway: Any) -> None:
    # Both on the fake; "slow-40" waits 40 ms before each frame, the first included.
    _, client = await gateway(
        routes(
            {
                "quick": {
                    "strategy": "latency",
                    "deployments": [{"endpoint": "fake", "model": "slow-40"}, {"endpoint": "fake", "model": "gpt-x"}],
                }
            }
        )
    )
    used = [
        (await client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "quick")))).start.deployment.name
        for _ in range(6)
    ]
    assert set(used[:2]) == {"fake/slow-40", "fake/gpt-x"}  # each measured once
    assert used[2:] == ["fake/gpt-x"] * 4
    states = await deployment_states(client, "quick")
    assert states["fake/slow-40"].latency.ToTimedelta() > states["fake/gpt-x"].latency.ToTimedelta()


async def test_the_client_deadline_bounds_retries(routes: Any, gateway: Any, upstream: FakeOpenAI) -> None:
    # Backoff of about a second per retry; the client waits 0.3 s in all.
    _, client = await gateway(
        routes(
            {"smart": {"deployments": [{"endpoint": "fake", "model": "fault-503"}]}},
            retry={"retries": 5, "backoff_base_ms": 1000, "backoff_max_ms": 1000},
        )
    )
    error = await raises(client.orchestrator.Complete(orch.CompleteRequest(**_complete("hi", "smart")), timeout=0.3))
    assert error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    # Full jitter may make a second or third attempt inside 0.3 s, never all six;
    # and none is made after the client gave up (longer than the largest backoff).
    made = upstream.requests_total
    assert made < 6
    await asyncio.sleep(1.2)
    assert upstream.requests_total == made


async def test_list_models_shows_strategy_weights_and_timeouts(routes: Any, gateway: Any) -> None:
    _, client = await gateway(
        routes(
            {
                "spread": {
                    "strategy": "weighted",
                    "deployments": [{"endpoint": "fake", "model": "a", "weight": 3, "timeout_seconds": 7}, BUILTIN],
                }
            }
        )
    )
    models = {m.alias: m for m in (await client.orchestrator.ListModels(orch.ListModelsRequest())).models}
    spread = models["spread"]
    assert spread.strategy == orch.ROUTING_STRATEGY_WEIGHTED and spread.available
    assert [d.name for d in spread.deployments] == ["fake/a", "offline/echo"]
    assert spread.deployments[0].weight == 3 and spread.deployments[0].timeout.seconds == 7
    assert spread.deployments[0].state.circuit == orch.CIRCUIT_STATE_CLOSED
    assert spread.deployments[0].provider == orch.PROVIDER_OPENAI
    assert spread.deployments[1].provider == orch.PROVIDER_BUILTIN


def _complete(text: str, model: str) -> dict[str, Any]:
    return {"model": model, "messages": chat_request(text).messages}


async def _collect_into(stream: Any, into: list[Any]) -> None:
    async for event in stream:
        into.append(event)


async def _model_health(client: AsyncClient, alias: str) -> int:
    return await client.health(f"models/{alias}")


async def _is_serving(client: AsyncClient, alias: str) -> bool:
    return await _model_health(client, alias) == health_pb2.HealthCheckResponse.SERVING
