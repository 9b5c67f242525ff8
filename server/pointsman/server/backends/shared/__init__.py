"""State shared by replicas through Redis, each kind implementing a port of
the domain (domain/ports/) with an in-process equivalent (the embedded
default): response cache and single-flight lock, conversations, pub/sub bus,
rate limits, breaker opens, the batch queue. `open_redis(url)` makes the
client they share; one `RedisHealth` per client tells whether Redis answers.
See docs/shared-state.md."""

from .breaker_state import LocalOpenState, RedisOpenState
from .bus import InProcessBus, RedisBus
from .cache import InProcessResponseCache, RedisResponseCache, TwoLevelCache
from .conversations import InProcessConversations, RedisConversations
from .flight_lock import RedisFlightLock
from .ratelimit import BucketPolicy, InProcessRateLimiter, RateLimiter, RateLimitResult, RedisRateLimiter
from .redis_health import RedisHealth, open_redis

__all__ = [
    "BucketPolicy",
    "InProcessBus",
    "InProcessConversations",
    "InProcessRateLimiter",
    "InProcessResponseCache",
    "LocalOpenState",
    "RateLimitResult",
    "RateLimiter",
    "RedisBus",
    "RedisConversations",
    "RedisFlightLock",
    "RedisHealth",
    "RedisOpenState",
    "RedisRateLimiter",
    "RedisResponseCache",
    "TwoLevelCache",
    "open_redis",
]
