"""What both clients share: channel options, default deadlines, metadata."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from pointsman.auth.v1 import auth_pb2
from pointsman.firewall.v1 import firewall_pb2
from pointsman.orchestrator.v1 import orchestrator_pb2
from pointsman.registry.v1 import registry_pb2

SERVICES: dict[str, ServiceDescriptor] = {
    "orchestrator": orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"],
    "firewall": firewall_pb2.DESCRIPTOR.services_by_name["FirewallService"],
    "registry": registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    "auth": auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
}

# Calls that are meant to stay open: no deadline unless the caller sets one.
LONG_LIVED = {"Converse", "WatchRules", "WatchInstances", "WatchBatch", "Heartbeat"}

DEFAULT_ADDRESS = "127.0.0.1:50051"
DEFAULT_MODEL = "builtin"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


def tls_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """TLS for a client's channel: trust `ca_file` (PEM) or, without it, the
    system's roots; with `cert_file` and `key_file`, present that client
    certificate (for a server that requires mutual TLS)."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs both cert_file and key_file")

    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        with open(path, "rb") as pem:
            return pem.read()

    return grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))


def channel_credentials(tls: bool | grpc.ChannelCredentials) -> grpc.ChannelCredentials | None:
    """What a client's `tls=` argument means: False for plain gRPC, True for
    TLS with the system's roots, or credentials (see `tls_credentials`)."""
    if tls is True:
        return grpc.ssl_channel_credentials()
    return tls or None


def channel_options(tls_server_name: str | None) -> Sequence[tuple[str, int | str]]:
    """With `tls_server_name`, the server's certificate is checked against
    that name instead of the address's host (a certificate for
    gateway.example.com reached at 127.0.0.1, as a container's health check does)."""
    if tls_server_name is None:
        return CHANNEL_OPTIONS
    return (*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", tls_server_name))


@dataclass(frozen=True)
class CallDefaults:
    """Deadline and credentials applied to every call unless overridden."""

    unary_timeout: float = 30.0
    stream_timeout: float = 300.0
    api_key: str | None = None
    token: str | None = None

    def timeout_for(self, method: str, streaming: bool, given: float | None) -> float | None:
        if given is not None:
            return given
        if method in LONG_LIVED:
            return None
        return self.stream_timeout if streaming else self.unary_timeout

    def metadata(self, request_id: str | None) -> tuple[tuple[str, str], ...]:
        pairs = [("x-request-id", request_id or uuid.uuid4().hex[:16])]
        if self.api_key:
            pairs.append(("x-api-key", self.api_key))
        if self.token:
            pairs.append(("authorization", f"Bearer {self.token}"))
        return tuple(pairs)


def multicallable(channel: Any, service: ServiceDescriptor, method: MethodDescriptor) -> Any:
    """The channel's callable for one RPC; sync and asyncio channels share this API."""
    path = f"/{service.full_name}/{method.name}"
    serialize = GetMessageClass(method.input_type).SerializeToString
    deserialize = GetMessageClass(method.output_type).FromString
    if method.client_streaming:
        factory = channel.stream_stream if method.server_streaming else channel.stream_unary
    else:
        factory = channel.unary_stream if method.server_streaming else channel.unary_unary
    return factory(path, serialize, deserialize)


def call_options(
    defaults: CallDefaults, method: MethodDescriptor, timeout: float | None, request_id: str | None
) -> dict[str, Any]:
    streaming = method.client_streaming or method.server_streaming
    return {
        "timeout": defaults.timeout_for(method.name, streaming, timeout),
        "metadata": defaults.metadata(request_id),
    }


@dataclass(frozen=True)
class Connection:
    """Where and as whom a client connects: each explicit argument wins over
    its environment variable, as in the CLI (POINTSMAN_ADDRESS,
    POINTSMAN_API_KEY, POINTSMAN_TOKEN, POINTSMAN_MODEL). Pass "" to send no
    credential even when the variable is set."""

    address: str
    api_key: str | None
    token: str | None
    model: str

    @classmethod
    def resolve(cls, address: str | None, api_key: str | None, token: str | None, model: str | None) -> Connection:
        def pick(given: str | None, variable: str) -> str | None:
            return given if given is not None else (os.environ.get(variable) or None)

        return cls(
            address=pick(address, "POINTSMAN_ADDRESS") or DEFAULT_ADDRESS,
            api_key=pick(api_key, "POINTSMAN_API_KEY") or None,
            token=pick(token, "POINTSMAN_TOKEN") or None,
            model=pick(model, "POINTSMAN_MODEL") or DEFAULT_MODEL,
        )
