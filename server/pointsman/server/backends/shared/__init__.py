"""State shared by replicas through Redis, each kind behind a small interface
with an in-process equivalent (the embedded default): response cache and
single flight, conversations, pub/sub bus, rate limits, breaker opens.
`open_redis(url)` makes the client they share; one `RedisHealth` per client
tells whether Redis answers. See docs/shared-state.md."""

from ...domain.single_flight import Flight, FlightLock, Outcome, RedisFlightLock, SingleFlight
from .breaker_state import LocalOpenState, RedisOpenState, SharedOpenState, share_opens
from .bus import Bus, BusMessage, BusSubscription, EventsMissed, InProcessBus, RedisBus, SubscriberTooSlow
from .cache import (
    CachedAnswer,
    CacheHit,
    CacheStats,
    InProcessResponseCache,
    RedisResponseCache,
    ResponseCache,
    TwoLevelCache,
    cache_key,
)
from .conversations import Conversations, InProcessConversations, RedisConversations
from .ratelimit import BucketPolicy, InProcessRateLimiter, RateLimiter, RateLimitResult, RedisRateLimiter
from .redis_health import RedisHealth, open_redis

__all__ = [
    "BucketPolicy",
    "Bus",
    "BusMessage",
    "BusSubscription",
    "CacheHit",
    "CacheStats",
    "CachedAnswer",
    "Conversations",
    "EventsMissed",
    "Flight",
    "FlightLock",
    "InProcessBus",
    "InProcessConversations",
    "InProcessRateLimiter",
    "InProcessResponseCache",
    "LocalOpenState",
    "Outcome",
    "RateLimitResult",
    "RateLimiter",
    "RedisBus",
    "RedisConversations",
    "RedisFlightLock",
    "RedisHealth",
    "RedisOpenState",
    "RedisRateLimiter",
    "RedisResponseCache",
    "ResponseCache",
    "SharedOpenState",
    "SingleFlight",
    "SubscriberTooSlow",
    "TwoLevelCache",
    "cache_key",
    "open_redis",
    "share_opens",
]
