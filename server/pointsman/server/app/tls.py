"""TLS for the server's port and for its calls to a registry: credentials
from PEM files, with errors that name the setting. The server's files are
read at start and again whenever they change on disk, so a renewed
certificate is served to new connections without a restart."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..settings import Settings

log = logging.getLogger(__name__)


class TlsConfigError(ValueError):
    """A TLS file that cannot be used; the message names the setting, never the contents."""


def _read_pem(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise TlsConfigError(f"{setting}: cannot read {path}: {error.strerror}") from None
    if b"-----BEGIN " not in data:
        raise TlsConfigError(f"{setting}: {path} is not a PEM file")
    return data


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """None for plain gRPC. With a client CA, clients must present a
    certificate that CA signed. Raises TlsConfigError for unusable files."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    files = ServerCertificateFiles(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
    return grpc.dynamic_ssl_server_credentials(
        files.load(), files.changed, require_client_authentication=settings.tls_client_ca_file is not None
    )


class ServerCertificateFiles:
    """The server's certificate, key and client CA files. gRPC asks `changed`
    before every new connection's handshake: reading three small files costs
    about 10 µs here, against about a millisecond for the handshake, and
    unlike file times it cannot miss a rewrite. A change that does not load
    (say, a key written before its certificate) keeps the current files in
    use, with a warning, until a later change loads."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None) -> None:
        self._files = {"POINTSMAN_TLS_CERT_FILE": cert, "POINTSMAN_TLS_KEY_FILE": key}
        if client_ca is not None:
            self._files["POINTSMAN_TLS_CLIENT_CA_FILE"] = client_ca
        self._lock = threading.Lock()  # gRPC calls `changed` from its own threads
        self._served: dict[str, bytes] = {}
        self._refused: dict[str, bytes] = {}

    def load(self) -> Any:
        """The files as a gRPC certificate configuration; TlsConfigError if unusable."""
        return self._configuration({setting: _read_pem(path, setting) for setting, path in self._files.items()})

    def changed(self) -> Any:
        """A new configuration when the files changed and load, else None."""
        with self._lock:
            try:
                pems = {setting: path.read_bytes() for setting, path in self._files.items()}
            except OSError:
                return None  # mid-replacement: keep serving what was loaded
            if pems in (self._served, self._refused):
                return None
            try:
                configuration = self._configuration(pems)
            except TlsConfigError as error:
                self._refused = pems
                log.warning("TLS files changed but cannot be used (%s); still serving the previous ones", error)
                return None
            log.info("TLS files changed: serving the new certificate to new connections")
            return configuration

    def _configuration(self, pems: dict[str, bytes]) -> Any:
        for setting, data in pems.items():
            if b"-----BEGIN " not in data:  # `changed` reads the files without `_read_pem`
                raise TlsConfigError(f"{setting}: {self._files[setting]} is not a PEM file")
        chain, key = pems["POINTSMAN_TLS_CERT_FILE"], pems["POINTSMAN_TLS_KEY_FILE"]
        _check_pair(chain, key, self._files["POINTSMAN_TLS_CERT_FILE"], self._files["POINTSMAN_TLS_KEY_FILE"])
        self._served = pems
        return grpc.ssl_server_certificate_configuration(
            [(key, chain)], root_certificates=pems.get("POINTSMAN_TLS_CLIENT_CA_FILE")
        )


def _check_pair(chain: bytes, key: bytes, cert_path: Path, key_path: Path) -> None:
    """gRPC only says it "failed to bind" when the key is not the
    certificate's: say which file is wrong instead."""
    try:
        leaf = x509.load_pem_x509_certificate(chain)  # the first certificate: the server's own
    except ValueError:
        raise TlsConfigError(f"POINTSMAN_TLS_CERT_FILE: {cert_path} holds no certificate") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise TlsConfigError(
            f"POINTSMAN_TLS_KEY_FILE: {key_path} holds no private key, or one protected by a passphrase"
        ) from None
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(der, spki) != private.public_key().public_bytes(der, spki):
        raise TlsConfigError(
            f"POINTSMAN_TLS_KEY_FILE: {key_path} is not the key of the certificate in POINTSMAN_TLS_CERT_FILE"
        )
    now = datetime.now(UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        log.warning(
            "the TLS certificate in %s is valid from %s to %s only: clients will refuse it",
            cert_path,
            leaf.not_valid_before_utc.isoformat(),
            leaf.not_valid_after_utc.isoformat(),
        )


def registry_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """None for plain gRPC to the registry."""
    if settings.registry_tls_ca_file is not None:
        return grpc.ssl_channel_credentials(_read_pem(settings.registry_tls_ca_file, "REGISTRY_TLS_CA_FILE"))
    if settings.registry_tls:
        return grpc.ssl_channel_credentials()
    return None
