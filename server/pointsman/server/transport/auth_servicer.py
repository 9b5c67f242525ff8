"""AuthService: Login (development mode), WhoAmI, API keys and token revocation. The
organisation is always the caller's credential's, never the request's."""

from __future__ import annotations

import grpc

from pointsman.auth.v1 import auth_pb2 as pb
from pointsman.auth.v1 import auth_pb2_grpc

from ..auth import Accounts, Principal
from ..domain.errors import ViolationCollector
from ..domain.ports.stores import ApiKey, User, UserRole
from . import convert
from .calls import CallContext
from .resources import resource_id

_ROLES = {UserRole.VIEWER: pb.ROLE_VIEWER, UserRole.DEVELOPER: pb.ROLE_DEVELOPER, UserRole.ADMIN: pb.ROLE_ADMIN}


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, accounts: Accounts, calls: CallContext) -> None:
        self._accounts = accounts
        self._calls = calls

    async def Login(self, request: pb.LoginRequest, context: grpc.aio.ServicerContext) -> pb.LoginResponse:
        token, expires, user = await self._accounts.login(request.email)
        return pb.LoginResponse(
            access_token=token, expire_time=convert.timestamp(expires), principal=_user_principal(user)
        )

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.aio.ServicerContext) -> pb.WhoAmIResponse:
        return pb.WhoAmIResponse(principal=_principal(self._calls.principal()))

    async def CreateApiKey(
        self, request: pb.CreateApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateApiKeyResponse:
        user_id = resource_id(request.user, "users", "user") if request.user else ""
        errors = ViolationCollector()
        expire_time = convert.time_field(request, "expire_time", errors)
        errors.raise_if_any()
        key, plaintext = await self._accounts.create_api_key(
            self._calls.principal(), user_id, request.display_name, expire_time
        )
        return pb.CreateApiKeyResponse(api_key=_api_key(key), key=plaintext)

    async def ListApiKeys(
        self, request: pb.ListApiKeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListApiKeysResponse:
        user_id = resource_id(request.user, "users", "user") if request.user else None
        keys = await self._accounts.list_api_keys(self._calls.principal(), user_id)
        return pb.ListApiKeysResponse(api_keys=[_api_key(k) for k in keys])

    async def RevokeApiKey(
        self, request: pb.RevokeApiKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeApiKeyResponse:
        key = await self._accounts.revoke_api_key(self._calls.principal(), resource_id(request.name, "apiKeys"))
        return pb.RevokeApiKeyResponse(api_key=_api_key(key))

    async def RevokeToken(
        self, request: pb.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.RevokeTokenResponse:
        owner, expire_time = await self._accounts.revoke_token(self._calls.principal(), request.token)
        return pb.RevokeTokenResponse(expire_time=convert.timestamp(expire_time), principal=_principal(owner))


def _principal(principal: Principal) -> pb.Principal:
    return pb.Principal(
        name=principal.name, organisation=principal.organisation, role=_ROLES[principal.role], email=principal.email
    )


def _user_principal(user: User) -> pb.Principal:
    return pb.Principal(name=user.name, organisation=user.organisation, role=_ROLES[user.role], email=user.email)


def _api_key(key: ApiKey) -> pb.ApiKey:
    return pb.ApiKey(
        name=key.name,
        user=f"users/{key.user_id}",
        display_name=key.display_name,
        prefix=key.prefix,
        create_time=convert.timestamp(key.create_time),
        expire_time=convert.timestamp(key.expire_time),
        revoke_time=convert.timestamp(key.revoke_time),
        last_used_time=convert.timestamp(key.last_used_time),
    )
