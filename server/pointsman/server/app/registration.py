"""Registers this server with a registry (REGISTRY_ADDR) and keeps its lease
alive over a Heartbeat stream, re-registering after any failure."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator

import grpc
from google.protobuf import duration_pb2
from pydantic import SecretStr

from pointsman.registry.v1 import registry_pb2 as pb
from pointsman.registry.v1 import registry_pb2_grpc

log = logging.getLogger(__name__)


class SelfRegistration:
    def __init__(
        self,
        registry_address: str,
        instance: pb.Instance,
        lease_seconds: float,
        *,
        token: SecretStr | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._address = registry_address
        self._credentials = credentials  # None: plain gRPC
        # REGISTRY_TOKEN: the registry needs an admin credential (JWT or API key).
        self._metadata = (("authorization", f"Bearer {token.get_secret_value()}"),) if token is not None else ()
        self._instance = instance
        self._lease_seconds = lease_seconds
        self._task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    def _channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(self._address)
        return grpc.aio.secure_channel(self._address, self._credentials)

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_registered(), name="self-registration")

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        # Best effort: tell the registry at once rather than letting the lease lapse.
        async with self._channel() as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            with contextlib.suppress(grpc.RpcError):
                await stub.DeregisterInstance(
                    pb.DeregisterInstanceRequest(name=f"instances/{self._instance.instance_id}"),
                    timeout=2,
                    metadata=self._metadata,
                )

    async def _keep_registered(self) -> None:
        backoff = 0.5
        async with self._channel() as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            while True:
                try:
                    await self._register_and_heartbeat(stub)
                except grpc.RpcError as error:
                    log.warning("registry %s: %s; retrying", self._address, error.code().name)
                self.registered.clear()
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 10.0)

    async def _register_and_heartbeat(self, stub: registry_pb2_grpc.RegistryServiceStub) -> None:
        lease = duration_pb2.Duration()
        lease.FromNanoseconds(int(self._lease_seconds * 1e9))
        response = await stub.RegisterInstance(
            pb.RegisterInstanceRequest(instance=self._instance, lease_duration=lease),
            timeout=5,
            metadata=self._metadata,
        )
        interval = response.lease_duration.ToNanoseconds() / 1e9 / 3
        log.info("registered as %s with %s", response.instance.name, self._address)
        self.registered.set()

        async def beats() -> AsyncIterator[pb.HeartbeatRequest]:
            while True:
                await asyncio.sleep(interval)
                yield pb.HeartbeatRequest(name=response.instance.name)

        async for _ in stub.Heartbeat(beats(), metadata=self._metadata):
            pass
