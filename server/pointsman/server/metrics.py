"""Prometheus metrics (POINTSMAN_METRICS_ADDRESS): what a scraper needs to
watch a gateway, served over HTTP at /metrics by the process itself.

Counted as it happens: every RPC (method, status code, duration), every chat
call (model, deployment, status, cache outcome, tokens, time to first
token) and every firewall decision. Read when scraped, costing the calls
nothing: write buffers, circuit breakers, dependencies. Each server has a
registry of its own, so several servers in one process do not mix."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    Summary,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Most calls take a millisecond or a few, streamed answers seconds. Few
# buckets: each is a series every scrape renders.
_RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 120)
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # process_*: CPU seconds, resident memory, open files, start time.
        ProcessCollector(registry=self.registry)
        self._rpcs = Counter(
            "pointsman_rpc_requests", "RPCs handled, by method and status code", ["method", "code"],
            registry=self.registry,
        )  # fmt: skip
        self._rpc_seconds = Histogram(
            "pointsman_rpc_duration_seconds", "Time from a call's start to its end, by method", ["method"],
            buckets=_RPC_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._chat_calls = Counter(
            "pointsman_chat_requests",
            "Chat calls (Chat, Complete, Converse turns, Compare models, batch items) by model alias, "
            "deployment that answered, status code and cache outcome (hit or miss)",
            ["model", "deployment", "code", "cache"], registry=self.registry,
        )  # fmt: skip
        self._tokens = Counter(
            "pointsman_chat_tokens", "Tokens of chat calls as reported (or estimated), by kind: input or output",
            ["model", "deployment", "kind"], registry=self.registry,
        )  # fmt: skip
        self._cost = Counter(
            "pointsman_chat_cost_usd", "What chat calls cost upstream, in US dollars, at the routes file's prices",
            ["model", "deployment"], registry=self.registry,
        )  # fmt: skip
        self._ttft = Histogram(
            "pointsman_chat_time_to_first_token_seconds", "Time to the first event of an answer, by model alias",
            ["model"], buckets=_TTFT_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self._decisions = Counter(
            "pointsman_firewall_decisions", "Firewall decisions by direction, action and category found",
            ["direction", "action", "category"], registry=self.registry,
        )  # fmt: skip
        # Seed 003's service statistics, unlabelled: one series each, for a
        # dashboard that wants the totals without summing label sets.
        self._messages = Counter(
            "pointsman_messages_processed", "Chat calls handled, however they ended", registry=self.registry
        )
        self._llm_calls = Counter(
            "pointsman_llm_calls", "Chat calls sent to an upstream model (not answered from a cache)",
            registry=self.registry,
        )  # fmt: skip
        self._llm_skipped = Counter(
            "pointsman_llm_calls_skipped", "Chat calls answered from the response or semantic cache, no upstream call",
            registry=self.registry,
        )  # fmt: skip
        self._tokens_saved = Counter(
            "pointsman_tokens_saved", "Tokens (input plus output) that cached answers did not cost upstream",
            registry=self.registry,
        )  # fmt: skip
        # _sum / _count is the average response time.
        self._response_seconds = Summary(
            "pointsman_chat_response_seconds", "Whole-call time of chat calls", registry=self.registry
        )
        self._conversations = Gauge(
            "pointsman_active_conversations", "Converse sessions open on this process now", registry=self.registry
        )
        # Labelled children, looked up once: `labels()` costs more than the increment.
        self._children: dict[tuple[Any, ...], Any] = {}

    def rpc(self, method: str, code: str, seconds: float) -> None:
        self._child(self._rpcs, method, code).inc()
        self._child(self._rpc_seconds, method).observe(seconds)

    def chat_call(
        self,
        model: str,
        deployment: str,
        code: str,
        cached: bool,
        input_tokens: int,
        output_tokens: int,
        time_to_first_token: float | None,
        cost_usd: float = 0.0,
        latency_seconds: float | None = None,
    ) -> None:
        self._child(self._chat_calls, model, deployment, code, "hit" if cached else "miss").inc()
        self._messages.inc()
        if cached:
            self._llm_skipped.inc()
            self._tokens_saved.inc(input_tokens + output_tokens)
        elif deployment:
            self._llm_calls.inc()
        if latency_seconds is not None:
            self._response_seconds.observe(latency_seconds)
        if input_tokens:
            self._child(self._tokens, model, deployment, "input").inc(input_tokens)
        if output_tokens:
            self._child(self._tokens, model, deployment, "output").inc(output_tokens)
        if time_to_first_token is not None:
            self._child(self._ttft, model).observe(time_to_first_token)
        if cost_usd:
            self._child(self._cost, model, deployment).inc(cost_usd)

    def conversation_opened(self) -> None:
        self._conversations.inc()

    def conversation_closed(self) -> None:
        self._conversations.dec()

    def decision(self, direction: str, action: str, categories: Iterable[str]) -> None:
        for category in set(categories) or ("none",):
            self._child(self._decisions, direction, action, category).inc()

    def collect_state(self, source: Callable[[], Iterator[Metric]]) -> None:
        """Adds metrics read from the process's state at each scrape."""
        self.registry.register(_StateCollector(source))

    def _child(self, family: Any, *labels: str) -> Any:
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child


class _StateCollector(Collector):
    def __init__(self, source: Callable[[], Iterator[Metric]]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self.source()
        except Exception:  # a scrape must not fail because one reading did
            log.exception("could not read the state for metrics")


def gauge(name: str, documentation: str, labels: list[str], values: Iterable[tuple[list[str], float]]) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


def counter(name: str, documentation: str, labels: list[str], values: Iterable[tuple[list[str], float]]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


class MetricsEndpoint:
    """GET /metrics on its own port, served by the event loop."""

    def __init__(self, metrics: Metrics, address: str) -> None:
        self._metrics = metrics
        self._host, _, port = address.rpartition(":")
        self._host = self._host.strip("[]") or "0.0.0.0"
        self._port = int(port)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server  # aiohttp keeps the asyncio server here; it knows the bound port
        sockets = getattr(server, "sockets", None) or ()
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve(self, request: web.Request) -> web.Response:
        # Rendering takes milliseconds with many series: off the event loop.
        body = await asyncio.to_thread(generate_latest, self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
