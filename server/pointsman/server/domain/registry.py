"""The instance registry: registrations hold a lease that heartbeats renew;
an instance whose lease lapses is removed and watchers are told."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from ..backends.broadcast import Broadcaster
from .errors import NotFound, ViolationCollector

INSTANCE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MIN_LEASE_SECONDS = 1.0
MAX_LEASE_SECONDS = 300.0
DEFAULT_LEASE_SECONDS = 15.0
MAX_LABELS = 32
MAX_MODELS = 256


@dataclass(frozen=True, slots=True)
class Instance:
    instance_id: str
    organisation: str
    address: str
    version: str = ""
    models: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    register_time: datetime | None = None
    lease_expire_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"instances/{self.instance_id}"


class InstanceChangeType:
    REGISTERED = "registered"
    UPDATED = "updated"
    DEREGISTERED = "deregistered"
    EXPIRED = "expired"


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
    if len(instance.labels) > MAX_LABELS:
        errors.add(f"{path}.labels", f"at most {MAX_LABELS} labels are allowed")
    if len(instance.models) > MAX_MODELS:
        errors.add(f"{path}.models", f"at most {MAX_MODELS} models are allowed")
    if len(instance.version) > 128:
        errors.add(f"{path}.version", "must be at most 128 characters")


@dataclass(slots=True)
class _Lease:
    instance: Instance
    seconds: float
    deadline: float  # time.monotonic()


class Registry:
    """Embedded registry. A background reaper removes lapsed leases; start it
    with `start()` and stop it with `aclose()`."""

    def __init__(self) -> None:
        self._leases: dict[tuple[str, str], _Lease] = {}
        self.changes: Broadcaster[InstanceChange] = Broadcaster()
        self._reaper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="registry-reaper")

    async def aclose(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        self.changes.close()

    def register(self, instance: Instance, lease_seconds: float | None) -> tuple[Instance, float]:
        seconds = min(max(lease_seconds or DEFAULT_LEASE_SECONDS, MIN_LEASE_SECONDS), MAX_LEASE_SECONDS)
        key = (instance.organisation, instance.instance_id)
        previous = self._leases.get(key)
        now = datetime.now(UTC)
        instance = replace(instance, register_time=now, lease_expire_time=now + timedelta(seconds=seconds))
        self._leases[key] = _Lease(instance, seconds, time.monotonic() + seconds)
        self._wake.set()
        change = InstanceChangeType.UPDATED if previous else InstanceChangeType.REGISTERED
        self.changes.publish(InstanceChange(change, instance))
        return instance, seconds

    def renew(self, organisation: str, instance_id: str) -> Instance:
        lease = self._lease(organisation, instance_id)
        lease.deadline = time.monotonic() + lease.seconds
        lease.instance = replace(lease.instance, lease_expire_time=datetime.now(UTC) + timedelta(seconds=lease.seconds))
        return lease.instance

    def get(self, organisation: str, instance_id: str) -> Instance:
        return self._lease(organisation, instance_id).instance

    def list(self, organisation: str) -> list[Instance]:
        return sorted(
            (lease.instance for (org, _), lease in self._leases.items() if org == organisation),
            key=lambda i: i.instance_id,
        )

    def deregister(self, organisation: str, instance_id: str) -> Instance:
        lease = self._lease(organisation, instance_id)
        del self._leases[(organisation, instance_id)]
        self.changes.publish(InstanceChange(InstanceChangeType.DEREGISTERED, lease.instance))
        return lease.instance

    def _lease(self, organisation: str, instance_id: str) -> _Lease:
        lease = self._leases.get((organisation, instance_id))
        if lease is None:
            raise NotFound(
                f"instance 'instances/{instance_id}' is not registered (or its lease lapsed)",
                reason="INSTANCE_NOT_FOUND",
            )
        return lease

    def expire_lapsed(self) -> float | None:
        """Removes lapsed leases; returns seconds until the next one lapses."""
        now = time.monotonic()
        next_deadline: float | None = None
        for key, lease in list(self._leases.items()):
            if lease.deadline <= now:
                del self._leases[key]
                self.changes.publish(InstanceChange(InstanceChangeType.EXPIRED, lease.instance))
            elif next_deadline is None or lease.deadline < next_deadline:
                next_deadline = lease.deadline
        return None if next_deadline is None else next_deadline - now

    async def _reap_forever(self) -> None:
        while True:
            wait = self.expire_lapsed()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait if wait is not None else 60.0)
