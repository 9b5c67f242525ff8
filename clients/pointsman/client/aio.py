"""Async client over the generated stubs. Each service's RPCs are methods of
`client.orchestrator`, `client.firewall` and `client.registry`, named as in
the protos; they raise PointsmanError instead of grpc errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
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


class AsyncService:
    def __init__(self, channel: grpc.aio.Channel, service: ServiceDescriptor, defaults: CallDefaults) -> None:
        for method in service.methods:
            setattr(self, method.name, _bind(channel, service, method, defaults))


def _bind(
    channel: grpc.aio.Channel, service: ServiceDescriptor, method: MethodDescriptor, defaults: CallDefaults
) -> Callable[..., Any]:
    rpc = multicallable(channel, service, method)

    if method.server_streaming:

        async def stream(
            request: Any, *, timeout: float | None = None, request_id: str | None = None
        ) -> AsyncIterator[Any]:
            call = rpc(request, **call_options(defaults, method, timeout, request_id))
            try:
                async for response in call:
                    yield response
            except grpc.RpcError as error:
                raise PointsmanError.from_rpc_error(error) from None
            finally:
                call.cancel()  # a no-op when the call is done; stops it when the caller stops reading

        return stream

    async def unary(request: Any, *, timeout: float | None = None, request_id: str | None = None) -> Any:
        try:
            return await rpc(request, **call_options(defaults, method, timeout, request_id))
        except grpc.RpcError as error:
            raise PointsmanError.from_rpc_error(error) from None

    return unary


class AsyncClient:
    """`async with AsyncClient("host:port") as client: ...`"""

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
            self.channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        else:
            options = channel_options(tls_server_name)
            self.channel = grpc.aio.secure_channel(address, credentials, options=options)
        defaults = CallDefaults(timeout, stream_timeout, api_key, token)
        self.orchestrator = AsyncService(self.channel, SERVICES["orchestrator"], defaults)
        self.firewall = AsyncService(self.channel, SERVICES["firewall"], defaults)
        self.registry = AsyncService(self.channel, SERVICES["registry"], defaults)
        self.auth = AsyncService(self.channel, SERVICES["auth"], defaults)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._timeout = timeout

    async def health(self, service: str = "") -> int:
        """The serving status (health_pb2.HealthCheckResponse.ServingStatus)."""
        try:
            response = await self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=self._timeout)
        except grpc.RpcError as error:
            raise PointsmanError.from_rpc_error(error) from None
        return int(response.status)

    async def embed(
        self, inputs: Sequence[str], *, model: str = "builtin-embedding", dimensions: int = 0, **call: Any
    ) -> orchestrator_pb2.EmbedResponse:
        """One vector per input (`response.embeddings[i].values`), from an embedding model alias."""
        request = orchestrator_pb2.EmbedRequest(model=model, inputs=list(inputs), dimensions=dimensions)
        response: orchestrator_pb2.EmbedResponse = await self.orchestrator.Embed(request, **call)
        return response

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
