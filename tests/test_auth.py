"""Authentication and roles through a real server: JWTs and API keys, what
fails UNAUTHENTICATED (without echoing the credential) and PERMISSION_DENIED,
what stays open, development mode and Login, and `pointsman token create`."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from pydantic import ValidationError

from pointsman.auth.v1 import auth_pb2 as pb
from pointsman.client import AsyncClient, PointsmanError
from pointsman.client.aio import AsyncService
from pointsman.client.options import CallDefaults
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.registry.v1 import registry_pb2 as reg
from pointsman.server.app.server import PointsmanServer
from pointsman.server.auth import API_KEY_CACHE_SECONDS, OPEN, ApiKeys, ApiKeyVerifier, access_for, issue_token
from pointsman.server.backends.stores import User, UserRole, open_stores
from pointsman.server.domain.errors import Unauthenticated

from helpers_pb import chat_request, text_of
from server_fixtures import collect, eventually, raises, settings

SECRET = "test-secret-that-is-long-enough-for-hs256"
POINTSMAN = str(Path(sys.executable).with_name("pointsman"))


def token(
    role: str = "admin",
    *,
    org: str = "acme",
    user: str = "u-alice",
    email: str = "alice@acme.test",
    secret: str = SECRET,
    ttl: int = 600,
    now: float | None = None,
) -> str:
    signed, _ = issue_token(
        secret,
        subject=user,
        organisation=org,
        role=UserRole(role),
        email=email,
        issuer="pointsman",
        audience="pointsman",
        ttl_seconds=ttl,
        now=now,
    )
    return signed


def auth_service(client: AsyncClient, *, token: str | None = None, api_key: str | None = None) -> AsyncService:
    # The Python client has no `auth` attribute yet; bind the service the same way it does.
    return AsyncService(
        client.channel, pb.DESCRIPTOR.services_by_name["AuthService"], CallDefaults(10, 10, api_key, token)
    )


@pytest_asyncio.fixture
async def secured(start_server: Any) -> PointsmanServer:
    """Auth on: no development mode, JWTs signed with SECRET."""
    server: PointsmanServer = await start_server(POINTSMAN_DEV_MODE=False, JWT_SECRET=SECRET, USE_MOCK=True)
    return server


@pytest_asyncio.fixture
async def anonymous(secured: PointsmanServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(secured.address, timeout=10) as client:
        yield client


def client_for(server: PointsmanServer, **credential: str) -> AsyncClient:
    return AsyncClient(server.address, timeout=10, **credential)


def assert_unauthenticated(error: PointsmanError, secret_text: str) -> None:
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    assert error.reason in {"CREDENTIAL_INVALID", "CREDENTIAL_EXPIRED", "CREDENTIAL_MISSING"}
    assert secret_text not in str(error) and secret_text not in repr(error.metadata)


# -- JWTs ---------------------------------------------------------------------


async def test_a_valid_token_names_the_caller_and_can_chat(secured: PointsmanServer) -> None:
    async with client_for(secured, token=token("developer")) as client:
        me = (await auth_service(client, token=token("developer")).WhoAmI(pb.WhoAmIRequest())).principal
        assert (me.name, me.organisation, me.role, me.email) == (
            "users/u-alice",
            "acme",
            pb.ROLE_DEVELOPER,
            "alice@acme.test",
        )
        events = await collect(client.orchestrator.Chat(chat_request("hello")))
        assert text_of(events).endswith("hello")


def _encode(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    now = int(time.time())
    base = {"sub": "u1", "org": "acme", "role": "admin", "iss": "pointsman", "aud": "pointsman", "iat": now}
    base["exp"] = now + 600
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, secret, algorithm=algorithm)


BAD_TOKENS = {
    "expired": lambda: token(now=time.time() - 3600, ttl=60),
    "wrong issuer": lambda: _encode({"iss": "someone-else"}),
    "wrong audience": lambda: _encode({"aud": "another-service"}),
    "wrong signature": lambda: token(secret="another-secret-that-is-also-long-enough"),
    "garbage": lambda: "not-a-jwt-at-all-0123456789",
    "no expiry": lambda: _encode({"exp": None}),
    "no organisation": lambda: _encode({"org": None}),
    "unknown role": lambda: _encode({"role": "superuser"}),
    "unsigned (alg none)": lambda: jwt.encode({"sub": "u1", "org": "acme", "role": "admin"}, None, algorithm="none"),
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_tokens_are_unauthenticated_without_echoing_them(
    secured: PointsmanServer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = BAD_TOKENS[kind]()
    caplog.set_level(logging.INFO)
    async with client_for(secured, token=bad) as client:
        error = await raises(client.orchestrator.ListModels(orch.ListModelsRequest()))
    assert_unauthenticated(error, bad)
    assert error.reason == ("CREDENTIAL_EXPIRED" if kind == "expired" else "CREDENTIAL_INVALID")
    assert bad not in caplog.text
    assert "UNAUTHENTICATED" in caplog.text  # the access log records the refusal


async def test_no_credential_or_a_malformed_header_is_unauthenticated(
    secured: PointsmanServer, anonymous: AsyncClient
) -> None:
    error = await raises(anonymous.orchestrator.ListModels(orch.ListModelsRequest()))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "CREDENTIAL_MISSING"
    metadata = (("authorization", "Basic dXNlcjpwYXNz"),)
    with pytest.raises(grpc.RpcError) as caught:
        await anonymous.channel.unary_unary(
            "/pointsman.orchestrator.v1.OrchestratorService/ListModels",
            orch.ListModelsRequest.SerializeToString,
            orch.ListModelsResponse.FromString,
        )(orch.ListModelsRequest(), metadata=metadata, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "dXNlcjpwYXNz" not in (caught.value.details() or "")


def test_a_short_secret_stops_the_server_without_showing_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pointsman.cli.main", "serve", "--address", "127.0.0.1:0"],
        env={"JWT_SECRET": "too-short-a-secret", "POINTSMAN_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "JWT_SECRET" in result.stderr and "at least 32 bytes" in result.stderr
    assert "too-short-a-secret" not in result.stderr
    with pytest.raises(ValidationError):
        settings(JWT_SECRET="too-short-a-secret")


# -- API keys -----------------------------------------------------------------


async def test_api_keys_work_in_both_headers_and_stop_at_once_when_revoked(secured: PointsmanServer) -> None:
    admin = token("admin")
    async with client_for(secured, token=admin) as client:
        keys = auth_service(client, token=admin)
        # The token's user is not stored yet: creating its own key records it.
        created = await keys.CreateApiKey(pb.CreateApiKeyRequest(display_name="ci"))
        key = created.key
        assert key.startswith(created.api_key.prefix + "_") and created.api_key.user == "users/u-alice"
        listed = await keys.ListApiKeys(pb.ListApiKeysRequest())
        assert [k.name for k in listed.api_keys] == [created.api_key.name]
        assert key not in str(listed)  # never the key itself

    for credential in ({"api_key": key}, {"token": key}):  # x-api-key, then Bearer pm_...
        async with client_for(secured, **credential) as client:
            me = (await auth_service(client, **credential).WhoAmI(pb.WhoAmIRequest())).principal
            assert (me.name, me.organisation, me.role) == ("users/u-alice", "acme", pb.ROLE_ADMIN)

    # A known key id with the wrong secret is refused, even while the real key is cached.
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    async with client_for(secured, api_key=forged) as client:
        assert_unauthenticated(await raises(client.orchestrator.ListModels(orch.ListModelsRequest())), forged)

    async with client_for(secured, token=admin) as client:
        revoked = await auth_service(client, token=admin).RevokeApiKey(
            pb.RevokeApiKeyRequest(name=created.api_key.name)
        )
        assert revoked.api_key.HasField("revoke_time")
    async with client_for(secured, api_key=key) as client:
        error = await raises(client.orchestrator.ListModels(orch.ListModelsRequest()))
    assert_unauthenticated(error, key)


async def test_api_keys_are_scoped_to_the_organisation(secured: PointsmanServer) -> None:
    ours, theirs = token("admin", org="acme"), token("admin", org="globex", user="u-bob", email="bob@globex.test")
    async with client_for(secured, token=ours) as client:
        created = await auth_service(client, token=ours).CreateApiKey(pb.CreateApiKeyRequest())
    async with client_for(secured, token=theirs) as client:
        service = auth_service(client, token=theirs)
        await service.CreateApiKey(pb.CreateApiKeyRequest())  # records bob in globex
        names = [k.name for k in (await service.ListApiKeys(pb.ListApiKeysRequest())).api_keys]
        assert created.api_key.name not in names
        error = await raises(service.RevokeApiKey(pb.RevokeApiKeyRequest(name=created.api_key.name)))
        assert error.code == grpc.StatusCode.NOT_FOUND
        error = await raises(service.CreateApiKey(pb.CreateApiKeyRequest(user="users/u-alice")))
        assert error.code == grpc.StatusCode.NOT_FOUND


async def test_another_replica_trusts_a_revoked_key_only_until_its_cache_expires() -> None:
    """The documented bound: a replica that did not revoke the key keeps its
    cached copy for at most API_KEY_CACHE_SECONDS (a controlled clock here)."""
    stores = await open_stores("sqlite://:memory:", ".")
    try:
        user = await stores.users.create_user(User("", "acme", "carol@acme.test", UserRole.DEVELOPER))
        stored, key = await ApiKeys(stores.users).create_api_key("acme", user.id, "k")
        now = [1000.0]
        other_replica = ApiKeyVerifier(stores.users, clock=lambda: now[0])
        assert (await other_replica.verify(key)).user_id == user.id
        await stores.users.revoke_api_key("acme", stored.id)  # revoked elsewhere
        now[0] += API_KEY_CACHE_SECONDS - 1
        assert (await other_replica.verify(key)).user_id == user.id
        now[0] += 2
        with pytest.raises(Unauthenticated):
            await other_replica.verify(key)
    finally:
        await stores.aclose()


async def whoami(server: PointsmanServer, credential: str) -> pb.Principal:
    async with client_for(server, token=credential) as client:
        return (await auth_service(client, token=credential).WhoAmI(pb.WhoAmIRequest())).principal


async def revoke(server: PointsmanServer, caller: str, victim: str) -> pb.RevokeTokenResponse:
    async with client_for(server, token=caller) as client:
        response: pb.RevokeTokenResponse = await auth_service(client, token=caller).RevokeToken(
            pb.RevokeTokenRequest(token=victim)
        )
        return response


async def test_a_revoked_token_is_refused_at_once_and_after_a_restart(start_server: Any, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'auth.db'}"
    server = await start_server(POINTSMAN_DEV_MODE=False, JWT_SECRET=SECRET, DATABASE_URL=database)
    mine, other = token("viewer", ttl=600), token("viewer", ttl=900)
    assert (await whoami(server, mine)).name == "users/u-alice"
    # Logging out: any caller may revoke a token of its own, the one it calls with included.
    revoked = await revoke(server, mine, mine)
    assert revoked.principal.name == "users/u-alice"
    assert abs(revoked.expire_time.ToSeconds() - (time.time() + 600)) < 10
    error = await raises(whoami(server, mine))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.reason == "CREDENTIAL_REVOKED"
    assert mine not in str(error)
    assert (await whoami(server, other)).name == "users/u-alice"  # only that token
    await server.stop(grace=0)
    restarted = await start_server(POINTSMAN_DEV_MODE=False, JWT_SECRET=SECRET, DATABASE_URL=database)
    assert (await raises(whoami(restarted, mine))).reason == "CREDENTIAL_REVOKED"
    assert (await whoami(restarted, other)).name == "users/u-alice"


async def test_only_admins_revoke_other_users_tokens_and_only_in_their_organisation(
    secured: PointsmanServer,
) -> None:
    bob = token("developer", user="u-bob", email="bob@acme.test")
    carol = token("developer", user="u-carol", email="carol@acme.test")
    outsider = token("admin", org="elsewhere", user="u-eve", email="eve@elsewhere.test")
    denied = await raises(revoke(secured, bob, carol))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED and denied.reason == "TOKEN_NOT_YOURS"
    denied = await raises(revoke(secured, outsider, carol))
    assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    assert (await whoami(secured, carol)).name == "users/u-carol"
    await revoke(secured, token("admin"), carol)
    assert (await raises(whoami(secured, carol))).reason == "CREDENTIAL_REVOKED"
    for bad in ("", "not-a-jwt", token("viewer", secret="another-secret-that-is-long-enough!!"), "x" * 10_000):
        error = await raises(revoke(secured, bob, bad))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.field_violations] == ["token"]
    expired = token("viewer", user="u-bob", ttl=60, now=time.time() - 3600)
    error = await raises(revoke(secured, bob, expired))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "expired" in error.message


async def test_without_a_secret_tokens_are_refused_but_api_keys_work(start_server: Any) -> None:
    server: PointsmanServer = await start_server(POINTSMAN_DEV_MODE=False, USE_MOCK=True)
    user = await server.stores.users.create_user(User("", "acme", "dan@acme.test", UserRole.VIEWER))
    _, key = await ApiKeys(server.stores.users).create_api_key("acme", user.id, "k")
    async with client_for(server, token=token("admin")) as client:
        error = await raises(client.orchestrator.ListModels(orch.ListModelsRequest()))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED
    async with client_for(server, api_key=key) as client:
        await client.orchestrator.ListModels(orch.ListModelsRequest())


# -- roles --------------------------------------------------------------------


def block_rule() -> fw.CreateRuleRequest:
    return fw.CreateRuleRequest(
        rule=fw.Rule(kind=fw.RULE_KIND_BLOCK, match_type=fw.MATCH_TYPE_SUBSTRING, pattern="falcon", enabled=True)
    )


async def test_each_role_gets_what_its_table_row_allows(secured: PointsmanServer) -> None:
    async with client_for(secured, token=token("viewer")) as viewer:
        await viewer.orchestrator.ListModels(orch.ListModelsRequest())
        await viewer.firewall.ListRules(fw.ListRulesRequest())
        for denied in (collect(viewer.orchestrator.Chat(chat_request("hi"))), viewer.firewall.CreateRule(block_rule())):
            error = await raises(denied)
            assert error.code == grpc.StatusCode.PERMISSION_DENIED and error.reason == "ROLE_INSUFFICIENT"

    async with client_for(secured, token=token("developer")) as developer:
        await collect(developer.orchestrator.Chat(chat_request("hi")))
        await developer.firewall.Scan(fw.ScanRequest(text="hello"))
        for denied in (
            developer.firewall.CreateRule(block_rule()),
            developer.registry.RegisterInstance(
                reg.RegisterInstanceRequest(instance=reg.Instance(instance_id="i1", address="127.0.0.1:1"))
            ),
            auth_service(developer, token=token("developer")).ListApiKeys(pb.ListApiKeysRequest()),
        ):
            error = await raises(denied)
            assert error.code == grpc.StatusCode.PERMISSION_DENIED and error.reason == "ROLE_INSUFFICIENT"

    async with client_for(secured, token=token("admin")) as admin:
        created = await admin.firewall.CreateRule(block_rule())
        await admin.firewall.DeleteRule(fw.DeleteRuleRequest(name=created.rule.name))


def test_every_rpc_in_the_contract_has_a_role_or_is_open() -> None:
    """A new RPC fails closed until someone gives it a row in the table; this
    test says which one is missing."""
    from pointsman.firewall.v1 import firewall_pb2
    from pointsman.registry.v1 import registry_pb2

    missing = []
    for module in (orch, firewall_pb2, registry_pb2, pb):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                path = f"/{service.full_name}/{method.name}"
                if access_for(path) not in (OPEN, *UserRole):
                    missing.append(path)
    assert missing == []
    assert access_for("/pointsman.auth.v1.AuthService/Login") == OPEN
    assert access_for("/pointsman.orchestrator.v1.OrchestratorService/NotYetInTheTable") == "closed"


async def test_health_and_reflection_need_no_credential(secured: PointsmanServer, anonymous: AsyncClient) -> None:
    assert await anonymous.health() == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(anonymous.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    services = [s.name async for r in responses for s in r.list_services_response.service]
    assert "pointsman.auth.v1.AuthService" in services


# -- development mode and Login ---------------------------------------------


async def test_dev_mode_login_and_calls_without_a_credential(start_server: Any) -> None:
    server: PointsmanServer = await start_server(POINTSMAN_DEV_MODE=True, JWT_SECRET=None)
    async with AsyncClient(server.address, timeout=10) as client:
        service = auth_service(client)
        me = (await service.WhoAmI(pb.WhoAmIRequest())).principal
        assert (me.name, me.organisation, me.role) == ("users/dev-admin", "default", pb.ROLE_ADMIN)
        login = await service.Login(pb.LoginRequest(email="viewer@pointsman.dev"))
        assert login.principal.role == pb.ROLE_VIEWER and login.expire_time.ToDatetime(UTC) > datetime.now(UTC)
        error = await raises(service.Login(pb.LoginRequest(email="nobody@pointsman.dev")))
        assert error.code == grpc.StatusCode.NOT_FOUND

    # A credential is verified even in development mode: the viewer stays a viewer.
    async with client_for(server, token=login.access_token) as viewer:
        me = (await auth_service(viewer, token=login.access_token).WhoAmI(pb.WhoAmIRequest())).principal
        assert me.name == "users/dev-viewer"
        error = await raises(viewer.firewall.CreateRule(block_rule()))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
    async with client_for(server, token="garbage-token") as bad:
        error = await raises(bad.orchestrator.ListModels(orch.ListModelsRequest()))
        assert error.code == grpc.StatusCode.UNAUTHENTICATED


async def test_seeding_is_idempotent(start_server: Any, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    first: PointsmanServer = await start_server(DATABASE_URL=database)
    second: PointsmanServer = await start_server(DATABASE_URL=database)
    users = await second.stores.users.list_users("default")
    assert sorted(u.email for u in users) == [
        "admin@pointsman.dev",
        "developer@pointsman.dev",
        "viewer@pointsman.dev",
    ]
    assert first.authenticator.dev_principal == second.authenticator.dev_principal


async def test_login_is_refused_outside_dev_mode(anonymous: AsyncClient) -> None:
    error = await raises(auth_service(anonymous).Login(pb.LoginRequest(email="admin@pointsman.dev")))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "LOGIN_DISABLED"


# -- the CLI and self-registration -------------------------------------------


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        POINTSMAN, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_token_create_makes_a_token_the_server_accepts(secured: PointsmanServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "ORG_ID", "POINTSMAN_"))}
    code, out, err = await run_cli(
        "token", "create", "--email", "Ops@Acme.test", "--org", "acme", "--role", "viewer", "--ttl", "300",
        env={**env, "JWT_SECRET": SECRET},
    )  # fmt: skip
    assert code == 0, err
    issued = out.strip()
    async with client_for(secured, token=issued) as client:
        me = (await auth_service(client, token=issued).WhoAmI(pb.WhoAmIRequest())).principal
    assert (me.organisation, me.role, me.email) == ("acme", pb.ROLE_VIEWER, "ops@acme.test")

    # The CLI sends it as a bearer token with --token (or POINTSMAN_TOKEN).
    code, out, err = await run_cli("whoami", "--address", secured.address, "--token", issued, env=env)
    assert code == 0, err
    assert out.split("\t")[1:3] == ["acme", "viewer"]
    code, _, err = await run_cli("whoami", "--address", secured.address, env=env)
    assert code == grpc.StatusCode.UNAUTHENTICATED.value[0]

    code, _, err = await run_cli("token", "create", "--email", "a@b.c", env={**env, "JWT_SECRET": "short"})
    assert code == 2 and "32 bytes" in err

    # Logging out from the shell: the token revokes itself, read from stdin.
    process = await asyncio.create_subprocess_exec(
        POINTSMAN, "token", "revoke", "-", "--address", secured.address, "--token", issued,
        env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out_bytes, err_bytes = await asyncio.wait_for(process.communicate(issued.encode()), timeout=60)
    assert process.returncode == 0, err_bytes.decode()
    assert out_bytes.decode().startswith("revoked a token of users/")
    code, _, err = await run_cli("whoami", "--address", secured.address, "--token", issued, env=env)
    assert code == grpc.StatusCode.UNAUTHENTICATED.value[0] and "revoked" in err


async def test_self_registration_sends_the_registry_token(start_server: Any, secured: PointsmanServer) -> None:
    registry_token = token("admin", org="fleet", user="u-orchestrator", email="")
    await start_server(
        REGISTRY_ADDR=secured.address,
        REGISTRY_TOKEN=registry_token,
        ORCHESTRATOR_ID="worker-1",
        POINTSMAN_DEV_MODE=False,
        JWT_SECRET=SECRET,
    )
    async with client_for(secured, token=token("viewer", org="fleet")) as fleet:

        async def listed() -> bool:
            instances = (await fleet.registry.ListInstances(reg.ListInstancesRequest())).instances
            return [i.name for i in instances] == ["instances/worker-1"]

        await eventually(listed)
    async with client_for(secured, token=token("viewer", org="acme")) as other:
        assert not (await other.registry.ListInstances(reg.ListInstancesRequest())).instances


def test_expired_token_fixture_really_is_expired() -> None:
    # Guards the "expired" case above against the leeway.
    claims = jwt.decode(BAD_TOKENS["expired"](), options={"verify_signature": False})
    assert datetime.fromtimestamp(claims["exp"], UTC) < datetime.now(UTC) - timedelta(seconds=60)
