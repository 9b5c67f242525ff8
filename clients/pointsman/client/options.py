"""What both clients share: channel options, default deadlines, metadata."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

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
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
)


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
    serialize = method.input_type._concrete_class.SerializeToString
    deserialize = method.output_type._concrete_class.FromString
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
