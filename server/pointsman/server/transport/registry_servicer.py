"""RegistryService: registration, lease heartbeats, listing and watching."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from pointsman.registry.v1 import registry_pb2 as pb
from pointsman.registry.v1 import registry_pb2_grpc

from ..domain.errors import InvalidArgument, ViolationCollector
from ..domain.ports.stores import Instance
from ..domain.registry import (
    MAX_LEASE_SECONDS,
    MIN_LEASE_SECONDS,
    InstanceChange,
    Registry,
    check_instance,
)
from . import convert
from .calls import CallContext
from .resources import decode_offset, encode_token, page_size, resource_id
from .watch import snapshot_then_changes


class RegistryServicer(registry_pb2_grpc.RegistryServiceServicer):
    def __init__(self, registry: Registry, calls: CallContext) -> None:
        self._registry = registry
        self._calls = calls

    async def RegisterInstance(
        self, request: pb.RegisterInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterInstanceResponse:
        if not request.HasField("instance"):
            raise InvalidArgument.one("instance", "is required")
        given = request.instance
        instance = Instance(
            instance_id=given.instance_id,
            organisation=self._calls.caller().organisation,
            address=given.address,
            version=given.version,
            models=tuple(given.models),
            labels=dict(given.labels),
        )
        errors = ViolationCollector()
        check_instance(instance, errors)
        lease_seconds = None
        if request.HasField("lease_duration"):
            lease_seconds = request.lease_duration.ToNanoseconds() / 1e9
            if not MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS:
                errors.add("lease_duration", f"must be between {MIN_LEASE_SECONDS:g}s and {MAX_LEASE_SECONDS:g}s")
        errors.raise_if_any()
        registered, granted = await self._registry.register(instance, lease_seconds)
        response = pb.RegisterInstanceResponse(instance=convert.instance_to_proto(registered))
        response.lease_duration.FromNanoseconds(int(granted * 1e9))
        return response

    async def Heartbeat(
        self, request_iterator: AsyncIterator[pb.HeartbeatRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.HeartbeatResponse]:
        organisation = self._calls.caller().organisation
        async for request in request_iterator:
            instance = await self._registry.renew(organisation, resource_id(request.name, "instances"))
            yield pb.HeartbeatResponse(
                name=instance.name, lease_expire_time=convert.timestamp(instance.lease_expire_time)
            )

    async def GetInstance(
        self, request: pb.GetInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInstanceResponse:
        instance = await self._registry.get(self._calls.caller().organisation, resource_id(request.name, "instances"))
        return pb.GetInstanceResponse(instance=convert.instance_to_proto(instance))

    async def ListInstances(
        self, request: pb.ListInstancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInstancesResponse:
        size = page_size(request.page_size)
        offset = decode_offset(request.page_token)
        instances = await self._registry.list_instances(self._calls.caller().organisation)
        return pb.ListInstancesResponse(
            instances=[convert.instance_to_proto(i) for i in instances[offset : offset + size]],
            next_page_token=encode_token(str(offset + size)) if offset + size < len(instances) else "",
        )

    async def DeregisterInstance(
        self, request: pb.DeregisterInstanceRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeregisterInstanceResponse:
        await self._registry.deregister(self._calls.caller().organisation, resource_id(request.name, "instances"))
        return pb.DeregisterInstanceResponse()

    async def WatchInstances(
        self, request: pb.WatchInstancesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchInstancesResponse]:
        organisation = self._calls.caller().organisation

        async def snapshot() -> list[pb.WatchInstancesResponse]:
            instances = [convert.instance_to_proto(i) for i in await self._registry.watch_snapshot(organisation)]
            return [pb.WatchInstancesResponse(snapshot=pb.InstanceSnapshot(instances=instances))]

        def change(event: InstanceChange) -> pb.WatchInstancesResponse | None:
            if event.instance.organisation != organisation:
                return None
            return pb.WatchInstancesResponse(
                change=pb.InstanceChange(
                    change_type=convert.INSTANCE_CHANGES[event.change_type],
                    instance=convert.instance_to_proto(event.instance),
                )
            )

        async for response in snapshot_then_changes(self._registry.changes, snapshot, change):
            yield response
