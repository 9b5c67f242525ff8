"""Health of what the server depends on, under the standard health service:
`dependencies/database` and `dependencies/redis` (only with REDIS_URL). The
server keeps serving through either outage (the firewall enforces the rules it
last loaded, decisions wait in the write buffer, the cache is skipped), so the
overall status stays SERVING; these names say what is degraded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from grpc_health.v1 import health_pb2

from .health import HealthService

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
DATABASE = "dependencies/database"
REDIS = "dependencies/redis"
# How often the database and Redis are probed.
PROBE_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 2.0


class DependencyHealth:
    """`ping_database` raises when the database does not answer;
    `ping_redis` (None without REDIS_URL) says whether Redis does."""

    def __init__(
        self,
        servicer: HealthService,
        ping_database: Callable[[], Awaitable[None]],
        ping_redis: Callable[[], Awaitable[bool]] | None = None,
        probe_seconds: float = PROBE_SECONDS,
    ) -> None:
        self._servicer = servicer
        self._ping_database = ping_database
        self._ping_redis = ping_redis
        self._probe_seconds = probe_seconds
        self._task: asyncio.Task[None] | None = None
        self._last: dict[str, bool] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return (DATABASE, REDIS) if self._ping_redis is not None else (DATABASE,)

    def status(self) -> dict[str, bool]:
        """Whether each dependency answered its last probe."""
        return dict(self._last)

    async def start(self) -> None:
        await self.probe()
        self._task = asyncio.create_task(self._run(), name="dependency-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for name in self.names:
            await self._servicer.set(name, NOT_SERVING)

    async def probe(self) -> None:
        await self._report(DATABASE, await self._database_up())
        if self._ping_redis is not None:
            await self._report(REDIS, await self._ping_redis())

    async def _database_up(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                await self._ping_database()
        except Exception:
            return False
        return True

    async def _report(self, name: str, up: bool) -> None:
        if self._last.get(name) != up:
            if name in self._last:
                log.log(logging.INFO if up else logging.WARNING, "%s is %s", name, "back" if up else "unreachable")
            self._last[name] = up
            await self._servicer.set(name, SERVING if up else NOT_SERVING)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._probe_seconds)
            try:
                await self.probe()
            except Exception:
                log.exception("probing dependencies failed")
