"""JWTs signed with JWT_SECRET (HS256): issued by Login and `pointsman token
create`, verified on every call, so verified tokens are cached. A revoked
token (by its SHA-256 digest) is refused until it would have expired."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

import jwt

from ..domain.errors import Unauthenticated
from ..domain.ports.stores import UserRole
from .principal import Principal

ALGORITHM = "HS256"
# RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
# Clock skew tolerated between the issuer and the replicas.
LEEWAY_SECONDS = 5
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
# Far above any token this server issues; a limit on what a caller makes it parse.
MAX_TOKEN_CHARS = 8192


class WeakSecret(ValueError):
    """JWT_SECRET is too short to sign with; the server refuses to start."""


def check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise WeakSecret(f"JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")


def issue_token(
    secret: str,
    *,
    subject: str,
    organisation: str,
    role: UserRole,
    email: str,
    issuer: str,
    audience: str,
    ttl_seconds: int,
    now: float | None = None,
) -> tuple[str, datetime]:
    """A signed token and when it expires. Whoever holds the secret can mint
    any principal: the claims are trusted as they are."""
    check_secret(secret)
    issued = int(time.time() if now is None else now)
    expires = issued + ttl_seconds
    claims = {
        "sub": subject,
        "org": organisation,
        "role": role.value,
        "email": email,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": expires,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), datetime.fromtimestamp(expires, UTC)


def token_digest(token: str) -> str:
    """How a revoked token is known: it is never stored itself."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenVerifier:
    """Checks signature, expiry, issuer and audience, and that the token was
    not revoked. A verified token is remembered until it expires (bounded
    LRU) with its digest: HS256 verification costs tens of microseconds, a
    dictionary hit well under one."""

    def __init__(
        self,
        secret: str,
        *,
        issuer: str,
        audience: str,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_secret(secret)
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Principal, float, str]] = OrderedDict()
        # Digest -> expiry (epoch seconds) of revoked tokens not yet expired.
        self._revoked: dict[str, float] = {}

    def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires, digest = cached
            if self._clock() < expires:
                if digest in self._revoked:
                    raise _revoked()
                self._cache.move_to_end(token)
                return principal
            del self._cache[token]
        principal, expires = self._decode(token)
        digest = token_digest(token)
        if digest in self._revoked:
            raise _revoked()
        self._cache[token] = (principal, expires, digest)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    def inspect(self, token: str) -> tuple[Principal, float]:
        """Whom a token speaks for and when it expires, checked as `verify`
        checks it but revocation aside: what revoking it needs to know."""
        return self._decode(token)

    def revoke(self, digest: str, expires: float) -> None:
        self._revoked[digest] = expires

    def add_revoked(self, revoked: dict[str, float]) -> None:
        """Revocations as stored (a revocation is never undone, so this adds);
        entries past their expiry are dropped."""
        now = self._clock()
        merged = {**self._revoked, **revoked}
        self._revoked = {digest: expires for digest, expires in merged.items() if expires > now}

    def _decode(self, token: str) -> tuple[Principal, float]:
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("the token is not valid")
        # Messages name what failed, never the token.
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired", reason="CREDENTIAL_EXPIRED") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("the token is not valid") from None
        subject, organisation, role = claims.get("sub"), claims.get("org"), claims.get("role")
        email = claims.get("email") or ""
        if not (subject and isinstance(organisation, str) and organisation and isinstance(email, str)):
            raise Unauthenticated("the token does not name a user and an organisation")
        try:
            user_role = UserRole(role)
        except ValueError:
            raise Unauthenticated("the token does not name a known role") from None
        return Principal(subject, organisation, user_role, email, via="jwt"), float(claims["exp"])


def _revoked() -> Unauthenticated:
    return Unauthenticated("the token has been revoked", reason="CREDENTIAL_REVOKED")
