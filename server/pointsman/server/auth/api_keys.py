"""API keys (`pm_{id}_{secret}`) verified through the user store, with a
short in-process cache so most calls do not reach the database."""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ..backends.stores.keys import api_key_digest, api_key_id
from ..domain.errors import Unauthenticated
from ..domain.ports.stores import UserStore
from .principal import Principal

# How long a verified key is trusted without asking the database again. A
# revoked key stops at once on every replica that hears of it on the bus
# (`revocations.py`); one that does not keeps trusting it for at most this
# long. A changed role or deleted user likewise.
API_KEY_CACHE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: str  # of the whole key, so a known id with a wrong secret never hits
    principal: Principal
    expires: float  # on the monotonic clock


class ApiKeyVerifier:
    def __init__(
        self,
        users: UserStore,
        *,
        ttl_seconds: float = API_KEY_CACHE_SECONDS,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = users
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        # Bumped by `forget`: a lookup that started before a revocation must
        # not cache what it read.
        self._generation = 0

    async def verify(self, plaintext: str) -> Principal:
        key_id = api_key_id(plaintext)
        if key_id is None:
            raise Unauthenticated("the API key is not valid")
        digest = api_key_digest(plaintext)
        now = self._clock()
        entry = self._cache.get(key_id)
        if entry is not None and now < entry.expires and hmac.compare_digest(entry.digest, digest):
            self._cache.move_to_end(key_id)
            return entry.principal
        generation = self._generation
        verified = await self._users.verify_api_key(plaintext)
        if verified is None:
            raise Unauthenticated("the API key is not valid (unknown, revoked or expired)")
        user = verified.user
        principal = Principal(user.id, user.organisation, user.role, user.email, via="api_key")
        expires = now + self._ttl
        if verified.key.expire_time is not None:  # never trust a key past its own expiry
            expires = min(expires, now + (verified.key.expire_time - datetime.now(UTC)).total_seconds())
        if generation != self._generation:
            return principal
        self._cache[key_id] = _Entry(digest, principal, expires)
        self._cache.move_to_end(key_id)
        if len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
        return principal

    def forget(self, key_id: str) -> None:
        """Drops a key at once, e.g. after it was revoked here."""
        self._generation += 1
        self._cache.pop(key_id, None)

    def forget_all(self) -> None:
        """Drops every cached key: the next call of each asks the database."""
        self._generation += 1
        self._cache.clear()
