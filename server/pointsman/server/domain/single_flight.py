"""Identical concurrent requests share one upstream call.

Within a process, the first request for a key leads and the others wait on it.
Across replicas, the leader also holds a short lock (`FlightLock`; on Redis,
backends/shared/flight_lock.py); a replica that finds the lock taken polls the
cache for the answer, and calls upstream itself if the lock holder gives up or
does not deliver in time.
Nothing here can fail a request: without Redis, each replica leads alone."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from .ports.cache import UNLOCKED, CachedAnswer, FlightLock, ResponseCache
from .ports.stores import require_organisation


class Outcome(enum.Enum):
    CACHED = "cached"  # the answer was in the cache
    SHARED = "shared"  # another request's call produced it while we waited
    LEADER = "leader"  # nobody had it: the caller calls upstream and delivers


@dataclass(slots=True)
class SingleFlightStats:
    leaders: int = 0
    shared: int = 0
    cached: int = 0
    gave_up_waiting: int = 0  # waited `wait_seconds` in vain, then led
    waiting: int = 0  # requests waiting right now


class _LocalFlight:
    __slots__ = ("answer", "done")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.answer: CachedAnswer | None = None


class Flight:
    """One request's part in a flight. If `answer` is set, replay it; else
    this request leads: call upstream, stream to the client, then `deliver`.
    Leaving the flight without delivering (failure, cancellation, an answer
    not fit to cache) lets the waiting requests lead in turn."""

    def __init__(
        self,
        owner: SingleFlight,
        organisation: str,
        key: str,
        outcome: Outcome,
        answer: CachedAnswer | None = None,
        local: _LocalFlight | None = None,
        token: str | None = None,
    ) -> None:
        self._owner = owner
        self._organisation = organisation
        self._key = key
        self.outcome = outcome
        self.answer = answer
        self._local = local
        self._token = token

    @property
    def leader(self) -> bool:
        return self.outcome is Outcome.LEADER

    async def deliver(self, answer: CachedAnswer, ttl_seconds: float) -> None:
        """Stores the answer (not when `ttl_seconds` <= 0) and hands it to
        every request waiting in this process; the cache put comes before the
        lock's release, so waiting replicas find the answer."""
        if not self.leader:
            raise RuntimeError("only the leader of a flight delivers")
        self.answer = answer
        if ttl_seconds > 0:
            await self._owner.cache.put(self._organisation, self._key, answer, ttl_seconds)
        await self._finish()

    async def _finish(self) -> None:
        local, self._local = self._local, None
        if local is not None:
            local.answer = self.answer
            self._owner._end_local(self._organisation, self._key, local)
        token, self._token = self._token, None
        if token is not None and self._owner.lock is not None:
            await self._owner.lock.release(self._organisation, self._key, token)


class _Joined:
    """`SingleFlight.join`'s context: takes the flight on entry and leaves it
    on exit, however the block ends. A class rather than a generator-based
    context manager: it is entered on every cached call."""

    __slots__ = ("_flight", "_key", "_organisation", "_owner")

    def __init__(self, owner: SingleFlight, organisation: str, key: str) -> None:
        self._owner = owner
        self._organisation = organisation
        self._key = key
        self._flight: Flight | None = None

    async def __aenter__(self) -> Flight:
        self._flight = await self._owner._take(self._organisation, self._key)
        return self._flight

    async def __aexit__(self, *exc_info: object) -> None:
        if self._flight is not None:
            await self._flight._finish()


class SingleFlight:
    """`async with flights.join(org, key) as flight:` checks the cache, joins
    a flight already under way, or makes the caller its leader."""

    def __init__(
        self,
        cache: ResponseCache,
        lock: FlightLock | None = None,
        *,
        wait_seconds: float = 10.0,
        poll_seconds: float = 0.05,
    ) -> None:
        self.cache = cache
        self.lock = lock
        # The longest a request waits for someone else's answer before calling
        # upstream itself; also the cross-replica lock's lifetime.
        self._wait = wait_seconds
        self._poll = poll_seconds
        self._local: dict[tuple[str, str], _LocalFlight] = {}
        self.stats = SingleFlightStats()

    def join(self, organisation: str, key: str) -> _Joined:
        require_organisation(organisation)
        return _Joined(self, organisation, key)

    async def _take(self, organisation: str, key: str) -> Flight:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait
        while True:
            answer = await self.cache.get(organisation, key)
            if answer is not None:
                self.stats.cached += 1
                return Flight(self, organisation, key, Outcome.CACHED, answer)
            local = self._local.get((organisation, key))
            if local is None:
                break
            left = deadline - loop.time()
            if left <= 0 or not await self._wait_local(local, left):
                self.stats.gave_up_waiting += 1
                return self._lead(organisation, key, None, None)
            if local.answer is not None:
                self.stats.shared += 1
                return Flight(self, organisation, key, Outcome.SHARED, local.answer)
            # The leader left without an answer: look again, perhaps lead.

        local = _LocalFlight()
        self._local[(organisation, key)] = local
        try:
            token, answer = await self._lead_across_replicas(organisation, key, deadline)
        except BaseException:
            self._end_local(organisation, key, local)
            raise
        if answer is not None:
            local.answer = answer
            self._end_local(organisation, key, local)
            self.stats.shared += 1
            return Flight(self, organisation, key, Outcome.SHARED, answer)
        return self._lead(organisation, key, local, token)

    def _lead(self, organisation: str, key: str, local: _LocalFlight | None, token: str | None) -> Flight:
        self.stats.leaders += 1
        return Flight(self, organisation, key, Outcome.LEADER, None, local, token)

    async def _wait_local(self, local: _LocalFlight, seconds: float) -> bool:
        self.stats.waiting += 1
        try:
            async with asyncio.timeout(seconds):
                await local.done.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self.stats.waiting -= 1

    async def _lead_across_replicas(
        self, organisation: str, key: str, deadline: float
    ) -> tuple[str | None, CachedAnswer | None]:
        """(lock token, None) to lead, or (None, answer) when another replica
        delivered while we waited."""
        if self.lock is None:
            return None, None
        loop = asyncio.get_running_loop()
        while True:
            token = await self.lock.acquire(organisation, key, self._wait)
            if token is not None:
                if token != UNLOCKED:
                    # The previous holder may have delivered just before we
                    # took the lock: look once more before calling upstream.
                    try:
                        answer = await self.cache.get(organisation, key)
                    except BaseException:
                        await self.lock.release(organisation, key, token)
                        raise
                    if answer is not None:
                        await self.lock.release(organisation, key, token)
                        return None, answer
                return token, None
            self.stats.waiting += 1
            try:
                while True:
                    if loop.time() >= deadline:
                        self.stats.gave_up_waiting += 1
                        return None, None
                    await asyncio.sleep(min(self._poll, max(0.0, deadline - loop.time())))
                    answer = await self.cache.get(organisation, key)
                    if answer is not None:
                        return None, answer
                    if not await self.lock.held(organisation, key):
                        break  # the holder gave up: try to take over
            finally:
                self.stats.waiting -= 1

    def _end_local(self, organisation: str, key: str, local: _LocalFlight) -> None:
        if self._local.get((organisation, key)) is local:
            del self._local[(organisation, key)]
        local.done.set()
