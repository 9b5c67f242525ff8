"""Opens an answer stream on the best deployment that will give one.

Deployments are tried in the route's order. A failure before the first event
(nothing has reached the client yet) is retried on the same deployment with
backoff, within the route's retry policy and the server's retry budget, then
falls back to the next deployment. Once a deployment has produced its first
event the answer is committed to it: the caller streams the rest, and a later
failure ends the answer (the router never splices two models' answers)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar

from .breaker import BreakerPolicy, CircuitBreaker, CircuitState, DeploymentMonitor, LatencyTracker, share_opens
from .caller import Caller
from .catalog import ModelCatalog, ModelRoute
from .chat import ChatRequest, Deployment, ProviderEvent
from .errors import DomainError, FailedPrecondition, Unavailable
from .ports.breaker_state import SharedOpenState
from .routing import RetryBudget, order

log = logging.getLogger(__name__)

T = TypeVar("T")

# With every circuit open and no better estimate, clients are told to retry after this.
_DEFAULT_RETRY_AFTER = 1.0


@dataclass(slots=True)
class OpenStream:
    """An answer committed to one deployment: its first event, and the rest
    to read and then close (closing it closes the upstream call). A failure
    while reading the rest must be reported to `monitor`."""

    deployment: Deployment
    first: ProviderEvent
    rest: AsyncGenerator[ProviderEvent, None]
    monitor: DeploymentMonitor


class Router:
    def __init__(
        self,
        catalog: ModelCatalog,
        breaker_policy: BreakerPolicy | None = None,
        budget: RetryBudget | None = None,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._catalog = catalog
        self._budget = budget or RetryBudget()
        self._rng = rng or random.Random()
        self._sleep = sleep
        policy = self.breaker_policy = breaker_policy or BreakerPolicy()
        self._shared: SharedOpenState | None = None
        self.monitors: dict[str, DeploymentMonitor] = {
            d.name: DeploymentMonitor(CircuitBreaker(d.name, policy), LatencyTracker()) for d in catalog.deployments()
        }

    def share_breakers(self, shared: SharedOpenState, cooldown_seconds: float) -> None:
        """Replicas share breaker opens: each open here is announced, and a
        deployment another replica holds open is not called here either."""
        self._shared = shared
        for monitor in self.monitors.values():
            share_opens(monitor.breaker, shared, cooldown_seconds)

    def _adopt_shared_open(self, monitor: DeploymentMonitor) -> None:
        until = self._shared.opened_until(monitor.breaker.name) if self._shared is not None else 0.0
        if until:
            monitor.breaker.hold_open(until - time.time())

    def monitor(self, deployment: Deployment) -> DeploymentMonitor:
        return self.monitors[deployment.name]

    def available(self, route: ModelRoute) -> bool:
        """False while every deployment of the route has an open circuit."""
        return any(self.monitors[d.name].breaker.state is not CircuitState.OPEN for d in route.deployments)

    def plan(self, route: ModelRoute) -> list[Deployment]:
        return order(route.strategy, route.deployments, lambda d: self.monitors[d.name].latency.seconds, self._rng)

    async def open(self, route: ModelRoute, request: ChatRequest, caller: Caller, *, incremental: bool) -> OpenStream:
        """The answer's stream on the first deployment that gives a first event."""

        async def first_event(deployment: Deployment) -> tuple[AsyncGenerator[ProviderEvent, None], ProviderEvent]:
            stream = self._catalog.provider(deployment).stream(deployment, request, incremental=incremental)
            try:
                return stream, await anext(stream)
            except BaseException:
                await _close(stream)
                raise

        deployment, (stream, first) = await self.call(route, first_event, caller)
        return OpenStream(deployment, first, stream, self.monitors[deployment.name])

    async def call(
        self, route: ModelRoute, attempt: Callable[[Deployment], Awaitable[T]], caller: Caller
    ) -> tuple[Deployment, T]:
        """`attempt` on the route's deployments in order, within each one's
        timeout: retried with backoff and falling back on deployment failures,
        skipping open circuits; the first result wins. Chat's first event and
        a whole embedding call both go through here."""
        self._budget.record_call()
        last_error: DomainError | None = None
        tried: list[str] = []
        for deployment in self.plan(route):
            monitor = self.monitors[deployment.name]
            retry = 0
            self._adopt_shared_open(monitor)
            while True:
                if not monitor.breaker.try_acquire():
                    break
                tried.append(deployment.name)
                started = time.monotonic()
                try:
                    async with asyncio.timeout(deployment.timeout_seconds):
                        result = await attempt(deployment)
                except (DomainError, TimeoutError, StopAsyncIteration) as raised:
                    error = _as_domain_error(raised)
                    if not _is_deployment_failure(error):
                        monitor.breaker.release()
                        raise error from None
                    monitor.breaker.record_failure()
                    last_error = error
                    log.info("deployment %s failed before answering: %s", deployment.name, error.reason)
                    delay = self._retry_delay(route, retry, error, caller)
                    if delay is None:
                        break  # fall back to the next deployment
                    retry += 1
                    await self._sleep(delay)
                    continue
                except BaseException:
                    monitor.breaker.release()
                    raise
                monitor.breaker.record_success()
                monitor.latency.observe(time.monotonic() - started)
                return deployment, result
        raise self._exhausted(route, last_error, tried)

    def _retry_delay(self, route: ModelRoute, retry: int, error: DomainError, caller: Caller) -> float | None:
        """Seconds to wait before retrying the same deployment, or None to move on."""
        if not isinstance(error, Unavailable) or retry >= route.retry.retries:
            return None
        retry_after = error.retry_after_seconds
        if retry_after is not None and retry_after > route.retry.max_retry_after_seconds:
            return None
        delay = route.retry.backoff(retry, retry_after, self._rng)
        if caller.deadline is not None and time.monotonic() + delay >= caller.deadline:
            return None
        if not self._budget.try_spend():
            return None
        return delay

    def _exhausted(self, route: ModelRoute, last_error: DomainError | None, tried: list[str]) -> DomainError:
        if last_error is None:
            # Nothing was even tried: every circuit is open.
            wait = min((self.monitors[d.name].breaker.retry_after() for d in route.deployments), default=0.0)
            return Unavailable(
                f"every deployment of model '{route.alias}' is failing; its circuits are open",
                reason="CIRCUIT_OPEN",
                retry_after_seconds=max(wait, _DEFAULT_RETRY_AFTER),
                metadata={"model": route.alias},
            )
        last_error.metadata.setdefault("model", route.alias)
        last_error.metadata["deployments_tried"] = ",".join(dict.fromkeys(tried))
        if isinstance(last_error, Unavailable) and last_error.retry_after_seconds is None:
            last_error.retry_after_seconds = _DEFAULT_RETRY_AFTER
        return last_error


def _as_domain_error(raised: BaseException) -> DomainError:
    if isinstance(raised, DomainError):
        return raised
    if isinstance(raised, TimeoutError):
        return Unavailable("the upstream model did not start answering in time", reason="UPSTREAM_TIMEOUT")
    return Unavailable("the upstream model ended the answer before it began", reason="UPSTREAM_INCOMPLETE")


def _is_deployment_failure(error: DomainError) -> bool:
    """Failures that say the deployment is unwell (count against its breaker
    and move on to a fallback), as opposed to a request it rightly refused."""
    return isinstance(error, (Unavailable, FailedPrecondition))


async def _close(stream: AsyncIterator[ProviderEvent]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with suppress(Exception):
            await aclose()
