"""Per-model health: the standard health service reports each alias under the
service name `models/{alias}`, NOT_SERVING while every deployment of it has an
open circuit, so load balancers and clients can see a model is down."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2

from ..domain.breaker import CircuitState
from ..domain.catalog import ModelCatalog
from ..domain.router import Router
from .health import HealthService

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_name(alias: str) -> str:
    return f"models/{alias}"


class ModelHealth:
    def __init__(self, servicer: HealthService, catalog: ModelCatalog, router: Router) -> None:
        self._servicer = servicer
        self._catalog = catalog
        self._router = router
        self._aliases_of: dict[str, list[str]] = {}
        for route in catalog.routes():
            for deployment in route.deployments:
                self._aliases_of.setdefault(deployment.name, []).append(route.alias)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._active = False

    async def start(self) -> None:
        self._active = True
        for route in self._catalog.routes():
            await self._publish(route.alias)
        for name in self._aliases_of:
            self._router.monitors[name].breaker.subscribe(self._changed)

    async def stop(self) -> None:
        self._active = False
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for route in self._catalog.routes():
            await self._servicer.set(health_name(route.alias), NOT_SERVING)

    def _changed(self, deployment: str, state: CircuitState) -> None:
        if not self._active:
            return
        loop = asyncio.get_running_loop()
        if state is CircuitState.OPEN:
            # Nothing calls the breaker when nobody sends traffic; look again
            # when the cool-down ends, so the model is reported available.
            wait = self._router.monitors[deployment].breaker.retry_after()
            self._timers = [t for t in self._timers if t.when() > loop.time()]
            self._timers.append(loop.call_later(wait + 0.001, self._changed, deployment, CircuitState.HALF_OPEN))
        for alias in self._aliases_of.get(deployment, ()):
            task = loop.create_task(self._publish(alias))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _publish(self, alias: str) -> None:
        route = self._catalog.resolve(alias)
        await self._servicer.set(health_name(alias), SERVING if self._router.available(route) else NOT_SERVING)
