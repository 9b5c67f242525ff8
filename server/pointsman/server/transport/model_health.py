"""Per-model health: the standard health service reports each alias under the
service name `models/{alias}`, NOT_SERVING while every deployment of it has an
open circuit, so load balancers and clients can see a model is down. A router
alias (routes file `routers:`) is reported the same way: SERVING while any
alias it sends calls to is."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from grpc_health.v1 import health_pb2

from ..domain.breaker import CircuitState
from ..domain.catalog import ModelCatalog
from ..domain.classify import RouterSpec
from ..domain.router import Router
from .health import HealthService

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_name(alias: str) -> str:
    return f"models/{alias}"


class ModelHealth:
    def __init__(
        self, servicer: HealthService, catalog: ModelCatalog, router: Router, routers: Sequence[RouterSpec] = ()
    ) -> None:
        self._servicer = servicer
        self._catalog = catalog
        self._router = router
        self._aliases_of: dict[str, list[str]] = {}
        for route in catalog.routes():
            for deployment in route.deployments:
                self._aliases_of.setdefault(deployment.name, []).append(route.alias)
        # Router alias -> the model aliases it routes to; model alias -> the routers routing to it.
        self._targets = {spec.alias: spec.targets for spec in routers}
        self._routers_of: dict[str, list[str]] = {}
        for spec in routers:
            for alias in spec.targets:
                self._routers_of.setdefault(alias, []).append(spec.alias)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._active = False

    def _names(self) -> list[str]:
        return [route.alias for route in self._catalog.routes()] + list(self._targets)

    async def start(self) -> None:
        self._active = True
        for alias in self._names():
            await self._publish(alias)
        for name in self._aliases_of:
            self._router.monitors[name].breaker.subscribe(self._changed)

    async def stop(self) -> None:
        self._active = False
        for timer in self._timers:
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        for alias in self._names():
            await self._servicer.set(health_name(alias), NOT_SERVING)

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
        aliases = self._aliases_of.get(deployment, [])
        routers = [r for alias in aliases for r in self._routers_of.get(alias, ())]
        for alias in dict.fromkeys([*aliases, *routers]):
            task = loop.create_task(self._publish(alias))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _available(self, alias: str) -> bool:
        targets = self._targets.get(alias)
        if targets is not None:  # a router: while any alias it routes to is
            return any(self._available(target) for target in targets)
        return self._router.available(self._catalog.resolve(alias))

    async def _publish(self, alias: str) -> None:
        await self._servicer.set(health_name(alias), SERVING if self._available(alias) else NOT_SERVING)
