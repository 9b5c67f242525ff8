"""What AuthService does with users and credentials: development users and
Login, API keys, token revocation, always inside the caller's organisation."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from ..domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ViolationCollector,
)
from ..domain.ports.stores import ApiKey, User, UserRole, UserStore
from ..domain.validation import check_text
from .api_keys import ApiKeys
from .authenticator import DEV_ADMIN_EMAIL, Authenticator
from .principal import Principal
from .tokens import token_digest

log = logging.getLogger(__name__)

# Seeded in ORG_ID in development mode; their ids are fixed so every replica
# and restart agrees on them.
DEV_USERS = (
    (DEV_ADMIN_EMAIL, UserRole.ADMIN, "dev-admin"),
    ("developer@pointsman.dev", UserRole.DEVELOPER, "dev-developer"),
    ("viewer@pointsman.dev", UserRole.VIEWER, "dev-viewer"),
)
MAX_DISPLAY_NAME = 200
MAX_EMAIL = 320


class Accounts:
    def __init__(self, users: UserStore, authenticator: Authenticator, organisation: str) -> None:
        self._users = users
        self._keys = ApiKeys(users)
        self._auth = authenticator
        self._organisation = organisation  # ORG_ID: where development users live

    async def seed_dev_users(self) -> None:
        """Idempotent: replicas and restarts keep the users already there."""
        if not self._auth.dev_mode:
            return
        for email, role, user_id in DEV_USERS:
            user = await self._find_or_create(User(user_id, self._organisation, email, role, display_name=role.value))
            if role is UserRole.ADMIN:
                self._auth.dev_principal = Principal(user.id, user.organisation, user.role, user.email, via="dev")
        log.warning("development mode: calls without a credential act as %s", DEV_ADMIN_EMAIL)

    async def login(self, email: str) -> tuple[str, datetime, User]:
        if not self._auth.dev_mode:
            raise FailedPrecondition(
                "Login works only in development mode (POINTSMAN_DEV_MODE=true)", reason="LOGIN_DISABLED"
            )
        if not email.strip():
            raise InvalidArgument.one("email", "is required")
        errors = ViolationCollector()
        check_text(email, errors, "email", max_chars=MAX_EMAIL)
        errors.raise_if_any()
        user = await self._users.find_user_by_email(self._organisation, email)
        token, expires = self._auth.issue(user)
        return token, expires, user

    async def create_api_key(
        self, caller: Principal, user_id: str, display_name: str, expire_time: datetime | None
    ) -> tuple[ApiKey, str]:
        errors = ViolationCollector()
        check_text(display_name, errors, "display_name", max_chars=MAX_DISPLAY_NAME)
        errors.raise_if_any()
        if expire_time is not None and expire_time <= datetime.now(UTC):
            raise InvalidArgument.one("expire_time", "must be in the future")
        user_id = user_id or caller.user_id
        try:
            user = await self._users.get_user(caller.organisation, user_id)
        except NotFound:
            if user_id != caller.user_id or not caller.email:
                raise
            # A token minted with the secret (`pointsman token create`) may name a
            # user the database does not know yet; the signed token vouches for it.
            user = await self._find_or_create(
                User(caller.user_id, caller.organisation, caller.email, caller.role, display_name=caller.email)
            )
        return await self._keys.create_api_key(user.organisation, user.id, display_name, expire_time)

    async def list_api_keys(self, caller: Principal, user_id: str | None) -> list[ApiKey]:
        keys = await self._users.list_api_keys(caller.organisation, user_id)
        return sorted(keys, key=lambda k: (k.create_time, k.id), reverse=True)

    async def revoke_api_key(self, caller: Principal, key_id: str) -> ApiKey:
        key = await self._users.revoke_api_key(caller.organisation, key_id)
        await self._auth.revocations.announce(key_id)  # here and on every replica
        return key

    async def revoke_token(self, caller: Principal, token: str) -> tuple[Principal, datetime]:
        """Refuses `token` everywhere until it expires. A caller may revoke its
        own tokens; an admin any token of its organisation."""
        if self._auth.tokens is None:
            raise FailedPrecondition("this server accepts no tokens (JWT_SECRET is not set)", reason="TOKENS_DISABLED")
        if not token:
            raise InvalidArgument.one("token", "is required")
        try:
            owner, expires = self._auth.tokens.inspect(token)
        except Unauthenticated as error:
            # Not the caller's credential that failed: the argument is wrong.
            raise InvalidArgument.one("token", error.message) from None
        if owner.organisation != caller.organisation:
            raise PermissionDenied("the token belongs to another organisation", reason="TOKEN_NOT_YOURS")
        if owner.user_id != caller.user_id and not caller.has_role(UserRole.ADMIN):
            raise PermissionDenied("only an admin may revoke another user's token", reason="TOKEN_NOT_YOURS")
        expire_time = datetime.fromtimestamp(expires, UTC)
        await self._auth.token_revocations.revoke(owner.organisation, token_digest(token), expire_time)
        return owner, expire_time

    async def _find_or_create(self, wanted: User) -> User:
        try:
            return await self._users.get_user(wanted.organisation, wanted.id)
        except NotFound:
            pass
        try:
            return await self._users.find_user_by_email(wanted.organisation, wanted.email)
        except NotFound:
            pass
        try:
            return await self._users.create_user(wanted)
        except AlreadyExists:  # another replica created it just now
            return await self._users.find_user_by_email(wanted.organisation, wanted.email)
