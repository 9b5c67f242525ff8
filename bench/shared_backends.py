"""Latency of the shared-state backends, one call at a time (no concurrency):

- response cache hit for a typical 1 KB answer: L1 (in-process) and L2 (Redis);
- cache_key over a typical request;
- bus publish -> receive between two separate Redis connections (what a rule
  change or a breaker open takes to reach another replica);
- rate-limit check: Redis (one Lua script) and in-process.

    .venv/bin/python bench/shared_backends.py [--redis redis://127.0.0.1:6379/0] [--n 5000] [--json out.json]

Keys live under a random prefix and are deleted at the end. The client and the
bus subscriber share this process's event loop, as they would in a server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from pointsman.server.backends.shared import (
    BucketPolicy,
    InProcessRateLimiter,
    InProcessResponseCache,
    RedisBus,
    RedisRateLimiter,
    RedisResponseCache,
    TwoLevelCache,
    open_redis,
)
from pointsman.server.domain.cache_key import cache_key
from pointsman.server.domain.chat import (
    ChatRequest,
    FinishReason,
    GenerationConfig,
    Message,
    Role,
    Usage,
)
from pointsman.server.domain.ports.bus import BusMessage
from pointsman.server.domain.ports.cache import CachedAnswer

ORG = "org-bench"


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e3

    return {
        "p50_us": round(at(0.5), 1),
        "p99_us": round(at(0.99), 1),
        "mean_us": round(statistics.fmean(ordered) / 1e3, 1),
    }


async def timed(call: Callable[[], Awaitable[Any]], n: int, warmup: int = 200) -> dict[str, float]:
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await call()
        samples.append(time.perf_counter_ns() - start)
    return summary(samples)


def typical_answer() -> CachedAnswer:
    text = ("The capital of France is Paris, on the Seine. " * 22)[:1000]
    return CachedAnswer("openai-eu", text, usage=Usage(35, 240), finish_reason=FinishReason.STOP)


def typical_request() -> ChatRequest:
    return ChatRequest(
        "gpt-4o-mini",
        [
            Message(Role.SYSTEM, "You are a concise assistant. " * 5),
            Message(Role.USER, "What is the capital of France, and what river runs through it? " * 4),
        ],
        GenerationConfig(temperature=0.2, max_tokens=256),
    )


async def bus_latency(url: str, prefix: str, n: int) -> dict[str, float]:
    publisher_client, subscriber_client = open_redis(url), open_redis(url)
    publisher = RedisBus(publisher_client, prefix=prefix)
    subscriber = RedisBus(subscriber_client, prefix=prefix)
    subscription = await subscriber.subscribe("rules")
    received: asyncio.Queue[int] = asyncio.Queue()

    async def read() -> None:
        async for event in subscription:
            if isinstance(event, BusMessage):
                sent = int(event.payload)
                received.put_nowait(time.perf_counter_ns() - sent)

    reader = asyncio.create_task(read())
    samples = []
    for index in range(n + 200):
        await publisher.publish("rules", str(time.perf_counter_ns()).encode())
        latency = await asyncio.wait_for(received.get(), 5)
        if index >= 200:
            samples.append(latency)
    reader.cancel()
    await publisher.aclose()
    await subscriber.aclose()
    await publisher_client.aclose()
    await subscriber_client.aclose()
    return summary(samples)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    prefix = f"pmbench:{secrets.token_hex(4)}:"
    client = open_redis(args.redis)
    answer = typical_answer()
    request = typical_request()
    key = cache_key(request)
    results: dict[str, Any] = {"answer_bytes": len(answer.text.encode())}

    try:
        l1 = InProcessResponseCache()
        redis_cache = RedisResponseCache(client, prefix=prefix)
        two_level = TwoLevelCache(l1, redis_cache)
        await two_level.put(ORG, key, answer, ttl_seconds=600)
        results["cache_hit_l1"] = await timed(lambda: two_level.get(ORG, key), args.n)
        results["cache_hit_l2_redis"] = await timed(lambda: redis_cache.get(ORG, key), args.n)
        results["cache_miss_two_level"] = await timed(lambda: two_level.get(ORG, "absent"), args.n)

        async def key_of() -> str:
            return cache_key(request)

        results["cache_key"] = await timed(key_of, args.n)
        results["bus_publish_to_receive"] = await bus_latency(args.redis, prefix, args.n)

        policy = BucketPolicy(rate_per_second=1e6, burst=1e6)
        redis_limiter = RedisRateLimiter(client, policy, prefix=prefix)
        local_limiter = InProcessRateLimiter(policy)
        results["rate_limit_redis"] = await timed(lambda: redis_limiter.try_acquire("org:bench"), args.n)
        results["rate_limit_in_process"] = await timed(lambda: local_limiter.try_acquire("org:bench"), args.n)
        results["errors"] = redis_cache.stats.errors + redis_limiter.stats.errors
    finally:
        admin = Redis.from_url(args.redis)
        keys = [k async for k in admin.scan_iter(match=prefix + "*")]
        if keys:
            await admin.delete(*keys)
        await admin.aclose()
        await client.aclose()

    width = max(len(name) for name in results)
    for name, figures in results.items():
        if isinstance(figures, dict):
            line = "  ".join(f"{k} {v:8.1f}" for k, v in figures.items())
        else:
            line = str(figures)
        print(f"{name:<{width}}  {line}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
