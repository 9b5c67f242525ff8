"""API keys (`pm_{id}_{secret}`): minted and checked here, over a user store
that only keeps their rows (never a key), with a short in-process cache so
most calls do not reach the database."""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from ..domain.errors import Unauthenticated
from ..domain.ports.stores import ApiKey, UserStore, VerifiedKey, require_organisation
from .keys import api_key_digest, api_key_id, mint_api_key
from .principal import Principal

# How long a verified key is trusted without asking the database again. A
# revoked key stops at once on every replica that hears of it on the bus
# (`revocations.py`); one that does not keeps trusting it for at most this
# long. A changed role or deleted user likewise.
API_KEY_CACHE_SECONDS = 30.0
# last_used_time is a hint for people, not an audit trail: writing it on
# every call would turn each authenticated read into a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ApiKeys:
    """Mints keys (the plaintext is shown once; the store keeps its SHA-256
    digest) and verifies them: known, the right secret, unrevoked, unexpired."""

    def __init__(self, users: UserStore, clock: Callable[[], datetime] = _utc_now) -> None:
        self._users = users
        self._clock = clock

    async def create_api_key(
        self, organisation: str, user_id: str, display_name: str, expire_time: datetime | None = None
    ) -> tuple[ApiKey, str]:
        """The stored key and its plaintext; NotFound if the user is not there."""
        key_id, plaintext = mint_api_key()
        key = ApiKey(
            id=key_id,
            organisation=require_organisation(organisation),
            user_id=user_id,
            display_name=display_name,
            create_time=self._clock(),
            expire_time=expire_time,
        )
        return await self._users.add_api_key(key, api_key_digest(plaintext)), plaintext

    async def verify_api_key(self, plaintext: str) -> VerifiedKey | None:
        """The key's owner if the key is valid; else None, whatever the reason."""
        key_id = api_key_id(plaintext)
        if key_id is None:
            return None
        stored = await self._users.find_api_key(key_id)
        # Compared in constant time, so timing does not tell how much of a guess was right.
        if stored is None or not hmac.compare_digest(stored.key_sha256, api_key_digest(plaintext)):
            return None
        key = stored.key
        now = self._clock()
        if key.revoke_time is not None or (key.expire_time is not None and key.expire_time <= now):
            return None
        if key.last_used_time is None or now - key.last_used_time >= LAST_USED_RESOLUTION:
            await self._users.touch_api_key(key.id, now)
            key = replace(key, last_used_time=now)
        return VerifiedKey(key, stored.user)


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
        self._keys = ApiKeys(users)
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
        verified = await self._keys.verify_api_key(plaintext)
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
