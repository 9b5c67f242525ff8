"""OpenAI and every OpenAI-compatible server (Docker Model Runner, Ollama,
llama.cpp, vLLM, Groq) through the official `openai` SDK."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import openai

from ..domain.chat import (
    ChatRequest,
    Deployment,
    Finish,
    FinishReason,
    GenerationConfig,
    Message,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from ..domain.errors import DomainError, FailedPrecondition, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

_FINISH_REASONS = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}


class OpenAICompatibleProvider:
    """One SDK client per base URL. The SDK's own retries are off: retrying and
    falling back is the router's decision, made with knowledge of what the
    client has already received."""

    def __init__(self, *, api_key: str, base_url: str | None, timeout_seconds: float) -> None:
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout_seconds,
            # aiohttp transport: measurably less per-call overhead than httpx.
            http_client=openai.DefaultAioHttpClient(timeout=timeout_seconds),
        )

    async def stream(self, deployment: Deployment, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        kwargs = _request_kwargs(deployment.model, request)
        finish: FinishReason | None = None
        usage: Usage | None = None
        try:
            # The SDK builds, authenticates and sends the request and raises its
            # typed errors; the body is read raw because building a pydantic
            # model per chunk costs more than the rest of the gateway together.
            # Leaving the `async with` (also by cancellation) closes the HTTP
            # response, so a client that goes away stops the upstream call.
            async with self._client.chat.completions.with_streaming_response.create(**kwargs) as response:
                async for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise Unavailable("the upstream model failed mid-answer", reason="UPSTREAM_STREAM_ERROR")
                    if chunk.get("usage"):
                        raw = chunk["usage"]
                        usage = Usage(raw.get("prompt_tokens") or 0, raw.get("completion_tokens") or 0)
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            yield TextDelta(delta["content"])
                        for call in delta.get("tool_calls") or ():
                            function = call.get("function") or {}
                            yield ToolCallDelta(
                                index=call.get("index", 0),
                                id=call.get("id") or "",
                                name=function.get("name") or "",
                                arguments_delta=function.get("arguments") or "",
                            )
                        if choice.get("finish_reason"):
                            finish = _FINISH_REASONS.get(choice["finish_reason"], FinishReason.STOP)
        except openai.APIError as error:
            raise _map_error(error) from error
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            # A chunk that is not JSON or has the wrong shape: the upstream's
            # fault, never a reason to crash the stream handler.
            log.warning("malformed chunk from %s: %s", deployment.name, type(error).__name__)
            raise Unavailable("the upstream model sent a malformed response", reason="UPSTREAM_MALFORMED") from error
        except DomainError:
            raise
        except Exception as error:
            # Raw body reads surface the SDK transport's own errors unwrapped
            # (connection reset, read timeout); all of them are upstream failures.
            log.warning("upstream %s failed mid-answer: %s", deployment.name, type(error).__name__)
            raise Unavailable("the upstream connection failed mid-answer", reason="UPSTREAM_CONNECTION_LOST") from error
        if usage is not None:
            yield usage
        if finish is None:
            raise Unavailable("the upstream stream ended without a finish reason", reason="UPSTREAM_INCOMPLETE")
        yield Finish(finish)

    async def aclose(self) -> None:
        await self._client.close()


def _request_kwargs(model: str, request: ChatRequest) -> dict[str, Any]:
    config: GenerationConfig = request.config
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [_message(m) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if config.temperature is not None:
        kwargs["temperature"] = config.temperature
    if config.top_p is not None:
        kwargs["top_p"] = config.top_p
    if config.max_tokens is not None:
        kwargs["max_tokens"] = config.max_tokens
    if config.stop:
        kwargs["stop"] = list(config.stop)
    if config.seed is not None:
        kwargs["seed"] = config.seed
    if config.tools:
        kwargs["tools"] = [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
            }
            for t in config.tools
        ]
    return kwargs


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
            for c in message.tool_calls
        ]
    return out


def _map_error(error: openai.APIError) -> DomainError:
    """SDK errors to domain errors. Upstream bodies are not forwarded: they can
    echo request content, and auth errors can echo part of the key."""
    if isinstance(error, openai.APITimeoutError):
        return Unavailable("the upstream model timed out", reason="UPSTREAM_TIMEOUT")
    if isinstance(error, openai.APIConnectionError):
        return Unavailable("the upstream model could not be reached")
    if isinstance(error, openai.RateLimitError):
        return Unavailable(
            "the upstream model is rate limited",
            reason="UPSTREAM_RATE_LIMITED",
            retry_after_seconds=_retry_after(error.response.headers),
        )
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        log.error("upstream rejected the gateway's credentials (HTTP %s)", error.status_code)
        return FailedPrecondition(
            "the upstream model rejected the gateway's credentials", reason="UPSTREAM_AUTH_FAILED"
        )
    if isinstance(error, openai.NotFoundError):
        return FailedPrecondition("the upstream does not serve this model", reason="UPSTREAM_MODEL_NOT_FOUND")
    if isinstance(error, openai.APIStatusError):
        if error.status_code >= 500:
            return Unavailable(f"the upstream model failed (HTTP {error.status_code})")
        return InvalidArgument.one("messages", f"the upstream model rejected the request (HTTP {error.status_code})")
    # APIResponseValidationError and friends: the upstream spoke nonsense.
    return Unavailable("the upstream model sent a malformed response", reason="UPSTREAM_MALFORMED")


def _retry_after(headers: Any) -> float | None:
    raw = headers.get("retry-after-ms")
    if raw is not None:
        try:
            return float(raw) / 1000.0
        except ValueError:
            pass
    raw = headers.get("retry-after")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None
