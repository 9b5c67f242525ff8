"""Circuit-breaker opens shared between replicas.

The smallest useful sharing: when a replica's breaker opens, it announces
"deployment D is open until T" (T in wall-clock seconds); every replica keeps
the latest T per deployment in a local dict, so the breaker's synchronous
`try_acquire` can consult it without a network call. Announcements travel on
the bus (a few milliseconds) and are also kept in Redis keys that expire at T,
re-read every `refresh_seconds` and after the bus reports missed events, so a
replica that started late or lost messages catches up. Closing is not shared:
once T passes each replica probes for itself, as its own breaker would."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis

from ...domain.broadcast import SubscriberTooSlow
from ...domain.ports.bus import Bus, BusMessage, BusSubscription, EventsMissed
from .redis_health import DEFAULT_PREFIX, RedisHealth, Skipped, key_segment

log = logging.getLogger(__name__)

TOPIC = "breaker.open"


class LocalOpenState:
    """One process: nothing to share, the breaker's own state is the truth."""

    def opened_until(self, deployment: str) -> float:
        return 0.0

    def is_open(self, deployment: str) -> bool:
        return False

    def announce_open(self, deployment: str, until: float) -> None:
        pass

    async def publish_open(self, deployment: str, until: float) -> None:
        pass

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


# Keep the later of two opens: a shorter announcement must not shorten a
# longer one made by another replica.
_PUBLISH = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local until_ms = tonumber(ARGV[1])
if until_ms > current then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
"""


class RedisOpenState:
    """Keys `{prefix}breaker:{deployment}` holding the open-until time in
    milliseconds since the epoch, expiring at that time; bus topic
    `breaker.open` carrying {"deployment", "until_ms"}."""

    def __init__(
        self,
        client: Redis,
        bus: Bus,
        *,
        prefix: str = DEFAULT_PREFIX,
        health: RedisHealth | None = None,
        refresh_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        max_pending_announcements: int = 64,
    ) -> None:
        self._redis = client
        self._bus = bus
        self._prefix = f"{prefix}breaker:"
        self.health = health if health is not None else RedisHealth()
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._until: dict[str, float] = {}
        self._known: set[str] = set()  # deployments asked about: the ones refreshed
        self._publish = client.register_script(_PUBLISH)
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_pending = max_pending_announcements
        self._subscription: BusSubscription | None = None
        self._listener: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.dropped_announcements = 0
        self.errors = 0

    @property
    def healthy(self) -> bool:
        return self.health.healthy and self._bus.healthy

    def redis_key(self, deployment: str) -> str:
        return self._prefix + key_segment(deployment)

    def opened_until(self, deployment: str) -> float:
        self._known.add(deployment)
        until = self._until.get(deployment, 0.0)
        if until and until <= self._clock():
            del self._until[deployment]
            return 0.0
        return until

    def is_open(self, deployment: str) -> bool:
        return self.opened_until(deployment) > self._clock()

    def announce_open(self, deployment: str, until: float) -> None:
        self._note(deployment, until)
        if len(self._tasks) >= self._max_pending:
            self.dropped_announcements += 1
            return
        task = asyncio.get_running_loop().create_task(self.publish_open(deployment, until))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish_open(self, deployment: str, until: float) -> None:
        self._note(deployment, until)
        until_ms = int(until * 1000)
        ttl_ms = until_ms - int(self._clock() * 1000)
        if ttl_ms <= 0:
            return
        key = self.redis_key(deployment)
        stored = await self.health.attempt(lambda: self._publish(keys=[key], args=[until_ms, ttl_ms]))
        if isinstance(stored, Skipped):
            self.errors += 1
        # The key first, the message second: a replica that reads the key on
        # hearing of missed messages finds what the message would have said.
        await self._bus.publish(TOPIC, {"deployment": deployment, "until_ms": until_ms})

    async def start(self) -> None:
        self._subscription = await self._bus.subscribe(TOPIC)
        self._listener = asyncio.create_task(self._listen(self._subscription), name="breaker-state-listener")
        self._refresher = asyncio.create_task(self._refresh_forever(), name="breaker-state-refresher")

    async def aclose(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        for task in (self._listener, self._refresher, *self._tasks):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._listener, self._refresher, *self._tasks) if t is not None), return_exceptions=True
        )

    async def refresh(self) -> None:
        """Reads the open-until keys of every deployment asked about."""
        deployments = sorted(self._known)
        if not deployments:
            return
        keys = [self.redis_key(d) for d in deployments]
        values = await self.health.attempt(lambda: self._redis.mget(keys))
        if isinstance(values, Skipped):
            self.errors += 1
            return
        for deployment, value in zip(deployments, values, strict=True):
            if value is not None:
                self._note(deployment, int(value) / 1000)

    def _note(self, deployment: str, until: float) -> None:
        if until > self._until.get(deployment, 0.0):
            self._until[deployment] = until

    async def _listen(self, subscription: BusSubscription) -> None:
        while True:
            try:
                async for event in subscription:
                    if isinstance(event, BusMessage):
                        self._on_message(event)
                    elif isinstance(event, EventsMissed):
                        await self.refresh()
                return  # closed
            except SubscriberTooSlow:
                log.warning("breaker announcements arrived faster than read; resubscribing")
                subscription = self._subscription = await self._bus.subscribe(TOPIC)
                await self.refresh()

    def _on_message(self, event: BusMessage) -> None:
        try:
            plain = event.json()
            self._note(str(plain["deployment"]), int(plain["until_ms"]) / 1000)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed breaker announcement")

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing shared breaker state failed")
