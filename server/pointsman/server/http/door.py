"""The HTTP server: routes, the per-request plumbing (request id, the
credential, errors as OpenAI's JSON, the access log, the drain at shutdown),
and the handlers, each a translation to one domain call."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, cast

from aiohttp import web

from ..auth import Authenticator, access_for
from ..domain import chat
from ..domain.caller import Caller, current_request_id
from ..domain.embeddings import Embeddings
from ..domain.errors import DomainError, NotFound, Unavailable, ViolationCollector
from ..domain.firewall.verdict import Direction
from ..domain.orchestrator import ChatEvent, FirewallNotice, Orchestrator
from ..metrics import Metrics
from .errors import error_body, error_payload, internal_payload, json_error, sse_error
from .extension import extension, prompt_headers
from .requests import chat_request_from_json, embed_request_from_json
from .responses import DONE, FINISH_REASONS, ChunkFramer, completion_json, embeddings_json, model_json, models_json

log = logging.getLogger(__name__)
access_log = logging.getLogger("pointsman.access")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
# The gRPC method whose role each HTTP call needs: the same table decides both.
_SERVICE = "/pointsman.orchestrator.v1.OrchestratorService/"
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request refused before it is understood (its media type, its size):
    not a domain error, but answered in the same JSON shape."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, "invalid_request_error", code, param)


def _shutting_down(*, incomplete: bool = False) -> Unavailable:
    return Unavailable(
        "the server is shutting down; retry, another replica will answer",
        reason="SERVER_SHUTTING_DOWN",
        retry_after_seconds=1.0,
        metadata={"incomplete": "true"} if incomplete else None,
    )


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class HttpDoor:
    """`start()`, then `refuse_new_calls()`, `drain()` and `stop()` at shutdown."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        embeddings: Embeddings,
        authenticator: Authenticator,
        address: str,
        *,
        max_body_bytes: int,
        reuse_port: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self._orchestrator = orchestrator
        self._embeddings = embeddings
        self._auth = authenticator
        self._address = address
        self._max_body = max_body_bytes
        self._reuse_port = reuse_port
        self._metrics = metrics
        # Complete and Chat need the same role: a call is admitted before its body says whether it streams.
        self._access = {m: access_for(_SERVICE + m) for m in ("Complete", "Embed", "ListModels")}
        self._calls: set[asyncio.Task[Any]] = set()
        self._draining = False
        self._cutting = False
        self._idle = asyncio.Event()
        app = web.Application(client_max_size=max_body_bytes, middlewares=[self._plumbing])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embed)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model}", self._model)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        self.port = 0

    async def start(self) -> None:
        host, port = split_address(self._address)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=self._reuse_port or None)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            raise OSError(f"could not serve HTTP on {self._address}: {error.strerror}") from None
        self.port = self._runner.addresses[0][1]
        log.info("serving the OpenAI-compatible HTTP door on %s:%d", host, self.port)

    def refuse_new_calls(self) -> None:
        self._draining = True
        if not self._calls:
            self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Returns when the calls in flight have ended, or after `timeout` seconds."""
        self.refuse_new_calls()
        if self._calls:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except TimeoutError:
                pass

    async def stop(self) -> int:
        """Cuts the calls still in flight (each ends with 503, or an error
        frame if its stream began), then closes the listener. Returns how
        many were cut."""
        self.refuse_new_calls()
        self._cutting = True
        calls = list(self._calls)
        for task in calls:
            task.cancel()
        if calls:
            await asyncio.wait(calls, timeout=2.0)
        await self._runner.cleanup()
        return len(calls)

    # -- per-request plumbing ------------------------------------------------

    @web.middleware
    async def _plumbing(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("x-request-id")
        request_id = given if given is not None and _VALID_REQUEST_ID.match(given) else os.urandom(8).hex()
        current_request_id.set(request_id)
        started = time.perf_counter()
        status = 500
        task = asyncio.current_task()
        try:
            if self._draining:
                raise _shutting_down()
            if task is not None:
                self._calls.add(task)
            response = await handler(request)
            status = response.status
            return response
        except asyncio.CancelledError:
            if not self._cutting or task is None:
                status = 499  # the client went away
                raise
            task.uncancel()  # so that the answer can still be sent
            status, body, headers = error_payload(_shutting_down(), request_id)
        except DomainError as error:
            status, body, headers = error_payload(error, request_id)
        except Refused as refused:
            status, body, headers = refused.status, refused.body, {}
        except web.HTTPException as error:  # aiohttp's own: no route, wrong method
            status = error.status
            code = {404: "unknown_url", 405: "method_not_allowed"}.get(status, "invalid_request")
            message = f"{request.method} {request.path[:256]}: {error.reason}"
            body, headers = error_body(message, "invalid_request_error", code), {}
        except Exception as error:
            log.error("unhandled error in HTTP call %s", request_id, exc_info=error)
            status, body, headers = internal_payload(request_id)
        finally:
            if task is not None:
                self._calls.discard(task)
            if self._draining and not self._calls:
                self._idle.set()
            self._log(request, status, started, request_id)
        return json_error(status, body, headers, request_id)

    def _log(self, request: web.Request, status: int, started: float, request_id: str) -> None:
        seconds = time.perf_counter() - started
        route = request.match_info.route.resource
        name = f"{request.method} {route.canonical if route is not None else 'unmatched'}"
        if self._metrics is not None:
            self._metrics.rpc(name, str(status), seconds)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %d %.2fms",
                name,
                status,
                seconds * 1000,
                extra={"rpc": name, "code": str(status), "request_id": request_id},
            )

    async def _caller(self, request: web.Request, method: str) -> Caller:
        principal = await self._auth.admit(
            self._access[method], request.headers.get("Authorization"), request.headers.get("x-api-key")
        )
        if principal is None:  # no method here is open
            raise RuntimeError(f"{method} admitted a call without a principal")
        return Caller(current_request_id.get(), principal.organisation, principal.name)

    async def _json(self, request: web.Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise Refused(
                415, f"the body must be application/json, not {request.content_type[:64]}", "unsupported_media_type"
            )
        length = request.content_length
        if length is not None and length > self._max_body:
            raise self._too_large()
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise self._too_large() from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Refused(400, "the body is not valid JSON", "invalid_json") from None
        if not isinstance(body, dict):
            raise Refused(400, "the body must be a JSON object", "invalid_json")
        return body

    def _too_large(self) -> Refused:
        return Refused(413, f"the body is larger than the limit of {self._max_body} bytes", "request_too_large")

    # -- handlers ------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        # The credential first, as OpenAI does: a caller it refuses learns nothing of its body.
        caller = await self._caller(request, "Complete")
        body = await self._json(request)
        errors = ViolationCollector()  # conversion problems, reported with the orchestrator's checks
        chat_request, stream, include_usage = chat_request_from_json(body, errors)
        if not stream:
            answer = await self._orchestrator.complete(chat_request, caller, errors)
            body = completion_json(answer, chat_request.model, caller.request_id)
            return _json_response(body, caller.request_id, prompt_headers(answer.notices))
        return await self._stream(request, chat_request, caller, errors, include_usage)

    async def _stream(
        self,
        request: web.Request,
        chat_request: chat.ChatRequest,
        caller: Caller,
        errors: ViolationCollector,
        include_usage: bool,
    ) -> web.StreamResponse:
        """SSE chunks as OpenAI streams them. Anything that can fail the call
        up front does so before the first byte, as a status; later failures
        are an error frame, as OpenAI sends them."""
        events = cast(AsyncGenerator[ChatEvent, None], self._orchestrator.chat(chat_request, caller, errors=errors))
        async with aclosing(events):
            event = await anext(events, None)  # raises what is known up front
            # The prompt's verdict, if the firewall acted on it, comes right
            # after Start: its headers and the first chunk carry it.
            prompt: list[FirewallNotice] = []
            if type(event) is chat.Start:
                event = await anext(events, None)
                if type(event) is FirewallNotice and event.direction is Direction.INPUT:
                    prompt.append(event)
                    event = await anext(events, None)
            headers = {**_SSE_HEADERS, "x-request-id": caller.request_id, **prompt_headers(prompt)}
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            framer = ChunkFramer(chat_request.model, caller.request_id)
            write = response.write
            usage: chat.Usage | None = None
            notices: list[FirewallNotice] = []  # on the answer: they go with the finish chunk
            # The role's chunk leaves with the first delta: one write (one packet) fewer.
            pending = framer.delta({"role": "assistant", "content": ""}, None, extension(prompt))
            try:
                while event is not None:
                    if type(event) is chat.TextDelta:
                        await write(pending + framer.text(event.text))
                        pending = b""
                    elif type(event) is chat.ToolCallDelta:
                        await write(pending + framer.tool_call(event))
                        pending = b""
                    elif type(event) is chat.ReasoningDelta:
                        await write(pending + framer.reasoning(event.text))
                        pending = b""
                    elif type(event) is FirewallNotice:
                        notices.append(event)
                    elif type(event) is chat.Usage:
                        usage = event
                    elif type(event) is chat.Finish:
                        pending += framer.delta({}, FINISH_REASONS[event.reason], extension(notices, event))
                        if include_usage:
                            pending += framer.usage(usage)
                    event = await anext(events, None)
                await write(pending + DONE)
            except DomainError as error:
                await write(sse_error(error, caller.request_id))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not self._cutting or task is None:
                    raise
                task.uncancel()
                await write(sse_error(_shutting_down(incomplete=True), caller.request_id))
            except (ConnectionResetError, ConnectionError):
                raise  # the client went away: nothing to tell it
            except Exception as error:
                log.error("unhandled error in HTTP stream %s", caller.request_id, exc_info=error)
                await write(sse_error(None, caller.request_id))
        return response

    async def _embed(self, request: web.Request) -> web.StreamResponse:
        caller = await self._caller(request, "Embed")
        body = await self._json(request)
        errors = ViolationCollector()
        embed_request, as_base64 = embed_request_from_json(body, errors)
        self._embeddings.check(embed_request, errors)
        errors.raise_if_any()
        result = await self._embeddings.embed(embed_request, caller)
        return _json_response(embeddings_json(result, as_base64), caller.request_id)

    def _served_aliases(self) -> list[str]:
        """Model aliases, then router aliases (which a client names as a model)."""
        aliases = [r.alias for r in self._orchestrator.catalog.routes()]
        if self._orchestrator.classes is not None:
            aliases += self._orchestrator.classes.aliases
        return aliases

    async def _models(self, request: web.Request) -> web.StreamResponse:
        caller = await self._caller(request, "ListModels")
        return _json_response(models_json(self._served_aliases()), caller.request_id)

    async def _model(self, request: web.Request) -> web.StreamResponse:
        caller = await self._caller(request, "ListModels")
        alias = request.match_info["model"]
        if alias not in self._served_aliases():
            raise NotFound(
                f"model '{alias[:256]}' is not served here; GET /v1/models lists the models that are",
                reason="MODEL_NOT_FOUND",
            )
        return _json_response(model_json(alias), caller.request_id)


def _json_response(body: dict[str, Any], request_id: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers={"x-request-id": request_id, **headers} if headers else {"x-request-id": request_id},
    )
