"""Per-call plumbing for every RPC, in one server interceptor: request id
(accepted from and echoed in `x-request-id`), authentication and the role
check, access log, and the mapping of errors to status codes and details. It
wraps all four call kinds.

The request id is echoed in the response headers of calls that stream
responses, before the first message, and in the trailers of calls with one
response: grpc.aio sends a unary call's headers in the same batch as its
answer and status but offers no way to add to them, so a header of ours
would cost a batch of its own (about a tenth of the server's CPU on a cache
hit), while trailers travel with the status for free."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError
from grpc.aio import AbortError
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from ..auth import Access, Authenticator, Principal, access_for
from ..backends.stores.outages import is_database_outage, is_refused_value
from ..domain.caller import Caller, current_request_id
from ..domain.errors import DomainError, InvalidArgument
from ..metrics import Metrics
from ..tracing import TRACE_HEADERS, caller_context, current_span
from .drain import Drain
from .errors import database_unavailable, internal_status, status_code_for, to_status

REQUEST_ID_HEADER = "x-request-id"
AUTHORIZATION_HEADER = "authorization"
API_KEY_HEADER = "x-api-key"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")

access_log = logging.getLogger("pointsman.access")
log = logging.getLogger(__name__)

current_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)
# Set by the interceptor for every call; None only for open methods (health,
# reflection, Login).
current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("principal", default=None)


def _read_metadata(
    context: grpc.aio.ServicerContext,
) -> tuple[str, str | None, str | None, dict[str, str]]:
    """Request id, `authorization`, `x-api-key` and the caller's trace
    headers, in one pass over the metadata."""
    request_id = authorization = api_key = None
    trace_headers: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER:
            if request_id is None and isinstance(value, str) and _VALID_REQUEST_ID.match(value):
                request_id = value
        elif key == AUTHORIZATION_HEADER:
            authorization = value
        elif key == API_KEY_HEADER:
            api_key = value
        elif key in TRACE_HEADERS and isinstance(value, str):
            trace_headers[key] = value
    return request_id or os.urandom(8).hex(), authorization, api_key, trace_headers


class CallContext:
    """Who is calling; the servicers read it through `caller()`. The
    organisation always comes from the call's credential, never the request."""

    def principal(self) -> Principal:
        principal = current_principal.get()
        if principal is None:
            # Only open methods run without one, and none of them acts for a caller.
            raise RuntimeError("no authenticated principal in this call")
        return principal

    def caller(self) -> Caller:
        principal = self.principal()
        return Caller(current_request_id.get(), principal.organisation, principal.name, deadline=current_deadline.get())


class CallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpcio ships no types: the base is Any
    def __init__(
        self,
        authenticator: Authenticator,
        metrics: Metrics | None = None,
        tracer: Tracer | None = None,
        drain: Drain | None = None,
    ) -> None:
        self._auth = authenticator
        self._drain = drain
        self._metrics = metrics
        self._tracer = tracer
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None:
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            # The role a method needs is looked up once, when it is first wrapped.
            gate = _Gate(method, access_for(method), self._auth, self._metrics, self._tracer)
            # Health and reflection go on answering while the server drains.
            gate.drain = None if method.startswith(_UNDRAINED_PREFIXES) else self._drain
            wrapped = self._wrapped[method] = _wrap(handler, gate)
        return wrapped


_UNDRAINED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class _Gate:
    """One method: its name for the log and metrics, and who may call it."""

    __slots__ = ("access", "auth", "drain", "method", "metrics", "tracer")

    def __init__(
        self, method: str, access: Access, auth: Authenticator, metrics: Metrics | None, tracer: Tracer | None
    ) -> None:
        self.method = method
        self.access = access
        self.auth = auth
        self.metrics = metrics
        self.tracer = tracer
        self.drain: Drain | None = None


async def _begin(context: grpc.aio.ServicerContext, gate: _Gate, *, streams: bool) -> tuple[str, float]:
    """Sets the call's request id, deadline and principal and echoes the id
    (in the headers when the call `streams` responses, else in the trailers);
    a call that fails authentication or the role check ends here, logged."""
    request_id, authorization, api_key, trace_headers = _read_metadata(context)
    current_request_id.set(request_id)
    if gate.tracer is not None:
        span = gate.tracer.start_span(
            gate.method,
            context=caller_context(trace_headers),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.method": gate.method, "pointsman.request_id": request_id},
        )
        current_span.set((gate.tracer, span))
    remaining = context.time_remaining()
    current_deadline.set(None if remaining is None else time.monotonic() + remaining)
    echo = ((REQUEST_ID_HEADER, request_id),)
    if streams:
        await context.send_initial_metadata(echo)
    else:
        context.set_trailing_metadata(echo)
    started = time.perf_counter()
    try:
        principal = await gate.auth.admit(gate.access, authorization, api_key)
    except Exception as error:
        _end(gate, _code_of(error), started, request_id)
        await _fail(context, error, request_id, streams=streams)
    current_principal.set(principal)
    return request_id, started


async def _fail(context: grpc.aio.ServicerContext, error: BaseException, request_id: str, *, streams: bool) -> NoReturn:
    """Aborts the call with the right status (and, when the call has one
    response, the request id in the trailers beside the status details)."""
    if isinstance(error, DomainError):
        status = to_status(error, request_id)
    elif is_database_outage(error):
        log.warning("call %s: the database is unavailable (%s)", request_id, type(error).__name__)
        status = to_status(database_unavailable(), request_id)
    elif is_refused_value(error):
        log.warning("call %s: the database refused a value of the request (%s)", request_id, type(error).__name__)
        status = to_status(refused_value(), request_id)
    else:
        log.error("unhandled error in call %s", request_id, exc_info=error)
        status = internal_status(request_id)
    trailers = tuple(status.trailing_metadata or ())
    if not streams:
        trailers += ((REQUEST_ID_HEADER, request_id),)
    await context.abort(status.code, status.details, trailers)
    raise AssertionError("unreachable")  # abort always raises


def _end(gate: _Gate, code: str, started: float, request_id: str) -> None:
    """A call is over: the access log line and the call's metrics."""
    method = gate.method
    if gate.metrics is not None:
        gate.metrics.rpc(method, code, time.perf_counter() - started)
    if gate.tracer is not None and (traced := current_span.get()) is not None:
        span = traced[1]
        span.set_attribute("rpc.grpc.status_code", code)
        if (principal := current_principal.get()) is not None:
            span.set_attribute("pointsman.organisation", principal.organisation)
        if code != "OK":
            span.set_status(Status(StatusCode.ERROR, code))
        span.end()
    if access_log.isEnabledFor(logging.INFO):
        principal = current_principal.get()
        access_log.info(
            "%s %s %.2fms",
            method,
            code,
            (time.perf_counter() - started) * 1000,
            extra={
                "rpc": method,
                "code": code,
                "request_id": request_id,
                "principal": principal.name if principal is not None else "",
                "organisation": principal.organisation if principal is not None else "",
            },
        )


def _cut_by_drain(error: BaseException, gate: _Gate, *, incomplete: bool) -> DomainError | None:
    """The status for a call the drain cancelled at the end of the grace
    period; None for any other cancellation (the client's, say)."""
    if not isinstance(error, asyncio.CancelledError) or gate.drain is None or not gate.drain.cutting:
        return None
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()  # so that the status can still be sent
    return gate.drain.cut_error(incomplete=incomplete)


def _code_of(error: BaseException) -> str:
    if isinstance(error, DomainError):
        name: str = status_code_for(error).name  # grpc.StatusCode is untyped
        return name
    if is_database_outage(error):
        return "UNAVAILABLE"
    return "INVALID_ARGUMENT" if is_refused_value(error) else "INTERNAL"


class _Undecodable:
    """Stands for a request message that did not parse (a string field that is
    not UTF-8, a broken wire format), so the handler can answer
    INVALID_ARGUMENT instead of gRPC's bare UNKNOWN."""


_UNDECODABLE = _Undecodable()


def refused_value() -> InvalidArgument:
    return InvalidArgument.one("request", "holds a value the database cannot store (a NUL character, say)")


def _undecodable_error() -> InvalidArgument:
    return InvalidArgument.one("request", "is not a valid message (string fields must be UTF-8)")


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError:
            return _UNDECODABLE

    return deserialize


def _checked(request: Any, streamed: bool) -> Any:
    """The request, or for client streams an iterator of them, with
    undecodable messages turned into INVALID_ARGUMENT."""
    if not streamed:
        if request is _UNDECODABLE:
            raise _undecodable_error()
        return request

    async def messages() -> AsyncIterator[Any]:
        async for message in request:
            if message is _UNDECODABLE:
                raise _undecodable_error()
            yield message

    return messages()


def _wrap(handler: grpc.RpcMethodHandler, gate: _Gate) -> grpc.RpcMethodHandler:
    deserializer = _tolerant(handler.request_deserializer)
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _single_response(handler.unary_unary, gate, streamed=False), deserializer, handler.response_serializer
        )

    def streaming(
        inner: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any] | Awaitable[None]], streamed: bool
    ) -> Any:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            request_id, started = await _begin(context, gate, streams=True)
            code = "OK"
            sent = False
            try:
                if gate.drain is not None:
                    gate.drain.enter()
                responses = inner(_checked(request, streamed), context)
                if hasattr(responses, "__aiter__"):
                    async for response in responses:
                        sent = True
                        yield response
                else:  # a coroutine that streams with context.write
                    await responses
            except AbortError:
                code = "ABORTED_BY_HANDLER"
                raise
            except BaseException as error:
                if not isinstance(error, Exception):
                    cut = _cut_by_drain(error, gate, incomplete=sent)
                    if cut is None:
                        code = "CANCELLED"
                        raise
                    error = cut
                code = _code_of(error)
                await _fail(context, error, request_id, streams=True)
            finally:
                if gate.drain is not None:
                    gate.drain.leave()
                _end(gate, code, started, request_id)

        return stream

    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            streaming(handler.unary_stream, streamed=False), deserializer, handler.response_serializer
        )
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(
            streaming(handler.stream_stream, streamed=True), deserializer, handler.response_serializer
        )
    return grpc.stream_unary_rpc_method_handler(
        _single_response(handler.stream_unary, gate, streamed=True), deserializer, handler.response_serializer
    )


def _single_response(
    inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], gate: _Gate, *, streamed: bool
) -> Any:
    """Wraps a handler that returns one response (unary-unary and stream-unary)."""

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        request_id, started = await _begin(context, gate, streams=False)
        code = "OK"
        try:
            if gate.drain is not None:
                gate.drain.enter()
            return await inner(_checked(request, streamed), context)
        except AbortError:
            code = "ABORTED_BY_HANDLER"
            raise
        except Exception as error:
            code = _code_of(error)
            await _fail(context, error, request_id, streams=False)
        except asyncio.CancelledError as cancelled:
            cut = _cut_by_drain(cancelled, gate, incomplete=False)
            if cut is None:
                code = "CANCELLED"
                raise
            code = _code_of(cut)
            await _fail(context, cut, request_id, streams=False)
        finally:
            if gate.drain is not None:
                gate.drain.leave()
            _end(gate, code, started, request_id)

    return call
