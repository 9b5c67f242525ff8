"""Turns a call's credential into a principal and checks its role against the
method's: the once-per-call gate the interceptor runs."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime

from ..backends.shared.bus import InProcessBus
from ..domain.errors import PermissionDenied, Unauthenticated
from ..domain.ports.bus import Bus
from ..domain.ports.stores import User, UserRole, UserStore
from ..settings import Settings
from .access import CLOSED, OPEN, Access
from .api_keys import ApiKeyVerifier
from .principal import Principal
from .revocations import KeyRevocations, TokenRevocations
from .tokens import TokenVerifier, check_secret, issue_token

log = logging.getLogger(__name__)

API_KEY_PREFIX = "pm_"
DEV_ADMIN_EMAIL = "admin@pointsman.dev"


class Authenticator:
    def __init__(self, settings: Settings, users: UserStore, bus: Bus | None = None) -> None:
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else None
        if secret is not None:
            check_secret(secret)
        elif settings.dev_mode:
            # Tokens then die with the process, and replicas do not accept each other's.
            secret = secrets.token_urlsafe(32)
            log.warning("JWT_SECRET is not set: development mode signs tokens with a random per-process secret")
        else:
            log.warning("JWT_SECRET is not set: JWTs are refused; only API keys are accepted")
        self._secret = secret
        self._settings = settings
        self.tokens = (
            TokenVerifier(secret, issuer=settings.jwt_issuer, audience=settings.jwt_audience) if secret else None
        )
        self.api_keys = ApiKeyVerifier(users)
        # Revocations reach every replica on the bus; a process alone needs none.
        bus = bus if bus is not None else InProcessBus()
        self.revocations = KeyRevocations(bus, self.api_keys)
        self.token_revocations = TokenRevocations(bus, users, self.tokens)
        self.dev_mode = settings.dev_mode
        # Who a call without a credential is in development mode; the seeded
        # admin's stored id replaces this once the users are seeded.
        self.dev_principal = Principal("dev-admin", settings.org_id, UserRole.ADMIN, DEV_ADMIN_EMAIL, via="dev")

    async def admit(self, access: Access, authorization: str | None, api_key: str | None) -> Principal | None:
        """The caller, if `access` lets it in; None for open methods."""
        if access == OPEN:
            return None
        principal = await self.authenticate(authorization, api_key)
        if access == CLOSED:
            raise PermissionDenied("this method is not open to any role")
        if not principal.has_role(access):
            raise PermissionDenied(
                f"this method needs the role {access.value}; the caller is {principal.role.value}",
                metadata={"required_role": access.value, "role": principal.role.value},
            )
        return principal

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        if authorization is not None:
            scheme, _, credential = authorization.partition(" ")
            credential = credential.strip()
            if scheme.lower() != "bearer" or not credential:
                raise Unauthenticated("the authorization metadata must be 'Bearer <token or API key>'")
        elif api_key is not None:
            return await self.api_keys.verify(api_key)
        elif self.dev_mode:
            return self.dev_principal
        else:
            raise Unauthenticated(
                "this call needs a credential: 'authorization: Bearer <token or API key>' or 'x-api-key'",
                reason="CREDENTIAL_MISSING",
            )
        if credential.startswith(API_KEY_PREFIX):
            return await self.api_keys.verify(credential)
        if self.tokens is None:
            raise Unauthenticated("this server does not accept tokens (JWT_SECRET is not set); use an API key")
        return self.tokens.verify(credential)

    def issue(self, user: User) -> tuple[str, datetime]:
        """A token for `user`; needs a secret (always there in development mode)."""
        if self._secret is None:
            raise RuntimeError("no JWT_SECRET to sign with")
        return issue_token(
            self._secret,
            subject=user.id,
            organisation=user.organisation,
            role=user.role,
            email=user.email,
            issuer=self._settings.jwt_issuer,
            audience=self._settings.jwt_audience,
            ttl_seconds=self._settings.jwt_ttl_seconds,
        )
