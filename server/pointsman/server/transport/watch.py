"""The shape every Watch RPC shares: subscribe, send a snapshot, then changes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

from ..domain.broadcast import Broadcaster, SubscriberTooSlow
from ..domain.errors import Unavailable

Event = TypeVar("Event")
Response = TypeVar("Response")


async def snapshot_then_changes(
    changes: Broadcaster[Event],
    snapshot: Callable[[], Awaitable[Iterable[Response]]],
    change_response: Callable[[Event], Response | None],
) -> AsyncIterator[Response]:
    """Subscribes before taking the snapshot, so nothing between the two is
    missed. The snapshot may be several messages (a large one is paged);
    changes follow its last. `change_response` returns None for events this
    watcher must not see (another organisation's)."""
    subscription = changes.subscribe()
    try:
        for part in await snapshot():
            yield part
        async for event in subscription:
            response = change_response(event)
            if response is not None:
                yield response
    except SubscriberTooSlow:
        raise Unavailable(
            "this watcher fell behind; watch again for a fresh snapshot", reason="WATCH_OVERFLOW"
        ) from None
    finally:
        subscription.close()
