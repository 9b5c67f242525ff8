"""One upstream call, for every provider: the request the official SDK
builds, sent over a pooled aiohttp session.

The SDK decides what goes on the wire: the URL and every header (credentials,
API version, user agent, its platform headers) come from the SDK client's own
request builder, asked once per endpoint. Sending through the SDK costs more
than the rest of the gateway put together (docs/providers.md): per call it
builds typed options, merges URLs and headers, and passes three transport
layers before the bytes leave. The same bytes go out here at a fraction of the
cost, and the provider parses the body itself.

Every failure becomes one of the domain errors in `upstream_errors`. Closing
the iterator (also by cancellation) closes the HTTP connection, so a client
that goes away stops the upstream call."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from ..domain.chat import Deployment, ProviderEvent, Usage
from ..domain.errors import DomainError
from ..tracing import current_span, outgoing_headers
from . import upstream_errors

log = logging.getLogger(__name__)

# A stream parser gets the body as it arrives, in network-sized pieces.
StreamParser = Callable[[AsyncIterator[bytes]], AsyncIterator[ProviderEvent]]
AnswerParser = Callable[[Any], list[ProviderEvent]]

# Headers the SDK computes per request (or per connection) that aiohttp sets itself.
_TRANSPORT_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})
# Connections kept per endpoint; beyond this, calls wait for a free one (within their deadline).
MAX_CONNECTIONS = 512


async def sdk_request_target(sdk_client: Any, options_type: Any, path: str) -> tuple[str, dict[str, str]]:
    """The URL and headers the SDK client sends for a POST to `path`, from
    its own request builder (the same steps it runs before each send)."""
    options = options_type.construct(method="post", url=path, json_data={}, timeout=sdk_client.timeout)
    options = await sdk_client._prepare_options(options)
    request = sdk_client._build_request(options)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _TRANSPORT_HEADERS}
    return str(request.url), headers


class UpstreamHttp:
    """The HTTP side of one endpoint: its URL, its headers, its connection pool."""

    def __init__(self, target: Callable[[], Awaitable[tuple[str, dict[str, str]]]], timeout_seconds: float) -> None:
        # `target` is a coroutine function giving (url, headers): built on first use,
        # inside the event loop, like the session.
        self._target = target
        self._url = ""
        self._headers: dict[str, str] = {}
        # Like the SDKs' timeout: bounds connecting and each wait for more bytes,
        # not the whole answer (the router bounds that with the call's deadline).
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout_seconds, sock_read=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def _ready(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._url, self._headers = await self._target()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=self._timeout,
                # The SDK's headers are the request's; nothing else is added but
                # what HTTP itself needs.
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def call(
        self,
        body: dict[str, Any],
        deployment: Deployment,
        *,
        incremental: bool,
        parse_stream: StreamParser,
        parse_answer: AnswerParser,
    ) -> AsyncGenerator[ProviderEvent, None]:
        """The answer's events: parsed from the SSE body when `incremental`,
        else from one JSON answer. Traced when the call is."""
        traced = current_span.get()
        if traced is None:
            return self._call(body, deployment, None, incremental, parse_stream, parse_answer)
        return self._traced(traced, body, deployment, incremental, parse_stream, parse_answer)

    async def _traced(
        self,
        traced: tuple[Tracer, Span],
        body: dict[str, Any],
        deployment: Deployment,
        incremental: bool,
        parse_stream: StreamParser,
        parse_answer: AnswerParser,
    ) -> AsyncGenerator[ProviderEvent, None]:
        """A client span around the request, its `traceparent` sent along."""
        tracer, parent = traced
        span = tracer.start_span(
            f"chat {deployment.model}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": deployment.provider.value,
                "gen_ai.request.model": deployment.model,
                "server.address": deployment.endpoint,
                "pointsman.deployment": deployment.name,
            },
        )
        answer = self._call(body, deployment, outgoing_headers(span), incremental, parse_stream, parse_answer)
        try:
            async with aclosing(answer) as events:
                async for event in events:
                    if isinstance(event, Usage):
                        span.set_attribute("gen_ai.usage.input_tokens", event.input_tokens)
                        span.set_attribute("gen_ai.usage.output_tokens", event.output_tokens)
                    yield event
        except Exception as error:  # not GeneratorExit: a reader that stops early is no failure
            reason = error.reason if isinstance(error, DomainError) else type(error).__name__
            span.set_status(Status(StatusCode.ERROR, reason))
            raise
        finally:
            span.end()

    async def _call(
        self,
        body: dict[str, Any],
        deployment: Deployment,
        trace_headers: dict[str, str] | None,
        incremental: bool,
        parse_stream: StreamParser,
        parse_answer: AnswerParser,
    ) -> AsyncGenerator[ProviderEvent, None]:
        session = await self._ready()  # sets the SDK's headers on first use
        headers = self._headers if trace_headers is None else {**self._headers, **trace_headers}
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = await session.post(self._url, data=payload, headers=headers)
        except TimeoutError as error:  # aiohttp's timeouts are TimeoutErrors
            raise upstream_errors.timeout_error() from error
        except aiohttp.ClientError as error:
            raise upstream_errors.connection_error() from error
        finished = False
        try:
            if response.status >= 400:
                raise upstream_errors.status_error(response.status, response.headers)
            if incremental:
                async for event in parse_stream(response.content.iter_any()):
                    yield event
            else:
                for event in parse_answer(json.loads(await response.read())):
                    yield event
            finished = True
        except DomainError:
            raise
        except TimeoutError as error:
            # A stall mid-answer: no bytes within the read timeout.
            raise upstream_errors.timeout_error() from error
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            # A chunk that is not JSON or has the wrong shape: the upstream's
            # fault, never a reason to crash the stream handler.
            log.warning("malformed answer from %s: %s", deployment.name, type(error).__name__)
            raise upstream_errors.malformed_error() from error
        except aiohttp.ClientError as error:
            # Connection reset, truncated body, a broken chunked encoding.
            log.warning("upstream %s failed mid-answer: %s", deployment.name, type(error).__name__)
            raise upstream_errors.connection_lost_error() from error
        finally:
            if finished:
                response.release()  # read to the end: the connection goes back to the pool
            else:
                response.close()  # stopped early (cancelled, failed): drop the connection

    async def post_json(self, body: dict[str, Any], deployment: Deployment) -> Any:
        """One JSON request and its JSON answer (an embeddings call), with the
        same failures as `call`."""
        session = await self._ready()
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            async with session.post(self._url, data=payload, headers=self._headers) as response:
                if response.status >= 400:
                    raise upstream_errors.status_error(response.status, response.headers)
                return json.loads(await response.read())
        except DomainError:
            raise
        except TimeoutError as error:
            raise upstream_errors.timeout_error() from error
        except ValueError as error:
            log.warning("malformed answer from %s: %s", deployment.name, type(error).__name__)
            raise upstream_errors.malformed_error() from error
        except aiohttp.ClientError as error:
            raise upstream_errors.connection_error() from error

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
