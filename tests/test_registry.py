"""Registry, one replica (SQLite, in-process bus): register, heartbeat renews
the lease, lapsed leases disappear, list and watch show it, instances outlive a
restart, and a server can register itself. Several replicas:
test_registry_replicas.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2

from pointsman.client import AsyncClient
from pointsman.registry.v1 import registry_pb2 as reg

from server_fixtures import collect, eventually, raises


def register(instance_id: str, lease_seconds: float = 1.0, **extra: Any) -> reg.RegisterInstanceRequest:
    lease = duration_pb2.Duration()
    lease.FromNanoseconds(int(lease_seconds * 1e9))
    return reg.RegisterInstanceRequest(
        instance=reg.Instance(instance_id=instance_id, address="10.0.0.1:50051", **extra), lease_duration=lease
    )


async def names(client: AsyncClient) -> list[str]:
    return [i.name for i in (await client.registry.ListInstances(reg.ListInstancesRequest())).instances]


async def test_register_get_list_deregister(client: AsyncClient) -> None:
    response = await client.registry.RegisterInstance(register("orch-a", 30, version="1.2.3", models=["builtin"]))
    assert response.instance.name == "instances/orch-a"
    assert response.lease_duration.seconds == 30
    got = (await client.registry.GetInstance(reg.GetInstanceRequest(name="instances/orch-a"))).instance
    assert got.version == "1.2.3" and list(got.models) == ["builtin"]
    await client.registry.RegisterInstance(register("orch-b", 30))
    assert await names(client) == ["instances/orch-a", "instances/orch-b"]
    await client.registry.DeregisterInstance(reg.DeregisterInstanceRequest(name="instances/orch-a"))
    assert await names(client) == ["instances/orch-b"]


async def test_heartbeats_keep_an_instance_and_silence_lets_it_lapse(client: AsyncClient) -> None:
    await client.registry.RegisterInstance(register("kept", 1.0))
    await client.registry.RegisterInstance(register("lapsing", 1.0))
    beats: asyncio.Queue[reg.HeartbeatRequest | None] = asyncio.Queue()

    async def requests() -> Any:
        while (item := await beats.get()) is not None:
            yield item

    renewals: list[reg.HeartbeatResponse] = []

    async def heartbeat() -> None:
        async for response in client.registry.Heartbeat(requests()):
            renewals.append(response)

    task = asyncio.create_task(heartbeat())
    # Renew "kept" whenever the previous renewal is acknowledged, until "lapsing" is gone.
    while "instances/lapsing" in await names(client):
        await beats.put(reg.HeartbeatRequest(name="instances/kept"))
        count = len(renewals)
        await eventually(lambda count=count: len(renewals) > count)
    assert await names(client) == ["instances/kept"]
    assert renewals[-1].lease_expire_time.ToNanoseconds() > renewals[0].lease_expire_time.ToNanoseconds()
    await beats.put(None)
    await task


async def test_heartbeat_for_unknown_instance_is_not_found(client: AsyncClient) -> None:
    async def one() -> Any:
        yield reg.HeartbeatRequest(name="instances/nobody")

    error = await raises(collect(client.registry.Heartbeat(one())))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_watch_shows_snapshot_then_register_deregister_and_expiry(client: AsyncClient) -> None:
    await client.registry.RegisterInstance(register("early", 60))
    events: list[reg.WatchInstancesResponse] = []

    async def watch() -> None:
        async for event in client.registry.WatchInstances(reg.WatchInstancesRequest()):
            events.append(event)

    watcher = asyncio.create_task(watch())
    await eventually(lambda: len(events) == 1)
    assert [i.name for i in events[0].snapshot.instances] == ["instances/early"]
    await client.registry.RegisterInstance(register("short", 1.0))
    await client.registry.DeregisterInstance(reg.DeregisterInstanceRequest(name="instances/early"))
    await eventually(lambda: len(events) == 4)
    changes = [(e.change.change_type, e.change.instance.name) for e in events[1:]]
    assert changes == [
        (reg.INSTANCE_CHANGE_TYPE_REGISTERED, "instances/short"),
        (reg.INSTANCE_CHANGE_TYPE_DEREGISTERED, "instances/early"),
        (reg.INSTANCE_CHANGE_TYPE_EXPIRED, "instances/short"),
    ]
    watcher.cancel()


async def test_invalid_registration(client: AsyncClient) -> None:
    error = await raises(client.registry.RegisterInstance(register("Bad_ID", 10)))
    assert {v.field for v in error.field_violations} == {"instance.instance_id"}
    error = await raises(client.registry.RegisterInstance(register("ok", 0.1)))
    assert {v.field for v in error.field_violations} == {"lease_duration"}
    error = await raises(client.registry.RegisterInstance(reg.RegisterInstanceRequest()))
    assert {v.field for v in error.field_violations} == {"instance"}


async def test_server_registers_itself_with_a_registry(start_server: Any) -> None:
    registry = await start_server()
    orchestrator = await start_server(
        REGISTRY_ADDR=registry.address, ORCHESTRATOR_ID="orch-self", POINTSMAN_REGISTRY_LEASE_SECONDS=1
    )
    async with AsyncClient(registry.address) as client:
        await eventually(lambda: _has(client, "instances/orch-self"))
        instance = (await client.registry.GetInstance(reg.GetInstanceRequest(name="instances/orch-self"))).instance
        assert instance.address == orchestrator.address
        assert "builtin" in instance.models
        # Its heartbeats outlive several lease lengths...
        first_expiry = instance.lease_expire_time.ToNanoseconds()
        await eventually(lambda: _expiry_after(client, first_expiry + 1_500_000_000), timeout=10)
        # ...and a graceful stop deregisters at once.
        await orchestrator.stop(grace=0)
        assert "instances/orch-self" not in await names(client)


async def _has(client: AsyncClient, name: str) -> bool:
    return name in await names(client)


async def _expiry_after(client: AsyncClient, nanos: int) -> bool:
    instance = (await client.registry.GetInstance(reg.GetInstanceRequest(name="instances/orch-self"))).instance
    return instance.lease_expire_time.ToNanoseconds() > nanos


async def test_registering_again_updates_the_instance(client: AsyncClient) -> None:
    await client.registry.RegisterInstance(register("moving", 60))
    events: list[reg.WatchInstancesResponse] = []

    async def watch() -> None:
        async for event in client.registry.WatchInstances(reg.WatchInstancesRequest()):
            events.append(event)

    watcher = asyncio.create_task(watch())
    await eventually(lambda: len(events) == 1)
    moved = register("moving", 60)
    moved.instance.address = "10.0.0.2:50051"
    await client.registry.RegisterInstance(moved)
    await eventually(lambda: len(events) == 2)
    assert events[1].change.change_type == reg.INSTANCE_CHANGE_TYPE_UPDATED
    assert events[1].change.instance.address == "10.0.0.2:50051"
    assert await names(client) == ["instances/moving"]
    watcher.cancel()


async def test_instances_outlive_a_restart_until_their_lease_lapses(start_server: Any, tmp_path: Path) -> None:
    database = f"sqlite://{tmp_path / 'registry.db'}"
    first = await start_server(DATABASE_URL=database)
    async with AsyncClient(first.address, timeout=10) as client:
        await client.registry.RegisterInstance(register("durable", 60))
        await client.registry.RegisterInstance(register("brief", 2.0))
    await first.stop(grace=0)
    second = await start_server(DATABASE_URL=database)
    async with AsyncClient(second.address, timeout=10) as client:
        assert "instances/durable" in await names(client)
        events: list[reg.WatchInstancesResponse] = []

        async def watch() -> None:
            async for event in client.registry.WatchInstances(reg.WatchInstancesRequest()):
                events.append(event)

        watcher = asyncio.create_task(watch())
        # The restarted server reaps the lease the stopped one granted.
        expired = (reg.INSTANCE_CHANGE_TYPE_EXPIRED, "instances/brief")
        await eventually(lambda: expired in [(e.change.change_type, e.change.instance.name) for e in events])
        assert await names(client) == ["instances/durable"]
        watcher.cancel()
