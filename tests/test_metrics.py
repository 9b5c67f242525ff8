"""Prometheus metrics: a real server with POINTSMAN_METRICS_ADDRESS on port 0,
real calls, and /metrics scraped over HTTP and parsed as Prometheus would."""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from helpers_pb import user
from server_fixtures import raises

COMPLETE = "/pointsman.orchestrator.v1.OrchestratorService/Complete"


async def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_calls_chats_tokens_decisions_and_read_the_state(start_server: Any) -> None:
    server = await start_server(POINTSMAN_METRICS_ADDRESS="127.0.0.1:0")
    assert server.metrics_endpoint is not None and server.metrics_endpoint.port
    async with AsyncClient(server.address, timeout=10) as client:
        await client.orchestrator.Complete(orch.CompleteRequest(model="builtin", messages=[user("hello")]))
        await client.orchestrator.Complete(
            orch.CompleteRequest(model="builtin", messages=[user("write to jane.doe@example.com")])
        )
        await raises(client.orchestrator.Complete(orch.CompleteRequest(model="nope", messages=[user("hi")])))
    samples = await scrape(server.metrics_endpoint.port)
    # A name the caller made up never becomes a label (the number of series stays bounded).
    assert not any(dict(labels).get("model") == "nope" for _, labels in samples)
    unknown = {"model": "unknown", "deployment": "", "code": "NOT_FOUND", "cache": "miss"}
    assert value(samples, "pointsman_chat_requests_total", **unknown) == 1

    assert value(samples, "pointsman_rpc_requests_total", method=COMPLETE, code="OK") == 2
    assert value(samples, "pointsman_rpc_requests_total", method=COMPLETE, code="NOT_FOUND") == 1
    assert value(samples, "pointsman_rpc_duration_seconds_count", method=COMPLETE) == 3
    deployment = next(dict(labels)["deployment"] for name, labels in samples if name == "pointsman_chat_requests_total")
    chat = {"model": "builtin", "deployment": deployment}
    assert value(samples, "pointsman_chat_requests_total", **chat, code="OK", cache="miss") == 2
    assert value(samples, "pointsman_chat_tokens_total", **chat, kind="input") > 0
    assert value(samples, "pointsman_chat_tokens_total", **chat, kind="output") > 0
    assert value(samples, "pointsman_chat_time_to_first_token_seconds_count", model="builtin") == 2
    redacted = {"direction": "input", "action": "redact", "category": "pii"}
    assert value(samples, "pointsman_firewall_decisions_total", **redacted) == 1
    assert value(samples, "pointsman_firewall_decisions_total", direction="input", action="allow", category="none") >= 1
    # Read from the state at the scrape.
    assert ("pointsman_write_buffer_pending", frozenset({("buffer", "decisions")})) in samples
    assert ("pointsman_write_buffer_dropped_total", frozenset({("buffer", "request_log")})) in samples
    assert value(samples, "pointsman_circuit_state", deployment=deployment, state="closed") == 1
    assert value(samples, "pointsman_circuit_state", deployment=deployment, state="open") == 0
    assert value(samples, "pointsman_dependency_up", dependency="database") == 1
    assert value(samples, "process_resident_memory_bytes") > 0


async def test_no_metrics_unless_asked(start_server: Any) -> None:
    server = await start_server()
    assert server.metrics_endpoint is None and server.state.metrics is None
