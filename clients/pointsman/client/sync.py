"""Blocking client over the generated stubs; the same shape as AsyncClient."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
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


class Service:
    """One service's RPCs as methods named as in the protos, bound at run time
    from the service's descriptor."""

    def __init__(
        self,
        channel: grpc.Channel,
        service: ServiceDescriptor,
        defaults: CallDefaults,
        retry: RetryPolicy | None = DEFAULT_RETRY,
    ) -> None:
        for method in service.methods:
            setattr(self, method.name, _bind(channel, service, method, defaults, retry))

    if TYPE_CHECKING:  # the methods set above, for type checkers

        def __getattr__(self, name: str) -> Callable[..., Any]: ...


def _bind(
    channel: grpc.Channel,
    service: ServiceDescriptor,
    method: MethodDescriptor,
    defaults: CallDefaults,
    retry: RetryPolicy | None,
) -> Callable[..., Any]:
    rpc = multicallable(channel, service, method)
    # Requests sent as a stream cannot be sent again: such calls are tried once.
    policy = None if method.client_streaming else retry

    def wait_before_retry(attempt: int, error: PointsmanError) -> None:
        delay = policy.delay(attempt, error) if policy is not None else None
        if delay is None:
            raise error
        time.sleep(delay)

    if method.server_streaming:

        def stream(request: Any, *, timeout: float | None = None, request_id: str | None = None) -> Iterator[Any]:
            options = call_options(defaults, method, timeout, request_id)  # one request id for every try
            attempt = 0
            while True:
                attempt += 1
                call = rpc(request, **options)
                received = False
                try:
                    for response in call:
                        received = True
                        yield response
                    return
                except grpc.RpcError as rpc_error:
                    error = PointsmanError.from_rpc_error(rpc_error)
                finally:
                    call.cancel()  # a no-op when the call is done; stops it when the caller stops reading
                if received:  # part of the answer was seen: never start it over
                    raise error from None
                wait_before_retry(attempt, error)

        return stream

    def unary(request: Any, *, timeout: float | None = None, request_id: str | None = None) -> Any:
        options = call_options(defaults, method, timeout, request_id)
        attempt = 0
        while True:
            attempt += 1
            try:
                return rpc(request, **options)
            except grpc.RpcError as rpc_error:
                error = PointsmanError.from_rpc_error(rpc_error)
            wait_before_retry(attempt, error)

    return unary


class Client:
    """`with Client("host:port") as client: ...`

    Without arguments, the address, API key, bearer token and default model come
    from POINTSMAN_ADDRESS, POINTSMAN_API_KEY, POINTSMAN_TOKEN and POINTSMAN_MODEL;
    explicit arguments win. UNAVAILABLE and RESOURCE_EXHAUSTED are retried by
    `retry` (see RetryPolicy); `retry=None` turns that off."""

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
            self.channel = grpc.insecure_channel(connection.address, options=CHANNEL_OPTIONS)
        else:
            options = channel_options(tls_server_name)
            self.channel = grpc.secure_channel(connection.address, credentials, options=options)
        defaults = CallDefaults(timeout, stream_timeout, connection.api_key, connection.token)
        self.orchestrator = Service(self.channel, SERVICES["orchestrator"], defaults, retry)
        self.firewall = Service(self.channel, SERVICES["firewall"], defaults, retry)
        self.registry = Service(self.channel, SERVICES["registry"], defaults, retry)
        self.auth = Service(self.channel, SERVICES["auth"], defaults, retry)
        self._health = health_pb2_grpc.HealthStub(self.channel)
        self._timeout = timeout

    def stream_text(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
    ) -> Iterator[str]:
        """The answer's text as it arrives. `messages` is a prompt or a list of
        {"role", "content"} dicts; PointsmanError on failure, as everywhere."""
        request = chat_request(
            messages, model or self.model, system=system, max_tokens=max_tokens, temperature=temperature
        )
        for event in self.orchestrator.Chat(request, timeout=timeout):
            if event.HasField("text_delta"):
                yield event.text_delta.text

    def chat_text(
        self,
        messages: Messages,
        *,
        model: str | None = None,
        system: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        timeout: float | None = None,
    ) -> str:
        """The whole answer's text: `client.chat_text("hello")`."""
        return "".join(
            self.stream_text(
                messages, model=model, system=system, max_tokens=max_tokens, temperature=temperature, timeout=timeout
            )
        )

    def health(self, service: str = "") -> int:
        """The serving status (health_pb2.HealthCheckResponse.ServingStatus).
        A probe reports how things are now: never retried."""
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

    def health_services(self) -> list[str]:
        """The names `health` knows (grpc.health.v1.Health/List)."""
        try:
            response = self._health.List(health_pb2.HealthListRequest(), timeout=self._timeout)
        except grpc.RpcError as error:
            raise PointsmanError.from_rpc_error(error) from None
        return sorted(response.statuses)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
