"""Fake OpenAI Chat Completions upstream (aiohttp) with fault injection, for tests and benchmarks.

The provider-neutral machinery (lifecycle, counters, fault parsing, SSE writing, standalone
mode) lives here too, in `FakeUpstream`, and `anthropic_upstream` reuses it.

Faults are picked per request by the `model` field, or server-wide with `set_fault()`;
several can be combined with `+`, e.g. `long-100+slow-20`:

    fault-<status>         HTTP error in the API's error format (fault-500, fault-429, fault-401...)
    fault-slow-first-byte  sleep `first_byte_delay_s` (default 2 s) before the response headers
    fault-stall            stream 2 content chunks, then hang until the client disconnects
    fault-cut              stream 2 content chunks, then abort the TCP connection
    fault-malformed        insert a frame that is not valid JSON after 2 content chunks
    fault-stream-error     send the API's mid-stream error frame after 2 content chunks
    slow-<ms>              wait <ms> ms before each stream frame
    long-<n>               answer with n words ("word1 word2 ... wordn")
    huge-<n>               answer with n characters (some of them multi-byte) in ONE content chunk
    no-usage               stream without a usage chunk even when asked (as llama-cpp-python does)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import itertools
import json
import re
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from aiohttp import web

JSON = dict[str, Any]

# Mid-stream faults strike after this many content frames, so the client has seen some text.
FAULT_AFTER_CHUNKS = 2

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
}

_WORD_RE = re.compile(r"\S+\s*")
_FAULT_RE = re.compile(r"fault-(\d{3}|slow-first-byte|stall|cut|malformed|stream-error)")
_SLOW_RE = re.compile(r"slow-(\d+)")
_LONG_RE = re.compile(r"long-(\d+)")
_HUGE_RE = re.compile(r"huge-(\d+)")
# The text a huge answer repeats: ASCII, two-byte, three-byte and four-byte characters.
HUGE_PATTERN = "huge é ✓ 😀 answer "
_FAULT_FLAGS = {
    "slow-first-byte": "first_byte_delay",
    "stall": "stall",
    "cut": "cut",
    "malformed": "malformed",
    "stream-error": "stream_error",
}


# --------------------------------------------------------------------------- behaviour


@dataclass(frozen=True)
class Behaviour:
    """What one request should do, decoded from fault names."""

    status: int | None = None
    first_byte_delay: bool = False
    stall: bool = False
    cut: bool = False
    malformed: bool = False
    stream_error: bool = False
    chunk_delay_ms: float | None = None
    words: int | None = None
    huge_chars: int | None = None


@functools.lru_cache(maxsize=256)
def parse_behaviour(spec: str) -> Behaviour:
    """Decode `+`-separated fault tokens; anything unrecognised (a real model name) is ignored."""
    flags: dict[str, Any] = {}
    for token in spec.split("+"):
        if m := _FAULT_RE.fullmatch(token):
            name = m.group(1)
            if name.isdigit():
                flags["status"] = int(name)
            else:
                flags[_FAULT_FLAGS[name]] = True
        elif m := _SLOW_RE.fullmatch(token):
            flags["chunk_delay_ms"] = float(m.group(1))
        elif m := _LONG_RE.fullmatch(token):
            flags["words"] = int(m.group(1))
        elif m := _HUGE_RE.fullmatch(token):
            flags["huge_chars"] = int(m.group(1))
    return Behaviour(**flags)


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Prompt:
    """The parts of a request that shape the fake answer."""

    model: str
    user_text: str
    prompt_tokens: int
    stream: bool = False
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    tool_name: str | None = None
    include_usage: bool = False
    # Asked for JSON (a response format): the answer is the user's text as it is.
    structured: bool = False


@dataclass(frozen=True)
class Answer:
    """The deterministic reply: word chunks (trailing space included) or a tool call."""

    chunks: list[str]
    reason: str  # "end", "max_tokens" or "stop_sequence"; each API maps it to its own vocabulary
    stop_sequence: str | None = None
    tool_name: str | None = None
    tool_arguments: str = ""

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def completion_tokens(self) -> int:
        return len(self.chunks) if self.tool_name is None else len(split_words(self.tool_arguments))


def huge_text(chars: int) -> str:
    """`chars` characters of HUGE_PATTERN, repeated."""
    return (HUGE_PATTERN * (chars // len(HUGE_PATTERN) + 1))[:chars]


def split_words(text: str) -> list[str]:
    return _WORD_RE.findall(text)


def count_words(texts: Sequence[str]) -> int:
    return sum(len(t.split()) for t in texts)


def compose_answer(prompt: Prompt, behaviour: Behaviour) -> Answer:
    """Echo the last user message (or n words for long-<n>), then apply stop and max_tokens."""
    if prompt.tool_name is not None:
        arguments = json.dumps({"echo": prompt.user_text})
        return Answer([], "tool", tool_name=prompt.tool_name, tool_arguments=arguments)
    if behaviour.huge_chars is not None:
        return Answer([huge_text(behaviour.huge_chars)], "end")
    if behaviour.words is not None:
        text = " ".join(f"word{i}" for i in range(1, behaviour.words + 1))
    elif prompt.structured:
        text = prompt.user_text
    else:
        text = f"Echo: {prompt.user_text}"
    reason, matched = "end", None
    hits = [(text.find(s), s) for s in prompt.stop if s and s in text]
    if hits:
        cut_at, matched = min(hits)
        text, reason = text[:cut_at], "stop_sequence"
    chunks = split_words(text)
    # Applying the limit after the stop cut gives "whichever comes first", like a real model.
    if prompt.max_tokens is not None and len(chunks) > prompt.max_tokens:
        chunks, reason, matched = chunks[: prompt.max_tokens], "max_tokens", None
    return Answer(chunks, reason, stop_sequence=matched)


@dataclass
class StreamPlan:
    """A complete SSE response as frames, plus where and what mid-stream faults inject."""

    frames: list[bytes]
    first_chunk: int  # index of the first content frame; faults strike FAULT_AFTER_CHUNKS later
    malformed: bytes
    error: bytes

    @property
    def fault_at(self) -> int:
        # Never past the last frame, so a short answer still loses its terminator.
        return min(self.first_chunk + FAULT_AFTER_CHUNKS, len(self.frames) - 1)


class BadRequest(Exception):
    """The request is invalid in a way the real API would reject with 400."""


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# --------------------------------------------------------------------------- server base


class FakeUpstream:
    """Provider-neutral fake LLM server; subclasses supply routes, parsing and rendering."""

    # The URL suffix the provider's SDK expects in base_url ("/v1" for OpenAI, "" for Anthropic).
    base_path: ClassVar[str] = ""
    completion_path: ClassVar[str] = ""
    COUNTERS: ClassVar[tuple[str, ...]] = (
        "requests_total",
        "requests_open",
        "streams_open",
        "streams_completed",
        "streams_aborted",
        "streams_cut",
    )

    def __init__(
        self,
        *,
        chunk_delay_ms: float = 0.0,
        fault: str | None = None,
        first_byte_delay_s: float = 2.0,
    ) -> None:
        self.chunk_delay_ms = chunk_delay_ms
        self.first_byte_delay_s = first_byte_delay_s
        self._fault: str | None = None
        self._fault_budget: int | None = None
        self.set_fault(fault)
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port = 0
        self._ids = itertools.count(1)
        self.reset()

    # ----- observability

    def reset(self) -> None:
        """Zero the counters and forget recorded requests."""
        self.requests_total = 0
        self.requests_open = 0
        # Reported in usage when set: prompt-cache reads and reasoning tokens.
        self.cached_tokens = 0
        self.reasoning_tokens = 0
        # Sent as `reasoning_content` (streamed before the answer, or beside it) when set, as vLLM and DeepSeek do.
        self.reasoning_text = ""
        self.streams_open = 0
        self.streams_completed = 0
        self.streams_aborted = 0
        self.streams_cut = 0
        self.last_request: JSON | None = None
        self.last_headers: dict[str, str] = {}
        self.auth_headers: list[str | None] = []
        # The client ends (address, port) of the connections requests came on.
        self.client_addresses: set[tuple[str, int]] = set()

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,
        interval: float = 0.01,
    ) -> None:
        """Poll `predicate` until it is true; raise TimeoutError at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s: {self.counters()}")
            await asyncio.sleep(interval)

    def counters(self) -> dict[str, int]:
        """A snapshot of every counter, handy in assertion messages."""
        return {name: getattr(self, name) for name in self.COUNTERS}

    # ----- faults

    def set_fault(self, fault: str | None, times: int | None = None) -> None:
        """Apply `fault` to every completion request (or the next `times` ones); None clears."""
        self._fault = fault or None
        self._fault_budget = times

    def _behaviour_for(self, model: str) -> Behaviour:
        spec = model
        if self._fault is not None:
            spec = f"{self._fault}+{model}"  # the model's own tokens come last, so they win
            if self._fault_budget is not None:
                self._fault_budget -= 1
                if self._fault_budget <= 0:
                    self.set_fault(None)
        return parse_behaviour(spec)

    # ----- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        # Real APIs take bodies of tens of MB (images inline); aiohttp's default is 1 MiB.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(self._routes())
        # handler_cancellation: a client disconnect cancels the handler, so sleeps end promptly.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self._host = host
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Root URL of the server, without any API prefix."""
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """The URL to give the provider's SDK as base_url."""
        return self.url + self.base_path

    # ----- provider hooks

    def _routes(self) -> list[web.RouteDef]:
        return [web.post(self.completion_path, self._completion)]

    def _parse(self, body: JSON) -> Prompt:
        raise NotImplementedError

    def _render(self, prompt: Prompt, answer: Answer) -> JSON:
        raise NotImplementedError

    def _plan_stream(self, prompt: Prompt, answer: Answer) -> StreamPlan:
        raise NotImplementedError

    def _error_body(self, status: int, message: str | None = None) -> JSON:
        raise NotImplementedError

    def _auth_of(self, request: web.Request) -> str | None:
        return request.headers.get("Authorization")

    def _next_id(self) -> int:
        return next(self._ids)

    # ----- request handling

    def _note(self, request: web.Request) -> None:
        self.requests_total += 1
        self.auth_headers.append(self._auth_of(request))
        self.last_headers = dict(request.headers)
        if request.transport is not None:
            self.client_addresses.add(request.transport.get_extra_info("peername")[:2])

    def error_response(self, status: int, message: str | None = None) -> web.Response:
        headers = {"retry-after": "1", "retry-after-ms": "1000"} if status == 429 else None
        body = json.dumps(self._error_body(status, message))
        return web.Response(status=status, text=body, content_type="application/json", headers=headers)

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        self.requests_open += 1
        try:
            return await self._answer(request)
        finally:
            self.requests_open -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict):
                raise BadRequest("request body must be a JSON object")
            self.last_request = body
            prompt = self._parse(body)
        except (ValueError, BadRequest) as exc:
            return self.error_response(400, str(exc))
        behaviour = self._behaviour_for(prompt.model)
        if behaviour.first_byte_delay:
            await asyncio.sleep(self.first_byte_delay_s)
        if behaviour.status is not None:
            return self.error_response(behaviour.status)
        answer = compose_answer(prompt, behaviour)
        delay_s = (behaviour.chunk_delay_ms if behaviour.chunk_delay_ms is not None else self.chunk_delay_ms) / 1000
        if prompt.stream:
            plan = self._plan_stream(prompt, answer)
            return await self._write_stream(request, plan, behaviour, delay_s)
        return await self._write_json(request, self._render(prompt, answer), behaviour, delay_s)

    async def _write_json(
        self, request: web.Request, payload: JSON, behaviour: Behaviour, delay_s: float
    ) -> web.StreamResponse:
        if behaviour.stall:
            await self._wait_until_gone(request)
        if delay_s:
            # A non-streaming call takes as long as the stream would have: cancellable work.
            await asyncio.sleep(delay_s * max(1, payload_tokens(payload)))
        if behaviour.malformed:
            return web.Response(body=b'{"id": "broken", "choices": [', content_type="application/json")
        body = json.dumps(payload).encode()
        if not behaviour.cut:
            return web.Response(body=body, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: len(body) // 2])
        self._abort(request)
        return resp

    async def _write_stream(
        self, request: web.Request, plan: StreamPlan, behaviour: Behaviour, delay_s: float
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers=SSE_HEADERS)
        await resp.prepare(request)
        self.streams_open += 1
        outcome = "aborted"  # anything that escapes, CancelledError included, is a client abort
        fault_at = plan.fault_at
        try:
            for i, frame in enumerate(plan.frames):
                if i == fault_at:
                    if behaviour.stall:
                        await self._wait_until_gone(request)
                        raise ConnectionResetError("client went away during a stall")
                    if behaviour.cut:
                        self._abort(request)
                        outcome = "cut"
                        return resp
                    if behaviour.stream_error:
                        await resp.write(plan.error)
                        break
                    if behaviour.malformed:
                        await resp.write(plan.malformed)
                if delay_s and i:
                    await asyncio.sleep(delay_s)
                await resp.write(frame)
            outcome = "completed"
        except ConnectionError:
            return resp  # nothing more to write; aiohttp tolerates the failed write_eof
        finally:
            self.streams_open -= 1
            if outcome == "completed":
                self.streams_completed += 1
            elif outcome == "cut":
                self.streams_cut += 1
            else:
                self.streams_aborted += 1
        return resp

    @staticmethod
    async def _wait_until_gone(request: web.Request) -> None:
        # aiohttp offers no disconnect event to await; polling the transport works even if
        # handler cancellation does not fire.
        while not _client_gone(request):  # noqa: ASYNC110
            await asyncio.sleep(0.02)

    @staticmethod
    def _abort(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()  # RST, no chunked terminator: a hard mid-body failure


def payload_tokens(payload: JSON) -> int:
    """Completion tokens of a rendered non-streaming answer, whatever the API's usage names."""
    usage = payload.get("usage") or {}
    return int(usage.get("completion_tokens", usage.get("output_tokens", 0)))


def message_text(content: Any) -> str:
    """Text of a message content: a string or a list of typed parts (only text parts count)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(messages: list[Any]) -> str:
    """Text of the last user message: what the fake echoes."""
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            return message_text(m.get("content"))
    return ""


# --------------------------------------------------------------------------- standalone mode


def run_standalone(cls: type[FakeUpstream], argv: Sequence[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; print `listening on <base_url>` once ready."""
    parser = argparse.ArgumentParser(description=(cls.__doc__ or "").strip())
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before each frame")
    parser.add_argument("--fault", default=None, help="server-wide fault, e.g. fault-500")
    parser.add_argument("--first-byte-delay-s", type=float, default=2.0)
    args = parser.parse_args(argv)
    fake = cls(chunk_delay_ms=args.delay_ms, fault=args.fault, first_byte_delay_s=args.first_byte_delay_s)
    asyncio.run(_serve_until_signalled(fake, args.host, args.port))


async def _serve_until_signalled(fake: FakeUpstream, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await fake.start(host, port)
    print(f"listening on {fake.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


# --------------------------------------------------------------------------- OpenAI


_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-fake****."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_FINISH_REASONS = {
    "end": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool": "tool_calls",
}

_OPENAI_MODELS = ("gpt-fake", "gpt-fake-mini")


_OPENAI_DETAILS = ("auto", "low", "high", "original")
_OPENAI_DATA_URL = re.compile(r"data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+")


def _check_openai_images(messages: list[Any]) -> None:
    """The API's rules for image parts: in user messages, {url, detail} with
    an http(s) URL or a base64 data: URL of an image."""
    for i, m in enumerate(messages):
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            path = f"messages[{i}].content[{j}].image_url"
            if m.get("role") != "user":
                raise BadRequest(f"{path}: image content parts are only supported in user messages")
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not (url.startswith("https://") or _OPENAI_DATA_URL.fullmatch(url)):
                raise BadRequest(f"{path}.url: Invalid image URL")
            if "detail" in image and image["detail"] not in _OPENAI_DETAILS:
                raise BadRequest(f"{path}.detail: Invalid value")


class FakeOpenAI(FakeUpstream):
    """Fake OpenAI server: POST /v1/chat/completions, POST /v1/embeddings and GET /v1/models."""

    base_path = "/v1"
    completion_path = "/v1/chat/completions"
    # Width of the fake's vectors when the request names no `dimensions`.
    embedding_dimensions = 8

    def _routes(self) -> list[web.RouteDef]:
        return [
            *super()._routes(),
            web.get("/v1/models", self._models),
            web.post("/v1/embeddings", self._embeddings),
        ]

    async def _embeddings(self, request: web.Request) -> web.Response:
        """Deterministic vectors from a hash of each input; the `model` field picks
        faults as for chat (fault-500, fault-slow-first-byte, fault-malformed, no-usage)."""
        self._note(request)
        try:
            body = json.loads(await request.read())
            self.last_request = body
            inputs = body["input"]
            inputs = [inputs] if isinstance(inputs, str) else list(inputs)
            if not inputs or not all(isinstance(text, str) and text for text in inputs):
                raise BadRequest("'input' must be a non-empty string or array of non-empty strings")
            width = int(body.get("dimensions") or self.embedding_dimensions)
        except (ValueError, KeyError, TypeError, BadRequest) as exc:
            return self.error_response(400, str(exc))
        model = str(body.get("model") or "")
        behaviour = self._behaviour_for(model)
        if behaviour.first_byte_delay:
            await asyncio.sleep(self.first_byte_delay_s)
        if behaviour.status is not None:
            return self.error_response(behaviour.status)
        if behaviour.malformed:
            return web.Response(body=b'{"object": "list", "data": [', content_type="application/json")
        data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, width)} for i, t in enumerate(inputs)]
        payload: JSON = {"object": "list", "data": data, "model": model}
        if "no-usage" not in model.split("+"):
            tokens = count_words(inputs)
            payload["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return web.json_response(payload)

    async def _models(self, request: web.Request) -> web.Response:
        self._note(request)
        data = [
            {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "pointsman-fake"} for m in _OPENAI_MODELS
        ]
        return web.json_response({"object": "list", "data": data})

    def _error_body(self, status: int, message: str | None = None) -> JSON:
        kind, code, default = _OPENAI_ERRORS.get(
            status,
            (
                "server_error" if status >= 500 else "invalid_request_error",
                None,
                f"Fault {status}.",
            ),
        )
        return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}

    def _parse(self, body: JSON) -> Prompt:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array")
        texts = [message_text(m.get("content")) for m in messages if isinstance(m, dict)]
        _check_openai_images(messages)
        stop = body.get("stop") or ()
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        # After tool results (an agent's loop), the fake answers with them.
        tool_results = []
        for m in reversed(messages):
            if not isinstance(m, dict) or m.get("role") != "tool":
                break
            tool_results.insert(0, message_text(m.get("content")))
        return Prompt(
            model=str(body.get("model") or ""),
            user_text=("tool said: " + " | ".join(tool_results)) if tool_results else last_user_text(messages),
            prompt_tokens=count_words(texts),
            stream=bool(body.get("stream")),
            max_tokens=int(max_tokens) if max_tokens is not None else None,
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            tool_name=None if tool_results else _openai_tool(body),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage"))
            and "no-usage" not in str(body.get("model") or "").split("+"),
            structured=_openai_structured(body.get("response_format")),
        )

    def _usage(self, prompt: Prompt, answer: Answer) -> JSON:
        out = answer.completion_tokens
        return {
            "prompt_tokens": prompt.prompt_tokens,
            "completion_tokens": out,
            "total_tokens": prompt.prompt_tokens + out,
            **({"prompt_tokens_details": {"cached_tokens": self.cached_tokens}} if self.cached_tokens else {}),
            **(
                {"completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens}}
                if self.reasoning_tokens
                else {}
            ),
        }

    def _render(self, prompt: Prompt, answer: Answer) -> JSON:
        message: JSON = {"role": "assistant", "content": answer.text, "refusal": None}
        if self.reasoning_text and answer.tool_name is None:
            message["reasoning_content"] = self.reasoning_text
        if answer.tool_name is not None:
            message["content"] = None
            message["tool_calls"] = [_tool_call(answer.tool_name, answer.tool_arguments)]
        return {
            "id": f"chatcmpl-fake-{self._next_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": prompt.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _FINISH_REASONS[answer.reason],
                }
            ],
            "usage": self._usage(prompt, answer),
        }

    def _plan_stream(self, prompt: Prompt, answer: Answer) -> StreamPlan:
        frame = _ChunkFramer(f"chatcmpl-fake-{self._next_id()}", prompt.model, with_usage=prompt.include_usage)
        if answer.tool_name is None:
            first = frame({"role": "assistant", "content": "", "refusal": None})
            deltas = [frame.content(c) for c in answer.chunks]
            if self.reasoning_text:
                deltas.insert(0, frame({"reasoning_content": self.reasoning_text}))
        else:
            call = _tool_call(answer.tool_name, "")
            first = frame({"role": "assistant", "content": None, "tool_calls": [{"index": 0, **call}]})
            deltas = [
                frame({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                for piece in split_words(answer.tool_arguments)
            ]
        frames = [first, *deltas, frame({}, _FINISH_REASONS[answer.reason])]
        if prompt.include_usage:
            frames.append(frame.usage(self._usage(prompt, answer)))
        frames.append(b"data: [DONE]\n\n")
        error = {"error": self._error_body(500)["error"]}
        return StreamPlan(
            frames=frames,
            first_chunk=1,
            malformed=b'data: {"id": "broken", "choices": [{"delta": {"content": "x"\n\n',
            error=b"data: " + json.dumps(error).encode() + b"\n\n",
        )


@dataclass
class _ChunkFramer:
    """Serialises chat.completion.chunk frames; the fields common to a stream are built once."""

    chunk_id: str
    model: str
    with_usage: bool
    _head: str = field(init=False)
    _tail: str = field(init=False)

    def __post_init__(self) -> None:
        common = {
            "id": self.chunk_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_fake",
        }
        self._head = "data: " + json.dumps(common)[:-1] + ', "choices": '
        # Real streams with include_usage carry "usage": null until the final usage chunk.
        self._tail = ', "usage": null}\n\n' if self.with_usage else "}\n\n"

    def __call__(self, delta: JSON, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return (self._head + json.dumps([choice]) + self._tail).encode()

    def content(self, text: str) -> bytes:
        """Same bytes as `self({"content": text})`, minus the dict encoding on the hot path."""
        choice = '[{"index": 0, "delta": {"content": %s}, "logprobs": null, "finish_reason": null}]'
        return (self._head + choice % json.dumps(text) + self._tail).encode()

    def usage(self, usage: JSON) -> bytes:
        return (self._head + '[], "usage": ' + json.dumps(usage) + "}\n\n").encode()


def fake_vector(text: str, width: int) -> list[float]:
    """The fake's embedding of `text`: the same text always gets the same vector."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255 - 0.5, 6) for i in range(width)]


def _tool_call(name: str, arguments: str) -> JSON:
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


def _openai_structured(response_format: Any) -> bool:
    """Whether the request asks for JSON; a malformed format is a 400, as on the real API."""
    if response_format is None:
        return False
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return False
    if kind == "json_object":
        return True
    if kind == "json_schema":
        json_schema = response_format.get("json_schema")
        if not isinstance(json_schema, dict) or not json_schema.get("name") or "schema" not in json_schema:
            raise BadRequest("response_format.json_schema: 'name' and 'schema' are required")
        return True
    raise BadRequest(f"response_format.type: unknown value {kind!r}")


def _openai_tool(body: JSON) -> str | None:
    """Name of the tool the fake calls: the forced one, else the first; None if tools are off."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict) and (forced := (choice.get("function") or {}).get("name")):
        return str(forced)
    first = tools[0]
    return str((first.get("function") or {}).get("name") or first.get("name") or "tool")


if __name__ == "__main__":
    run_standalone(FakeOpenAI)
