"""In-process pub/sub for watch streams: every subscriber gets every event, in
order, through its own bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T")


class SubscriberTooSlow(Exception):
    """A subscriber fell so far behind that its queue filled; it is dropped
    rather than letting memory grow or silently missing events."""


_CLOSED = object()
_OVERFLOWED = object()


class Subscription(Generic[T]):
    def __init__(self, broadcaster: Broadcaster[T], max_pending: int) -> None:
        self._broadcaster = broadcaster
        self._queue: asyncio.Queue[object] = asyncio.Queue(max_pending + 1)
        self._max_pending = max_pending

    def _offer(self, item: object) -> bool:
        if self._queue.qsize() >= self._max_pending:
            self._queue.put_nowait(_OVERFLOWED)  # the spare slot
            return False
        self._queue.put_nowait(item)
        return True

    async def __aiter__(self) -> AsyncIterator[T]:
        try:
            while True:
                item = await self._queue.get()
                if item is _CLOSED:
                    return
                if item is _OVERFLOWED:
                    raise SubscriberTooSlow()
                yield item  # type: ignore[misc]
        finally:
            self._broadcaster._subscribers.discard(self)

    def close(self) -> None:
        self._broadcaster._subscribers.discard(self)
        if self._queue.qsize() < self._queue.maxsize:
            self._queue.put_nowait(_CLOSED)


class Broadcaster(Generic[T]):
    """Subscribe first, then read the snapshot, then iterate: nothing that
    happens in between is missed."""

    def __init__(self, max_pending: int = 1000) -> None:
        self._subscribers: set[Subscription[T]] = set()
        self._max_pending = max_pending

    def subscribe(self) -> Subscription[T]:
        subscription: Subscription[T] = Subscription(self, self._max_pending)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, event: T) -> None:
        for subscription in list(self._subscribers):
            if not subscription._offer(event):
                self._subscribers.discard(subscription)

    def close(self) -> None:
        """Ends every subscription (at shutdown, so watch streams finish cleanly)."""
        for subscription in list(self._subscribers):
            subscription.close()

    def fail_all(self) -> None:
        """Ends every subscription with SubscriberTooSlow: events may have
        been missed, so each watcher should start again from a snapshot."""
        for subscription in list(self._subscribers):
            self._subscribers.discard(subscription)
            if subscription._queue.qsize() < subscription._queue.maxsize:
                subscription._queue.put_nowait(_OVERFLOWED)
