"""TLS for the server's port and for its calls to a registry: credentials
from PEM files, read once at start, with errors that name the setting."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .settings import Settings

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
    certificate that CA signed."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    chain = _read_pem(settings.tls_cert_file, "POINTSMAN_TLS_CERT_FILE")
    key = _read_pem(settings.tls_key_file, "POINTSMAN_TLS_KEY_FILE")
    _check_pair(chain, key, settings.tls_cert_file, settings.tls_key_file)
    client_ca = None
    if settings.tls_client_ca_file is not None:
        client_ca = _read_pem(settings.tls_client_ca_file, "POINTSMAN_TLS_CLIENT_CA_FILE")
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
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
