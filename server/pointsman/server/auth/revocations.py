"""Revocations announced to every replica on the bus, so a credential revoked
on one replica stops working on all of them at once.

- API keys: a revoked key is forgotten from the verified-key cache. Without
  a bus that reaches other replicas (no Redis), or while it is down, the
  cache lifetime bounds how long a revoked key works elsewhere; a gap in what
  the bus delivered empties the cache.
- JWTs: stored by digest until they would have expired, loaded at start and
  every `refresh_seconds` (which bounds how long a revoked token works in a
  process the bus does not reach), and on a gap in the bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime

from ..domain.ports.bus import Bus, BusMessage, BusSubscription, EventsMissed
from ..domain.ports.stores import UserStore
from .api_keys import ApiKeyVerifier
from .tokens import TokenVerifier

log = logging.getLogger(__name__)

REVOCATIONS_TOPIC = "api-key-revocations"
TOKEN_REVOCATIONS_TOPIC = "token-revocations"
TOKEN_REFRESH_SECONDS = 30.0


class KeyRevocations:
    def __init__(self, bus: Bus, verifier: ApiKeyVerifier) -> None:
        self._bus = bus
        self._verifier = verifier
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        subscription = await self._bus.subscribe(REVOCATIONS_TOPIC)
        self._task = asyncio.create_task(self._listen(subscription), name="api-key-revocations")

    async def announce(self, key_id: str) -> None:
        """Forgets the key here, then tells the other replicas."""
        self._verifier.forget(key_id)
        try:
            await self._bus.publish(REVOCATIONS_TOPIC, {"key_id": key_id})
        except Exception as error:  # the revocation is stored; the cache lifetime bounds the rest
            log.warning("could not announce an API key revocation (%s)", type(error).__name__)

    async def aclose(self) -> None:
        await _stop([self._task])
        self._task = None

    async def _listen(self, subscription: BusSubscription) -> None:
        async for event in subscription:
            if isinstance(event, EventsMissed):
                self._verifier.forget_all()  # a revocation may be among what was missed
            elif isinstance(event, BusMessage):
                try:
                    self._verifier.forget(str(event.json()["key_id"]))
                except (KeyError, TypeError, ValueError):
                    log.warning("ignored a malformed API key revocation on the bus")


class TokenRevocations:
    def __init__(
        self,
        bus: Bus,
        users: UserStore,
        verifier: TokenVerifier | None,
        *,
        refresh_seconds: float = TOKEN_REFRESH_SECONDS,
    ) -> None:
        self._bus = bus
        self._users = users
        self._verifier = verifier  # None: this server accepts no tokens
        self._refresh_seconds = refresh_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._reload = asyncio.Event()

    async def start(self) -> None:
        if self._verifier is None:
            return
        subscription = await self._bus.subscribe(TOKEN_REVOCATIONS_TOPIC)
        await self._load()
        self._tasks = [
            asyncio.create_task(self._listen(subscription), name="token-revocations"),
            asyncio.create_task(self._refresh_loop(), name="token-revocations-refresh"),
        ]

    async def revoke(self, organisation: str, digest: str, expire_time: datetime) -> None:
        """Stores the revocation, refuses the token here, then tells the other
        replicas. Raises if the database cannot store it: a revocation that
        would not survive a restart is not reported as done."""
        await self._users.revoke_token(organisation, digest, expire_time)
        if self._verifier is not None:
            self._verifier.revoke(digest, expire_time.timestamp())
        try:
            await self._bus.publish(TOKEN_REVOCATIONS_TOPIC, {"digest": digest, "exp": expire_time.timestamp()})
        except Exception as error:  # stored: the others load it within the refresh period
            log.warning("could not announce a token revocation (%s)", type(error).__name__)

    async def aclose(self) -> None:
        await _stop(self._tasks)
        self._tasks = []

    async def _load(self) -> None:
        assert self._verifier is not None
        try:
            revoked = await self._users.revoked_tokens()
        except Exception as error:  # the database is down: keep what is known, try again later
            log.warning("could not load revoked tokens (%s)", type(error).__name__)
            return
        self._verifier.add_revoked({digest: expiry.timestamp() for digest, expiry in revoked.items()})

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh_seconds):
                    await self._reload.wait()
            self._reload.clear()
            await self._load()

    async def _listen(self, subscription: BusSubscription) -> None:
        assert self._verifier is not None
        async for event in subscription:
            if isinstance(event, EventsMissed):
                self._reload.set()  # a revocation may be among what was missed
            elif isinstance(event, BusMessage):
                try:
                    message = event.json()
                    self._verifier.revoke(str(message["digest"]), float(message["exp"]))
                except (KeyError, TypeError, ValueError):
                    log.warning("ignored a malformed token revocation on the bus")


async def _stop(tasks: Sequence[asyncio.Task[None] | None]) -> None:
    for task in tasks:
        if task is not None:
            task.cancel()
    for task in tasks:
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
