"""The standard gRPC health service (grpc.health.v1.Health): Check, Watch and
List, per service. grpcio's own servicer has no List (its base answers
INTERNAL) and its watches never end, which held every shutdown for the whole
grace period; this one ends them when shutdown starts, with the final
NOT_SERVING as their last message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

# A HealthCheckResponse.ServingStatus number (grpc_health ships no types).
ServingStatus: TypeAlias = int
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthService(health_pb2_grpc.HealthServicer):  # type: ignore[misc]  # generated base, untyped
    def __init__(self) -> None:
        self._statuses: dict[str, ServingStatus] = {"": SERVING}
        # Replaced at every change: a watch waits on the one it saw last, so
        # no change can slip between reading a status and waiting.
        self._changed = asyncio.Event()
        self._shutting_down = False
        self._open_watches = 0
        self._watches_ended = asyncio.Event()
        self._watches_ended.set()

    def status(self, service: str) -> ServingStatus | None:
        return self._statuses.get(service)

    async def set(self, service: str, status: ServingStatus) -> None:
        """Ignored once shutdown has started: everything is NOT_SERVING then."""
        if not self._shutting_down:
            self._set(service, status)

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING from now on; open watches receive it and end."""
        if self._shutting_down:
            return
        self._shutting_down = True
        for service in self._statuses:
            self._statuses[service] = NOT_SERVING
        self._notify()

    def _set(self, service: str, status: ServingStatus) -> None:
        if self._statuses.get(service) != status:
            self._statuses[service] = status
            self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, "this server reports no such service; List shows the ones it does"
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        """The status now, then each change; ends (OK) after sending the final
        NOT_SERVING when shutdown starts. An unknown service is SERVICE_UNKNOWN
        until it is set, as the health protocol says."""
        last: ServingStatus | None = None
        self._open_watches += 1
        self._watches_ended.clear()
        try:
            while True:
                changed = self._changed
                status = self._statuses.get(request.service, SERVICE_UNKNOWN)
                if status != last:
                    yield health_pb2.HealthCheckResponse(status=status)
                    last = status
                if self._shutting_down:
                    return
                await changed.wait()
        finally:
            self._open_watches -= 1
            if not self._open_watches:
                self._watches_ended.set()

    async def watches_ended(self, timeout: float) -> None:
        """Waits (at most `timeout`) until every open watch has sent its
        final status and returned, so that stopping the server does not cut
        one before its OK leaves."""
        try:
            await asyncio.wait_for(self._watches_ended.wait(), timeout)
        except TimeoutError:
            return
        await asyncio.sleep(0.01)  # the last handler's status is sent on the loop's next turns

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={name: health_pb2.HealthCheckResponse(status=status) for name, status in self._statuses.items()}
        )
