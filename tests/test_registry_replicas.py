"""The registry shared by replicas: instances in one database (SQLite file or
PostgreSQL), changes on one bus (in-process or Redis). Two Registry objects
over one database and bus, and real servers sharing PostgreSQL and Redis:
what one replica registers the other lists and watches, each expiry is
announced once, organisations stay apart, and a database outage turns into
UNAVAILABLE until it ends."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import grpc
import pytest
from google.protobuf import duration_pb2
from redis.asyncio import Redis

from pointsman.client import AsyncClient
from pointsman.registry.v1 import registry_pb2 as reg
from pointsman.server.app.server import PointsmanServer
from pointsman.server.backends.shared import InProcessBus, RedisBus, open_redis
from pointsman.server.backends.stores import Stores, open_stores
from pointsman.server.domain.broadcast import Broadcaster, SubscriberTooSlow
from pointsman.server.domain.ports.bus import BusMessage
from pointsman.server.domain.ports.stores import Instance
from pointsman.server.domain.registry import (
    REGISTRY_TOPIC,
    InstanceChange,
    InstanceChangeType,
    Registry,
)

from server_fixtures import ServerFactory, collect, eventually, raises

pytestmark = pytest.mark.slow  # outages, restarts and workers: seconds per test

POSTGRES_ADMIN_URL = os.environ.get("POINTSMAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("POINTSMAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


# Set-up -------------------------------------------------------------------------


@asynccontextmanager
async def _fresh_postgres_database() -> AsyncIterator[str]:
    name = f"pointsman_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlunsplit(urlsplit(POSTGRES_ADMIN_URL)._replace(path=f"/{name}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A database of the test's own, so no other test's leases are reaped here."""
    async with _fresh_postgres_database() as url:
        yield url


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"pmtest:registry:{secrets.token_hex(4)}:"
    yield prefix
    admin = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in admin.scan_iter(match=prefix + "*")]
        if keys:
            await admin.delete(*keys)
    finally:
        await admin.aclose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def replicas(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Registry, Registry, InProcessBus]]:
    """Two registries, each with its own connection to one database, on one bus."""
    bus = InProcessBus()
    opened: list[Stores] = []
    registries: list[Registry] = []
    for _ in range(2):
        stores = await open_stores(database_url, tmp_path)
        opened.append(stores)
        registry = Registry(stores.instances, bus, poll_seconds=0.5)
        registry.start()
        registries.append(registry)
    yield registries[0], registries[1], bus
    for registry in registries:
        await registry.aclose()
    for stores in opened:
        await stores.aclose()


@pytest.fixture
def start_replica(postgres_url: str, redis_prefix: str, start_server: ServerFactory) -> ServerFactory:
    """Starts servers sharing one PostgreSQL database and one Redis (under the
    test's own prefix); the database outlives them (set up first, dropped last)."""

    async def start(**env: Any) -> PointsmanServer:
        shared = {"DATABASE_URL": postgres_url, "REDIS_URL": REDIS_URL, "POINTSMAN_REDIS_PREFIX": redis_prefix}
        return await start_server(**(shared | env))

    return start


class Changes:
    """Collects what a Registry announces to its watchers."""

    def __init__(self, changes: Broadcaster[InstanceChange]) -> None:
        self.seen: list[tuple[str, str, str]] = []  # (type, organisation, instance id)
        subscription = changes.subscribe()

        async def run() -> None:
            async for change in subscription:
                self.seen.append((change.change_type, change.instance.organisation, change.instance.instance_id))

        self.task = asyncio.create_task(run())

    def of(self, change_type: str) -> list[str]:
        return [instance_id for kind, _, instance_id in self.seen if kind == change_type]


class Watch:
    """A WatchInstances stream on a real server, read in the background."""

    def __init__(self, client: AsyncClient) -> None:
        self.events: list[reg.WatchInstancesResponse] = []

        async def run() -> None:
            async for event in client.registry.WatchInstances(reg.WatchInstancesRequest()):
                self.events.append(event)

        self.task = asyncio.create_task(run())

    @property
    def changes(self) -> list[tuple[int, str]]:
        return [(e.change.change_type, e.change.instance.instance_id) for e in self.events if e.HasField("change")]

    async def started(self) -> list[str]:
        await eventually(lambda: len(self.events) >= 1)
        return [i.instance_id for i in self.events[0].snapshot.instances]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class RedisChannel:
    """Reads a Redis pub/sub channel directly: what the replicas' buses have
    published, in Redis's order."""

    def __init__(self, channel: str) -> None:
        self._client = Redis.from_url(REDIS_URL)
        self._pubsub = self._client.pubsub()
        self._channel = channel

    async def __aenter__(self) -> RedisChannel:
        await self._pubsub.subscribe(self._channel)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._client.aclose()

    async def wait_for(self, change_type: str, instance_id: str, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is None:
                    continue
                payload = json.loads(message["data"])
                if (payload["type"], payload["instance"]["instance_id"]) == (change_type, instance_id):
                    return


def register(instance_id: str, lease_seconds: float) -> reg.RegisterInstanceRequest:
    lease = duration_pb2.Duration()
    lease.FromNanoseconds(int(lease_seconds * 1e9))
    instance = reg.Instance(instance_id=instance_id, address="10.0.0.1:50051")
    return reg.RegisterInstanceRequest(instance=instance, lease_duration=lease)


def an_instance(organisation: str, instance_id: str) -> Instance:
    return Instance(instance_id=instance_id, organisation=organisation, address="10.0.0.1:50051")


async def ids(listing: Awaitable[list[Instance]]) -> list[str]:
    return [i.instance_id for i in await listing]


async def names(client: AsyncClient) -> list[str]:
    return [i.instance_id for i in (await client.registry.ListInstances(reg.ListInstancesRequest())).instances]


# Two Registry objects, SQLite and PostgreSQL ------------------------------------------


async def test_an_instance_registered_on_one_replica_is_seen_on_the_other(
    replicas: tuple[Registry, Registry, InProcessBus],
) -> None:
    a, b, _ = replicas
    org = f"org-{secrets.token_hex(3)}"
    heard_on_b = Changes(b.changes)
    registered, _ = await a.register(an_instance(org, "orch-1"), 30)
    assert await ids(b.list_instances(org)) == ["orch-1"]
    assert await b.get(org, "orch-1") == registered
    renewed = await b.renew(org, "orch-1")  # a heartbeat may reach either replica
    assert renewed.lease_expire_time is not None and registered.lease_expire_time is not None
    assert renewed.lease_expire_time >= registered.lease_expire_time
    await b.deregister(org, "orch-1")
    assert await ids(a.list_instances(org)) == []
    await eventually(lambda: len(heard_on_b.seen) == 2)
    assert heard_on_b.seen == [
        (InstanceChangeType.REGISTERED, org, "orch-1"),
        (InstanceChangeType.DEREGISTERED, org, "orch-1"),
    ]


async def test_each_expiry_is_announced_once_by_one_replica(
    replicas: tuple[Registry, Registry, InProcessBus],
) -> None:
    a, b, bus = replicas
    org = f"org-{secrets.token_hex(3)}"
    on_bus = await bus.subscribe(REGISTRY_TOPIC)
    expired_on_bus: list[str] = []

    async def read_bus() -> None:
        async for event in on_bus:
            assert isinstance(event, BusMessage)
            payload = event.json()
            if payload.get("type") == "sentinel":
                return
            if payload["type"] == InstanceChangeType.EXPIRED:
                expired_on_bus.append(payload["instance"]["instance_id"])

    reader = asyncio.create_task(read_bus())
    heard = [Changes(a.changes), Changes(b.changes)]
    wanted = [f"lapsing-{i}" for i in range(8)]
    for i, instance_id in enumerate(wanted):
        await (a if i % 2 else b).register(an_instance(org, instance_id), 1.0)
    # Both replicas' reapers race for the same leases.
    await eventually(lambda: all(sorted(h.of(InstanceChangeType.EXPIRED)) == wanted for h in heard))
    await a.aclose()
    await b.aclose()  # nothing can be announced after this...
    await bus.publish(REGISTRY_TOPIC, {"type": "sentinel"})  # ...so the bus holds all of it before this
    await reader
    assert sorted(expired_on_bus) == wanted  # once each
    for h in heard:
        assert sorted(h.of(InstanceChangeType.EXPIRED)) == wanted
    assert await ids(a.list_instances(org)) == []


async def test_re_registering_is_an_update_and_other_organisations_are_apart(
    replicas: tuple[Registry, Registry, InProcessBus],
) -> None:
    a, b, _ = replicas
    org, other = f"org-a-{secrets.token_hex(3)}", f"org-b-{secrets.token_hex(3)}"
    heard = Changes(b.changes)
    await a.register(an_instance(org, "shared-name"), 30)
    await b.register(an_instance(other, "shared-name"), 30)
    await b.register(an_instance(org, "shared-name"), 30)
    assert await ids(a.list_instances(org)) == ["shared-name"]
    assert await ids(a.list_instances(other)) == ["shared-name"]
    await a.deregister(other, "shared-name")
    assert await ids(b.list_instances(other)) == []
    assert await ids(b.list_instances(org)) == ["shared-name"]
    await eventually(lambda: len(heard.seen) == 4)
    assert heard.seen == [
        (InstanceChangeType.REGISTERED, org, "shared-name"),
        (InstanceChangeType.REGISTERED, other, "shared-name"),
        (InstanceChangeType.UPDATED, org, "shared-name"),
        (InstanceChangeType.DEREGISTERED, other, "shared-name"),
    ]


async def test_a_malformed_bus_message_is_ignored(replicas: tuple[Registry, Registry, InProcessBus]) -> None:
    a, b, bus = replicas
    org = f"org-{secrets.token_hex(3)}"
    heard = Changes(b.changes)
    await bus.publish(REGISTRY_TOPIC, {"origin": "elsewhere", "type": "exploded", "instance": {}})
    await bus.publish(REGISTRY_TOPIC, b"not json")
    await a.register(an_instance(org, "after"), 30)
    await eventually(lambda: len(heard.seen) == 1)
    assert heard.seen == [(InstanceChangeType.REGISTERED, org, "after")]


# Real servers sharing PostgreSQL and Redis ---------------------------------------------


async def test_watch_on_one_server_sees_changes_made_on_another(start_replica: ServerFactory) -> None:
    a = await start_replica()
    b = await start_replica()
    async with AsyncClient(a.address, timeout=10) as on_a, AsyncClient(b.address, timeout=10) as on_b:
        await on_a.registry.RegisterInstance(register("early", 60))
        watch = Watch(on_b)
        assert await watch.started() == ["early"]
        await on_a.registry.RegisterInstance(register("short", 1.0))
        await on_a.registry.DeregisterInstance(reg.DeregisterInstanceRequest(name="instances/early"))
        assert await names(on_b) == ["short"]
        await eventually(lambda: len(watch.changes) == 3)
        assert watch.changes == [
            (reg.INSTANCE_CHANGE_TYPE_REGISTERED, "short"),
            (reg.INSTANCE_CHANGE_TYPE_DEREGISTERED, "early"),
            (reg.INSTANCE_CHANGE_TYPE_EXPIRED, "short"),
        ]
        assert await names(on_a) == await names(on_b) == []
        await watch.stop()


async def test_organisations_do_not_see_each_other(start_replica: ServerFactory, redis_prefix: str) -> None:
    alpha = await start_replica(ORG_ID="alpha")
    beta = await start_replica(ORG_ID="beta")
    beta_again = await start_replica(ORG_ID="beta")
    async with (
        AsyncClient(alpha.address, timeout=10) as on_alpha,
        AsyncClient(beta.address, timeout=10) as on_beta,
        AsyncClient(beta_again.address, timeout=10) as on_beta_again,
        RedisChannel(f"{redis_prefix}bus:{REGISTRY_TOPIC}") as channel,
    ):
        watch = Watch(on_beta)
        assert await watch.started() == []
        await on_alpha.registry.RegisterInstance(register("secret", 1.0))
        await on_alpha.registry.RegisterInstance(register("kept", 60))
        await on_alpha.registry.DeregisterInstance(reg.DeregisterInstanceRequest(name="instances/kept"))
        await on_beta.registry.RegisterInstance(register("mine", 60))
        assert await names(on_beta) == ["mine"]
        assert await names(on_alpha) == ["secret"]
        for call in (
            on_beta.registry.GetInstance(reg.GetInstanceRequest(name="instances/secret")),
            on_beta.registry.DeregisterInstance(reg.DeregisterInstanceRequest(name="instances/secret")),
            collect(on_beta.registry.Heartbeat(_one_beat("instances/secret"))),
        ):
            assert (await raises(call)).code == grpc.StatusCode.NOT_FOUND
        # Alpha's expiry is on Redis (whichever replica reaped it); a change
        # published after it on another beta replica reaches beta after it too.
        await channel.wait_for(InstanceChangeType.EXPIRED, "secret")
        await on_beta_again.registry.RegisterInstance(register("sentinel", 60))
        await eventually(lambda: "sentinel" in [i for _, i in watch.changes])
        assert watch.changes == [
            (reg.INSTANCE_CHANGE_TYPE_REGISTERED, "mine"),
            (reg.INSTANCE_CHANGE_TYPE_REGISTERED, "sentinel"),
        ]
        await watch.stop()


async def _one_beat(name: str) -> AsyncIterator[reg.HeartbeatRequest]:
    yield reg.HeartbeatRequest(name=name)


# The database down ----------------------------------------------------------------------


class TcpProxy:
    """A TCP proxy to PostgreSQL or Redis that can be taken down (dropping
    every connection, as a restart does) and brought back on the same port."""

    def __init__(self, target_url: str, default_port: int) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or default_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    def url(self, target_url: str) -> str:
        """`target_url` through the proxy."""
        parts = urlsplit(target_url)
        netloc = f"{parts.username}@127.0.0.1:{self.port}" if parts.username else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, RuntimeError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._writers.difference_update((writer, upstream_writer))


@pytest.fixture
async def postgres_proxy(postgres_url: str) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(postgres_url, 5432)
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_a_database_outage_is_unavailable_and_the_reaper_catches_up(
    postgres_url: str, postgres_proxy: TcpProxy, start_server: ServerFactory
) -> None:
    server = await start_server(DATABASE_URL=postgres_proxy.url(postgres_url))
    async with AsyncClient(server.address, timeout=10) as client:
        watch = Watch(client)
        await watch.started()
        registered = await client.registry.RegisterInstance(register("lapses-in-the-outage", 1.0))
        lapses_at = registered.instance.lease_expire_time.ToDatetime(tzinfo=UTC)
        await postgres_proxy.stop()
        for call in (
            client.registry.ListInstances(reg.ListInstancesRequest()),
            client.registry.RegisterInstance(register("refused", 30)),
            client.registry.GetInstance(reg.GetInstanceRequest(name="instances/lapses-in-the-outage")),
            client.registry.DeregisterInstance(reg.DeregisterInstanceRequest(name="instances/refused")),
            collect(client.registry.Heartbeat(_one_beat("instances/lapses-in-the-outage"))),
        ):
            error = await raises(call)
            assert error.code == grpc.StatusCode.UNAVAILABLE
            assert error.reason == "REGISTRY_UNAVAILABLE"
            assert error.message == "the registry's database is unavailable; retry shortly"
            assert error.retry_delay == 1.0
        # The lease lapses while the reaper cannot reach the database; once it
        # can, the expiry is announced and calls succeed again.
        await eventually(lambda: datetime.now(UTC) > lapses_at + timedelta(milliseconds=200))
        await postgres_proxy.start()
        await eventually(
            lambda: (reg.INSTANCE_CHANGE_TYPE_EXPIRED, "lapses-in-the-outage") in watch.changes, timeout=15
        )
        assert await names(client) == []
        await client.registry.RegisterInstance(register("after", 30))
        assert await names(client) == ["after"]
        await watch.stop()


async def test_watchers_start_again_when_bus_messages_may_be_lost(redis_prefix: str, tmp_path: Path) -> None:
    proxy = TcpProxy(REDIS_URL, 6379)
    await proxy.start()
    stores = await open_stores(f"sqlite://{tmp_path / 'registry.db'}", tmp_path)
    clients = [open_redis(proxy.url(REDIS_URL)), open_redis(REDIS_URL)]
    buses = [RedisBus(client, prefix=redis_prefix) for client in clients]
    a, b = registries = [Registry(stores.instances, bus) for bus in buses]
    org = f"org-{secrets.token_hex(3)}"
    try:
        for registry in registries:
            registry.start()
        await a.watch_snapshot(org)  # listening to the bus
        cut_off = a.changes.subscribe()
        await proxy.stop()  # a's connection to Redis breaks...
        await proxy.start()  # ...and comes back: what was published meanwhile is lost
        with pytest.raises(SubscriberTooSlow):
            async for _ in cut_off:
                pass
        # A watcher that starts again hears the other replica's changes.
        heard = Changes(a.changes)
        await a.watch_snapshot(org)
        await b.register(an_instance(org, "after-the-break"), 30)
        await eventually(lambda: heard.seen == [(InstanceChangeType.REGISTERED, org, "after-the-break")])
    finally:
        for registry in registries:
            await registry.aclose()
        for bus in buses:
            await bus.aclose()
        for client in clients:
            await client.aclose()
        await stores.aclose()
        await proxy.stop()
