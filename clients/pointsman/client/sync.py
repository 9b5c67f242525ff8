"""Blocking client over the generated stubs; the same shape as AsyncClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointsman.orchestrator.v1 import orchestrator_pb2

from .errors import PointsmanError
from .options import (
    CHANNEL_OPTIONS,
    DEFAULT_ADDRESS,
    SERVICES,
    CallDefaults,
    call_options,
    channel_credentials,
    channel_options,
    multicallable,
)


class Service:
    def __init__(self, channel: grpc.Channel, service: ServiceDescriptor, defaults: CallDefaults) -> None:
        for method in service.methods:
            setattr(self, method.name, _bind(channel, service, method, defaults))


def _bind(
    channel: grpc.Channel, service: ServiceDescriptor, method: MethodDescriptor, defaults: CallDefaults
) -> Callable[..., Any]:
    rpc = multicallable(channel, service, method)

    if method.server_streaming:

        def stream(request: Any, *, timeout: float | None = None, request_id: str | None = None) -> Iterator[Any]:
            call = rpc(request, **call_options(defaults, method, timeout, request_id))
            try:
                yield from call
            except grpc.RpcError as error:
                raise PointsmanError.from_rpc_error(error) from None
            finally:
                call.cancel()

        return stream

    def unary(request: Any, *, timeout: float | None = None, request_id: str | None = None) -> Any:
        try:
            return rpc(request, **call_options(defaults, method, timeout, request_id))
        except grpc.RpcError as error:
            raise PointsmanError.from_rpc_error(error) from None

    return unary


class Client:
    """`with Client("host:port") as client: ...`"""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        stream_timeout: float = 300.0,
        tls: bool | grpc.ChannelCredentials = False,
        tls_server_name: str | None = None,
    ) -> None:
        credentials = channel_credentials(tls)
        if credentials is None:
            self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        else:
            options = channel_options(tls_server_name)
            self.channel = grpc.secure_channel(address, credentials, options=options)
        defaults = CallDefaults(timeout, stream_timeout, api_key, token)
        self.orchestrator = Service(self.channel, SERVICES["orchestrator"], defaults)
        self.firewall = Service(self.channel, SERVICES["firewall"], defaults)
        self.registry = Service(self.channel, SERVICES["registry"], defaults)
        self.auth = Service(self.channel, SERVICES["auth"], defaults)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._timeout = timeout

    def health(self, service: str = "") -> int:
        try:
            response = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self._timeout)
        except grpc.RpcError as error:
            raise PointsmanError.from_rpc_error(error) from None
        return int(response.status)

    def embed(
        self, inputs: Sequence[str], *, model: str = "builtin-embedding", dimensions: int = 0, **call: Any
    ) -> orchestrator_pb2.EmbedResponse:
        """One vector per input (`response.embeddings[i].values`), from an embedding model alias."""
        request = orchestrator_pb2.EmbedRequest(model=model, inputs=list(inputs), dimensions=dimensions)
        response: orchestrator_pb2.EmbedResponse = self.orchestrator.Embed(request, **call)
        return response

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
