"""TLS on the server's port: clients that trust its CA get through, others do
not; with a client CA only clients holding a certificate it signed get in;
self-registration reaches a TLS registry; unusable TLS settings stop start-up
with the setting's name. Certificates are made fresh for each test."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pointsman.client import AsyncClient, PointsmanError, tls_credentials
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.registry.v1 import registry_pb2 as reg
from pointsman.server.app.tls import TlsConfigError

from helpers_pb import user
from server_fixtures import eventually, settings
from tls_certs import Authority, Issued

POINTSMAN = str(Path(sys.executable).with_name("pointsman"))


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path, "test-ca")


@pytest.fixture
def server_cert(ca: Authority) -> Issued:
    return ca.issue("server", server=True)


def tls_env(cert: Issued, **more: Any) -> dict[str, Any]:
    return {"POINTSMAN_TLS_CERT_FILE": str(cert.cert), "POINTSMAN_TLS_KEY_FILE": str(cert.key), **more}


async def answer(client: AsyncClient) -> str:
    response = await client.orchestrator.Complete(orch.CompleteRequest(model="builtin", messages=[user("hi")]))
    return str(response.message.content)


async def refused(client: AsyncClient) -> PointsmanError:
    with pytest.raises(PointsmanError) as caught:
        await client.health()
    return caught.value


async def test_clients_that_trust_the_servers_ca_get_through_and_others_do_not(
    start_server: Any, ca: Authority, server_cert: Issued, tmp_path: Path
) -> None:
    server = await start_server(**tls_env(server_cert))
    async with AsyncClient(server.address, timeout=5, tls=tls_credentials(str(ca.cert))) as client:
        assert (await answer(client)).endswith("hi")
    async with AsyncClient(server.address, timeout=2) as plain:
        assert (await refused(plain)).code.name == "UNAVAILABLE"
    stranger = Authority.create(tmp_path, "another-ca")
    async with AsyncClient(server.address, timeout=2, tls=tls_credentials(str(stranger.cert))) as wrong_ca:
        assert (await refused(wrong_ca)).code.name == "UNAVAILABLE"


async def test_with_a_client_ca_only_clients_with_a_certificate_it_signed_get_in(
    start_server: Any, ca: Authority, server_cert: Issued, tmp_path: Path
) -> None:
    clients_ca = Authority.create(tmp_path, "clients-ca")
    server = await start_server(**tls_env(server_cert, POINTSMAN_TLS_CLIENT_CA_FILE=str(clients_ca.cert)))
    member = clients_ca.issue("member", server=False)
    outsider = Authority.create(tmp_path, "outsiders-ca").issue("outsider", server=False)
    trusted = tls_credentials(str(ca.cert), str(member.cert), str(member.key))
    async with AsyncClient(server.address, timeout=5, tls=trusted) as client:
        assert (await answer(client)).endswith("hi")
    for credentials in (
        tls_credentials(str(ca.cert)),  # no client certificate
        tls_credentials(str(ca.cert), str(outsider.cert), str(outsider.key)),
    ):
        async with AsyncClient(server.address, timeout=2, tls=credentials) as client:
            assert (await refused(client)).code.name == "UNAVAILABLE"


async def test_a_server_registers_itself_with_a_registry_over_tls(
    start_server: Any, ca: Authority, server_cert: Issued
) -> None:
    registry = await start_server(**tls_env(server_cert))
    await start_server(REGISTRY_ADDR=registry.address, REGISTRY_TLS_CA_FILE=str(ca.cert), ORCHESTRATOR_ID="orch-tls")
    async with AsyncClient(registry.address, timeout=5, tls=tls_credentials(str(ca.cert))) as client:

        async def registered() -> bool:
            instances = (await client.registry.ListInstances(reg.ListInstancesRequest())).instances
            return "instances/orch-tls" in [i.name for i in instances]

        await eventually(registered, timeout=10)


async def test_the_cli_connects_over_tls(start_server: Any, ca: Authority, server_cert: Issued) -> None:
    server = await start_server(**tls_env(server_cert))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [POINTSMAN, *args, "--address", server.address]
        return subprocess.run(command, capture_output=True, text=True, timeout=30)

    trusted = await asyncio.to_thread(cli, "health", "--ca-file", str(ca.cert))
    assert trusted.returncode == 0 and trusted.stdout.strip() == "SERVING", trusted.stderr
    plain = await asyncio.to_thread(cli, "health", "--timeout", "2")
    assert plain.returncode == 14  # UNAVAILABLE
    missing = await asyncio.to_thread(cli, "health", "--ca-file", str(ca.directory / "nope.pem"))
    assert missing.returncode == 2 and "TLS" in missing.stderr and "Traceback" not in missing.stderr


async def test_a_certificate_for_another_host_name_is_accepted_only_when_that_name_is_given(
    start_server: Any, ca: Authority
) -> None:
    # A container's health check reaches the gateway at 127.0.0.1; its certificate names the public host.
    server = await start_server(**tls_env(ca.issue("public", server=True, hosts=("gateway.example.test",))))
    trusted = tls_credentials(str(ca.cert))
    async with AsyncClient(server.address, timeout=2, tls=trusted) as by_address:
        assert (await refused(by_address)).code.name == "UNAVAILABLE"
    async with AsyncClient(server.address, timeout=5, tls=trusted, tls_server_name="gateway.example.test") as named:
        assert (await answer(named)).endswith("hi")


def test_a_certificate_without_its_key_is_a_settings_error(server_cert: Issued) -> None:
    with pytest.raises(ValidationError, match="POINTSMAN_TLS_KEY_FILE"):
        settings(POINTSMAN_TLS_CERT_FILE=str(server_cert.cert))
    with pytest.raises(ValidationError, match="needs TLS"):
        settings(POINTSMAN_TLS_CLIENT_CA_FILE=str(server_cert.cert))


async def test_unusable_tls_files_stop_start_up_naming_the_setting(
    start_server: Any, server_cert: Issued, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsConfigError, match=r"POINTSMAN_TLS_CERT_FILE: cannot read .*missing\.pem"):
        await start_server(POINTSMAN_TLS_CERT_FILE=str(missing), POINTSMAN_TLS_KEY_FILE=str(server_cert.key))
    with pytest.raises(TlsConfigError, match=r"POINTSMAN_TLS_KEY_FILE: .* holds no private key"):
        await start_server(**tls_env(Issued(server_cert.cert, server_cert.cert)))
    someone_elses = Authority.create(tmp_path, "other-ca").issue("other", server=True)
    with pytest.raises(TlsConfigError, match=r"POINTSMAN_TLS_KEY_FILE: .* is not the key of the certificate"):
        await start_server(**tls_env(Issued(server_cert.cert, someone_elses.key)))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(TlsConfigError, match=r"POINTSMAN_TLS_CLIENT_CA_FILE: .* is not a PEM file"):
        await start_server(**tls_env(server_cert, POINTSMAN_TLS_CLIENT_CA_FILE=str(not_pem)))


def test_pointsman_serve_reports_an_unreadable_certificate_and_exits_2(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "POINTSMAN_ADDRESS": "127.0.0.1:0",
        "POINTSMAN_DATA_DIR": str(tmp_path),
        "POINTSMAN_TLS_CERT_FILE": str(tmp_path / "absent.pem"),
        "POINTSMAN_TLS_KEY_FILE": str(tmp_path / "absent-key.pem"),
    }
    done = subprocess.run([POINTSMAN, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "POINTSMAN_TLS_CERT_FILE: cannot read" in done.stderr and "Traceback" not in done.stderr


async def test_plain_grpc_on_a_public_address_is_logged_outside_development_mode(
    start_server: Any, server_cert: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    secured = {"POINTSMAN_DEV_MODE": False, "JWT_SECRET": "s" * 32}
    await start_server(POINTSMAN_ADDRESS="0.0.0.0:0", **secured)
    assert "serving plain gRPC on 0.0.0.0:0" in caplog.text
    caplog.clear()
    await start_server(POINTSMAN_ADDRESS="127.0.0.1:0", **secured)
    await start_server(POINTSMAN_ADDRESS="0.0.0.0:0", **secured, **tls_env(server_cert))
    assert "plain gRPC" not in caplog.text


async def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(
    start_server: Any, ca: Authority, server_cert: Issued, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The files the server was started with, replaced in place as a renewal would.
    live = Issued(tmp_path / "live.pem", tmp_path / "live-key.pem")
    live.cert.write_bytes(server_cert.cert.read_bytes())
    live.key.write_bytes(server_cert.key.read_bytes())
    server = await start_server(**tls_env(live))
    old_trust = tls_credentials(str(ca.cert))
    async with AsyncClient(server.address, timeout=5, tls=old_trust) as before:
        assert (await answer(before)).endswith("hi")
        renewed_ca = Authority.create(tmp_path, "renewed-ca")
        renewed = renewed_ca.issue("renewed", server=True)
        # Half-way through the replacement the key no longer fits: the old pair stays in use.
        live.key.write_bytes(renewed.key.read_bytes())
        async with AsyncClient(server.address, timeout=5, tls=old_trust) as midway:
            assert (await answer(midway)).endswith("hi")
        assert "cannot be used" in caplog.text
        live.cert.write_bytes(renewed.cert.read_bytes())
        async with AsyncClient(server.address, timeout=5, tls=tls_credentials(str(renewed_ca.cert))) as after:
            assert (await answer(after)).endswith("hi")
        async with AsyncClient(server.address, timeout=2, tls=old_trust) as stale:
            assert (await refused(stale)).code.name == "UNAVAILABLE"
        # A connection made before the renewal keeps working.
        assert (await answer(before)).endswith("hi")
