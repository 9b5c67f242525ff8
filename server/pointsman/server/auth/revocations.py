"""API key revocations announced to every replica on the bus, so a key
revoked on one replica stops working on all of them at once instead of after
their cache lifetime. Without a bus that reaches other replicas (no Redis),
or while it is down, the cache lifetime still bounds how long a revoked key
works elsewhere; a gap in what the bus delivered empties the cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..backends.shared.bus import Bus, BusMessage, BusSubscription, EventsMissed
from .api_keys import ApiKeyVerifier

log = logging.getLogger(__name__)

REVOCATIONS_TOPIC = "api-key-revocations"


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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
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
