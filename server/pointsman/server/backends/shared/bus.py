"""Pub/sub between replicas, for rule changes and registry events: in-process,
or Redis pub/sub so that a watcher on any replica sees changes made on any other.

Every subscriber of a topic gets every message published on it after its
`subscribe` returned (its own replica's too), in publishing order, through a
bounded queue: a subscriber that falls `max_pending` behind is ended with
`SubscriberTooSlow` instead of growing memory. Redis pub/sub does not keep
messages for a disconnected subscriber, so after the connection breaks and
comes back, each subscriber receives `EventsMissed`: re-read a snapshot."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from ...domain.broadcast import SubscriberTooSlow
from ...domain.ports.bus import Bus, BusEvent, BusMessage, BusSubscription, EventsMissed
from .redis_health import DEFAULT_PREFIX, REDIS_ERRORS, RedisHealth

log = logging.getLogger(__name__)

__all__ = [
    "Bus",
    "BusEvent",
    "BusMessage",
    "BusSubscription",
    "EventsMissed",
    "InProcessBus",
    "RedisBus",
    "SubscriberTooSlow",
]


def encode_payload(payload: bytes | dict[str, Any]) -> bytes:
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


_CLOSED = object()
_OVERFLOWED = object()


class TopicSubscription:
    """`async for event in subscription:`; ends when closed (or the bus is),
    raises SubscriberTooSlow once its queue overflowed."""

    def __init__(self, topic: _Topic, max_pending: int) -> None:
        self.topic = topic.name
        self._topic = topic
        self._queue: asyncio.Queue[object] = asyncio.Queue(max_pending + 1)
        self._max_pending = max_pending
        self._ended = False
        # False until Redis confirmed the subscription; a subscription that
        # went unconfirmed past `subscribe` is owed an EventsMissed.
        self.confirmed = False
        self.returned = False

    def _offer(self, item: object) -> None:
        if self._ended:
            return
        if self._queue.qsize() >= self._max_pending:
            self._queue.put_nowait(_OVERFLOWED)  # the spare slot
            self._end()
            return
        self._queue.put_nowait(item)

    async def __aiter__(self) -> AsyncIterator[BusEvent]:
        try:
            while True:
                item = await self._queue.get()
                if item is _CLOSED:
                    return
                if item is _OVERFLOWED:
                    raise SubscriberTooSlow()
                yield item  # type: ignore[misc]
        finally:
            self.close()

    def close(self) -> None:
        if not self._ended:
            self._end()
            if self._queue.qsize() < self._queue.maxsize:
                self._queue.put_nowait(_CLOSED)

    def _end(self) -> None:
        self._ended = True
        self._topic.remove(self)


class _Topic:
    """A topic's local subscribers."""

    def __init__(self, name: str, bus: _FanOut) -> None:
        self.name = name
        self._bus = bus
        self.subscriptions: set[TopicSubscription] = set()
        self.confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def offer(self, event: BusEvent) -> None:
        for subscription in list(self.subscriptions):
            subscription._offer(event)

    def remove(self, subscription: TopicSubscription) -> None:
        self.subscriptions.discard(subscription)
        if not self.subscriptions:
            self._bus._topic_idle(self)


class _FanOut:
    def __init__(self, max_pending: int) -> None:
        self._max_pending = max_pending
        self._topics: dict[str, _Topic] = {}

    def _new_subscription(self, topic_name: str) -> tuple[TopicSubscription, _Topic, bool]:
        topic = self._topics.get(topic_name)
        created = topic is None
        if topic is None:
            topic = self._topics[topic_name] = _Topic(topic_name, self)
        subscription = TopicSubscription(topic, self._max_pending)
        topic.subscriptions.add(subscription)
        return subscription, topic, created

    def _topic_idle(self, topic: _Topic) -> None:
        if self._topics.get(topic.name) is topic:
            del self._topics[topic.name]

    def _close_all(self) -> None:
        for topic in list(self._topics.values()):
            for subscription in list(topic.subscriptions):
                subscription.close()
        self._topics.clear()


@dataclass(slots=True)
class BusStats:
    published: int = 0
    publish_errors: int = 0
    received: int = 0
    reconnects: int = 0


class InProcessBus(_FanOut):
    def __init__(self, max_pending: int = 1000) -> None:
        super().__init__(max_pending)
        self.stats = BusStats()

    @property
    def healthy(self) -> bool:
        return True

    async def publish(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        data = encode_payload(payload)
        self.stats.published += 1
        target = self._topics.get(topic)
        if target is not None:
            self.stats.received += 1
            target.offer(BusMessage(topic, data))

    async def subscribe(self, topic: str) -> TopicSubscription:
        subscription, _, _ = self._new_subscription(topic)
        subscription.confirmed = subscription.returned = True
        return subscription

    async def aclose(self) -> None:
        self._close_all()


class RedisBus(_FanOut):
    """One Redis pub/sub connection per bus, carrying every topic this replica
    listens to (channel `{prefix}bus:{topic}`), read by one task that fans
    messages out to the local subscribers. Publishing uses the ordinary pool."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        health: RedisHealth | None = None,
        max_pending: int = 1000,
        confirm_timeout_seconds: float = 2.0,
        max_reconnect_backoff_seconds: float = 2.0,
    ) -> None:
        super().__init__(max_pending)
        self._redis = client
        self._prefix = f"{prefix}bus:"
        self.health = health if health is not None else RedisHealth()
        self._confirm_timeout = confirm_timeout_seconds
        self._max_backoff = max_reconnect_backoff_seconds
        self._pubsub: PubSub | None = None  # set while connected
        self._lock = asyncio.Lock()  # orders SUBSCRIBE/UNSUBSCRIBE against reconnecting
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # UNSUBSCRIBEs under way
        self._closed = False
        self.stats = BusStats()
        self.connected = False

    @property
    def healthy(self) -> bool:
        return self.health.healthy and (self._reader is None or self.connected)

    def channel(self, topic: str) -> str:
        return self._prefix + topic

    async def publish(self, topic: str, payload: bytes | dict[str, Any]) -> None:
        data = encode_payload(payload)
        channel = self.channel(topic)
        result = await self.health.attempt(lambda: self._redis.publish(channel, data))
        if isinstance(result, int):
            self.stats.published += 1
        else:
            self.stats.publish_errors += 1

    async def subscribe(self, topic: str) -> TopicSubscription:
        if self._closed:
            raise RuntimeError("the bus is closed")
        subscription, target, created = self._new_subscription(topic)
        if created:
            self._ensure_reader()
            async with self._lock:
                if self._pubsub is not None and self._topics.get(topic) is target:
                    try:
                        await self._pubsub.subscribe(self.channel(topic))
                    except REDIS_ERRORS as error:
                        # The reader notices the broken connection and subscribes again.
                        log.debug("SUBSCRIBE failed: %s", type(error).__name__)
        try:
            await asyncio.wait_for(asyncio.shield(target.confirmed), self._confirm_timeout)
            subscription.confirmed = True
        except TimeoutError:
            pass  # returned unconfirmed: gets EventsMissed once Redis confirms
        subscription.returned = True
        return subscription

    async def aclose(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._drop_connection()
        self._close_all()

    # The reader -------------------------------------------------------------

    def _ensure_reader(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="redis-bus-reader")

    def _topic_idle(self, topic: _Topic) -> None:
        super()._topic_idle(topic)
        if not self._closed and self._pubsub is not None:
            task = asyncio.get_running_loop().create_task(self._unsubscribe(topic.name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _unsubscribe(self, topic: str) -> None:
        async with self._lock:
            if self._pubsub is not None and topic not in self._topics:
                try:
                    await self._pubsub.unsubscribe(self.channel(topic))
                except REDIS_ERRORS:
                    pass  # a new connection subscribes only to live topics

    async def _read_forever(self) -> None:
        backoff = 0.0
        broken = False
        while not self._closed:
            try:
                await self._connect()
                self.connected = True
                self.health.succeeded()
                if broken:
                    self.stats.reconnects += 1
                    log.info("Redis bus reconnected; subscribers are told events may have been missed")
                broken = False
                backoff = 0.0
                await self._read(self._pubsub)
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as error:
                self.health.failed(error)
            except Exception:
                log.exception("Redis bus reader failed")
            # The connection is gone: every subscriber may miss messages now.
            broken = True
            self.connected = False
            for target in self._topics.values():
                if target.confirmed.done():
                    target.confirmed = asyncio.get_running_loop().create_future()
                for subscription in target.subscriptions:
                    subscription.confirmed = False
            await self._drop_connection()
            backoff = min(self._max_backoff, max(0.05, backoff * 2))
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))

    async def _connect(self) -> None:
        async with self._lock:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]
                channels = [self.channel(topic) for topic in self._topics]
                if channels:
                    await pubsub.subscribe(*channels)
                else:
                    await pubsub.ping()
            except BaseException:
                await pubsub.aclose()
                raise
            self._pubsub = pubsub

    async def _read(self, pubsub: PubSub | None) -> None:
        assert pubsub is not None
        while not self._closed:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            if channel is None or not channel.startswith(self._prefix):
                continue
            target = self._topics.get(channel[len(self._prefix) :])
            if target is None:
                continue
            if kind == "message":
                self.stats.received += 1
                data = message["data"]
                target.offer(BusMessage(target.name, data.encode() if isinstance(data, str) else data))
            elif kind == "subscribe":
                self._confirm(target)

    def _confirm(self, target: _Topic) -> None:
        if not target.confirmed.done():
            target.confirmed.set_result(None)
        for subscription in list(target.subscriptions):
            if subscription.returned and not subscription.confirmed:
                subscription._offer(EventsMissed(target.name))
            subscription.confirmed = True

    async def _drop_connection(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except REDIS_ERRORS:
                pass
