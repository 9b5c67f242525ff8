"""Async client over the generated stubs. Each service's RPCs are methods of
`client.orchestrator`, `client.firewall`, `client.registry` and `client.auth`,
named as in the protos; they raise PointsmanError instead of grpc errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pointsman.orchestrator.v1 import orchestrator_pb2

from .errors import PointsmanError
from .messages import Messages, chat_request
from .options import (
    CHANNEL_OPTIONS,
    SERVICES,
    CallDefaults,
    Connection,
    call_options,
    channel_credentials,
    channel_options,
    multicallable,
)
from .retry import DEFAULT_RETRY, RetryPolicy


class AsyncService:
    """One service's RPCs as coroutine (or async iterator) methods, bound at
    run time from the service's descriptor."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
        service: ServiceDescriptor,
        defaults: CallDefaults,
        retry: RetryPolicy | None = DEFAULT_RETRY,
    ) -> None:
        for method in service.methods:
            setattr(self, method.name, _bind(channel, service, method, defaults, retry))

    if TYPE_CHECKING:  # the methods set above, for type checkers

        def __getattr__(self, name: str) -> Callable[..., Any]: ...


def _bind(
    channel: grpc.aio.Channel,
    service: ServiceDescriptor,
    method: MethodDescriptor,
    defaults: CallDefaults,
    retry: RetryPolicy | None,
) -> Callable[..., Any]:
    rpc = multicallable(channel, service, method)
    # Requests sent as a stream cannot be sent again: such calls are tried once.
    policy = None if method.client_streaming else retry

    async def wait_before_retry(attempt: int, error: PointsmanError) -> None:
        delay = policy.delay(attempt, error) if policy is not None else None
        if delay is None:
            raise error
        await asyncio.sleep(delay)

    if method.server_streaming:

        async def stream(
            request: Any, *, timeout: float | None = None, request_id: str | None = None
        ) -> AsyncIterator[Any]:
            options = call_options(defaults, method, timeout, request_id)  # one request id for every try
            attempt = 0
            while True:
                attempt += 1
                call = rpc(request, **options)
                received = False
                try:
                    async for response in call:
                        received = True
                        yield response
                    return
                except grpc.RpcError as rpc_error:
                    error = PointsmanError.from_rpc_error(rpc_error)
                finally:
                    call.cancel()  # a no-op when the call is done; stops it when the caller stops reading
                if received:  # part of the answer was seen: never start it over
                    raise error from None
                await wait_before_retry(attempt, error)

        return stream

    async def unary(request: Any, *, timeout: float | None = None, request_id: str | None = None) -> Any:
        options = call_options(defaults, method, timeout, request_id)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await rpc(request, **options)
            except grpc.RpcError as rpc_error:
                error = PointsmanError.from_rpc_error(rpc_error)
            await wait_before_retry(attempt, error)

    return unary


class AsyncClient:
    """`async with AsyncClient("host:port") as client: ...`

    Configured like Client: arguments win over POINTSMAN_ADDRESS,
    POINTSMAN_API_KEY, POINTSMAN_TOKEN and POINTSMAN_MODEL; `retry=None`
    turns retries of UNAVAILABLE and RESOURCE_EXHAUSTED off."""

    def __init__(
        self,
        address: str | None = None,
        *,
        api_key: str | None = None,
        token: str | None = None,
        model: str | None = None,
        timeout: float = 30.0,
        stream_timeout: float = 300.0,
        tls: bool | grpc.ChannelCredentials = False,
        tls_server_name: str | None = None,
        retry: RetryPolicy | None = DEFAULT_RETRY,
    ) -> None:
        connection = Connection.resolve(address, api_key, token, model)
        self.address, self.model = connection.address, connection.model
        credentials = channel_credentials(tls)
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(connection.address, options=CHANNEL_OPTIONS)
        else:
            options = channel_options(tls_server_name)
            self.channel = grpc.aio.secure_channel(connection.address, credentials, options=options)
        defaults = CallDefaults(timeout, stream_timeout, connection.api_key, connection.token)
        self.orchestrator = AsyncService(self.channel, SERVICES["orchestrator"], defaults, retry)
        self.firewall = AsyncService(self.channel, SERVICES["firewall"], defaults, retry)
        self.registry = AsyncService(self.channel, SERVICES["registry"], defaults, retry)
        self.auth = AsyncService(self.channel, SERVICES["auth"], defaults, retry)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._timeout = timeout

    async def stream_text(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[str]:
        """The answer's text as it arrives: `async for text in client.stream_text("hi")`."""
        request = chat_request(
            messages, model or self.model, system=system, max_tokens=max_tokens, temperature=temperature
        )
        async for event in self.orchestrator.Chat(request, timeout=timeout):
            if event.HasField("text_delta"):
                yield event.text_delta.text

    async def chat_text(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
    ) -> str:
        """The whole answer's text: `await client.chat_text("hello")`."""
        parts = self.stream_text(
            messages, model=model, system=system, max_tokens=max_tokens, temperature=temperature, timeout=timeout
        )
        return "".join([text async for text in parts])

    async def health(self, service: str = "") -> int:
        """The serving status (health_pb2.HealthCheckResponse.ServingStatus).
        A probe reports how things are now: never retried."""
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
