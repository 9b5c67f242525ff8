"""The instance registry: registrations hold a lease that heartbeats renew; an
instance whose lease lapses is removed and watchers are told. Instances live in
the durable InstanceStore and changes travel on the bus, so every replica lists
the same instances and every replica's watchers hear of every change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from .broadcast import Broadcaster, SubscriberTooSlow
from .errors import DomainError, Unavailable, ViolationCollector
from .ports.bus import Bus, BusMessage, EventsMissed
from .ports.stores import Instance, InstanceStore
from .validation import check_text, loggable

log = logging.getLogger(__name__)

INSTANCE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MIN_LEASE_SECONDS = 1.0
MAX_LEASE_SECONDS = 300.0
DEFAULT_LEASE_SECONDS = 15.0
MAX_LABELS = 32
MAX_MODELS = 256
MAX_LABEL_CHARS = 256

REGISTRY_TOPIC = "registry"

T = TypeVar("T")


class InstanceChangeType:
    REGISTERED = "registered"
    UPDATED = "updated"
    DEREGISTERED = "deregistered"
    EXPIRED = "expired"


CHANGE_TYPES = frozenset(
    (
        InstanceChangeType.REGISTERED,
        InstanceChangeType.UPDATED,
        InstanceChangeType.DEREGISTERED,
        InstanceChangeType.EXPIRED,
    )
)


@dataclass(frozen=True, slots=True)
class InstanceChange:
    change_type: str
    instance: Instance


def check_instance(instance: Instance, errors: ViolationCollector, path: str = "instance") -> None:
    if not INSTANCE_ID.match(instance.instance_id):
        errors.add(
            f"{path}.instance_id",
            "must be 1 to 63 characters of a-z, 0-9 and '-', starting with a letter",
        )
    if not instance.address or len(instance.address) > 255 or ":" not in instance.address:
        errors.add(f"{path}.address", "must be host:port")
    else:
        check_text(instance.address, errors, f"{path}.address")
    if len(instance.labels) > MAX_LABELS:
        errors.add(f"{path}.labels", f"at most {MAX_LABELS} labels are allowed")
    else:
        for key, value in instance.labels.items():
            check_text(key, errors, f"{path}.labels", max_chars=MAX_LABEL_CHARS)
            check_text(value, errors, f"{path}.labels[{loggable(key, 64)!r}]", max_chars=MAX_LABEL_CHARS)
    if len(instance.models) > MAX_MODELS:
        errors.add(f"{path}.models", f"at most {MAX_MODELS} models are allowed")
    else:
        for index, model in enumerate(instance.models):
            check_text(model, errors, f"{path}.models[{index}]", max_chars=256)
    check_text(instance.version, errors, f"{path}.version", max_chars=128)


def instance_to_plain(instance: Instance) -> dict[str, Any]:
    """For the bus: JSON-ready, times as ISO 8601."""
    return {
        "instance_id": instance.instance_id,
        "organisation": instance.organisation,
        "address": instance.address,
        "version": instance.version,
        "models": list(instance.models),
        "labels": dict(instance.labels),
        "register_time": _iso(instance.register_time),
        "lease_expire_time": _iso(instance.lease_expire_time),
    }


def instance_from_plain(plain: dict[str, Any]) -> Instance:
    """Raises KeyError, TypeError, ValueError or AttributeError when malformed."""
    return Instance(
        instance_id=str(plain["instance_id"]),
        organisation=str(plain["organisation"]),
        address=str(plain["address"]),
        version=str(plain["version"]),
        models=tuple(str(model) for model in plain["models"]),
        labels={str(key): str(value) for key, value in plain["labels"].items()},
        register_time=_time(plain.get("register_time")),
        lease_expire_time=_time(plain.get("lease_expire_time")),
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Registry:
    """The registry on one replica. `start()` begins listening to the other
    replicas' changes and reaping lapsed leases; `aclose()` stops both.

    `changes` announces every change this replica makes at once, and every
    other replica's as it arrives on the bus. When bus messages may have been
    lost, its subscribers are ended (`fail_all`) so that they watch again from
    a fresh snapshot."""

    def __init__(
        self,
        instances: InstanceStore,
        bus: Bus,
        *,
        poll_seconds: float = 2.0,
        max_backoff_seconds: float = 5.0,
        listen_timeout_seconds: float = 5.0,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._instances = instances
        self._bus = bus
        # Instances registered on other replicas (or on one that died) lapse
        # without telling us: look for the next expiry at least this often.
        self._poll_seconds = poll_seconds
        self._max_backoff = max_backoff_seconds
        self._listen_timeout = listen_timeout_seconds
        self._clock = clock
        self._origin = secrets.token_hex(8)
        self.changes: Broadcaster[InstanceChange] = Broadcaster()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()  # the bus subscription is live
        self._wake = asyncio.Event()  # a lease was granted: look at the next expiry again

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._listen(), name="registry-bus"),
            asyncio.create_task(self._reap_forever(), name="registry-reaper"),
        ]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.changes.close()

    # Calls ------------------------------------------------------------------

    async def register(self, instance: Instance, lease_seconds: float | None) -> tuple[Instance, float]:
        seconds = min(max(lease_seconds or DEFAULT_LEASE_SECONDS, MIN_LEASE_SECONDS), MAX_LEASE_SECONDS)
        registered, created = await _stored(self._instances.register_instance(instance, seconds))
        self._wake.set()
        change = InstanceChangeType.REGISTERED if created else InstanceChangeType.UPDATED
        await self._announce(change, registered)
        return registered, seconds

    async def renew(self, organisation: str, instance_id: str) -> Instance:
        return await _stored(self._instances.renew_lease(organisation, instance_id))

    async def get(self, organisation: str, instance_id: str) -> Instance:
        return await _stored(self._instances.get_instance(organisation, instance_id))

    async def list_instances(self, organisation: str) -> list[Instance]:
        """Sorted by instance id."""
        return await _stored(self._instances.list_instances(organisation))

    async def deregister(self, organisation: str, instance_id: str) -> Instance:
        # A lapsed instance is not found here; its row is left to the reaper,
        # which announces it as EXPIRED.
        removed = await _stored(self._instances.delete_instance(organisation, instance_id))
        await self._announce(InstanceChangeType.DEREGISTERED, removed)
        return removed

    async def watch_snapshot(self, organisation: str) -> list[Instance]:
        """The snapshot for a watcher already subscribed to `changes`: taken
        once this replica hears the other replicas' changes, so that nothing
        falls between the snapshot and the changes."""
        if self._tasks and not self._listening.is_set():
            try:
                async with asyncio.timeout(self._listen_timeout):
                    await self._listening.wait()
            except TimeoutError:
                raise Unavailable(
                    "registry events are not available yet; watch again shortly",
                    reason="REGISTRY_UNAVAILABLE",
                ) from None
        return await self.list_instances(organisation)

    # Announcing and hearing changes ----------------------------------------

    async def _announce(self, change_type: str, instance: Instance) -> None:
        self.changes.publish(InstanceChange(change_type, instance))
        payload = {"origin": self._origin, "type": change_type, "instance": instance_to_plain(instance)}
        await self._bus.publish(REGISTRY_TOPIC, payload)

    async def _listen(self) -> None:
        while True:
            subscription = await self._bus.subscribe(REGISTRY_TOPIC)
            self._listening.set()
            try:
                async for event in subscription:
                    if isinstance(event, EventsMissed):
                        # Other replicas' changes may be lost: watchers start again.
                        self.changes.fail_all()
                    elif isinstance(event, BusMessage):
                        self._relay(event)
                return  # the bus closed
            except SubscriberTooSlow:
                log.warning("fell behind the registry's bus topic; watchers will take a fresh snapshot")
                self._listening.clear()
                self.changes.fail_all()

    def _relay(self, message: BusMessage) -> None:
        """Another replica's change, to this replica's watchers."""
        try:
            payload = message.json()
            if payload["origin"] == self._origin:
                return  # announced here already
            change_type = payload["type"]
            if change_type not in CHANGE_TYPES:
                raise ValueError(change_type)
            instance = instance_from_plain(payload["instance"])
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("ignored a malformed registry change on the bus")
            return
        self.changes.publish(InstanceChange(change_type, instance))
        if change_type in (InstanceChangeType.REGISTERED, InstanceChangeType.UPDATED):
            self._wake.set()  # its lease may lapse before any we knew of

    # Reaping lapsed leases ---------------------------------------------------

    async def _reap(self) -> None:
        # Every replica reaps; the store hands each lapsed instance to one of
        # them, so each expiry is announced once.
        for instance in await self._instances.expire_lapsed():
            await self._announce(InstanceChangeType.EXPIRED, instance)

    async def _seconds_to_next_expiry(self) -> float:
        expiry = await self._instances.next_lease_expiry()
        if expiry is None:
            return self._poll_seconds
        # A floor, so that clock differences cannot make a busy loop.
        return min(max((expiry - self._clock()).total_seconds(), 0.01), self._poll_seconds)

    async def _reap_forever(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                await self._reap()
                wait = await self._seconds_to_next_expiry()
                if failures:
                    log.info("the registry's lease reaper reached the database again")
                failures = 0
            except Exception as error:  # the database is down: try again later
                failures += 1
                if failures == 1:
                    log.warning("the registry's lease reaper could not reach the database (%s)", type(error).__name__)
                wait = min(self._max_backoff, 0.1 * 2 ** min(failures - 1, 16)) * random.uniform(0.5, 1.0)
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for loses a
            # cancellation that arrives as the event is set, and aclose hangs.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()


async def _stored(operation: Awaitable[T]) -> T:
    """Awaits a store call; a store that fails (the database is down or
    unreachable) becomes UNAVAILABLE, without the details."""
    try:
        return await operation
    except (DomainError, ValueError):
        raise
    except Exception as error:
        if str(getattr(error, "sqlstate", "")).startswith("22"):
            # A value the database refuses (SQLSTATE class 22, data exception)
            # is the caller's, not an outage: telling them to retry is wrong.
            raise
        log.warning(
            "the registry's database failed (%s)", type(error).__name__, exc_info=log.isEnabledFor(logging.DEBUG)
        )
        raise Unavailable(
            "the registry's database is unavailable; retry shortly",
            reason="REGISTRY_UNAVAILABLE",
            retry_after_seconds=1.0,
        ) from None
