"""Pub/sub between replicas (rule changes, registry events, revocations,
breaker opens): what a publisher and a subscriber may count on. In-process
and Redis implementations are in backends/shared/bus.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class BusMessage:
    topic: str
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass(frozen=True, slots=True)
class EventsMissed:
    """Messages on `topic` may have been lost (the connection to Redis broke
    and is back): whoever keeps state from this topic should re-snapshot."""

    topic: str


BusEvent = BusMessage | EventsMissed


class BusSubscription(Protocol):
    """`async for event in subscription:` every message published on the topic
    after `subscribe` returned, in order; ends when closed (or the bus is),
    raises `SubscriberTooSlow` (domain/broadcast.py) once it fell too far behind."""

    topic: str

    def __aiter__(self) -> AsyncIterator[BusEvent]: ...

    def close(self) -> None: ...


class Bus(Protocol):
    @property
    def healthy(self) -> bool: ...

    async def publish(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        """Never raises for an unreachable bus: the message is dropped and
        counted (subscribers on other replicas learn of it by EventsMissed
        when their own connection broke too)."""
        ...

    async def subscribe(self, topic: str) -> BusSubscription:
        """Subscribed once this returns: read a snapshot after it, then iterate."""
        ...

    async def aclose(self) -> None: ...
