"""Upstream failures, whichever SDK reported them, as domain errors.

Every provider maps its SDK's exceptions through these functions, so an HTTP
429 from OpenAI and one from Anthropic reach the client (and the router) as the
same error. Upstream bodies are never forwarded: they can echo request content,
and auth errors can echo part of the key."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..domain.errors import DomainError, FailedPrecondition, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

# Reasons the router reads to decide between retrying, falling back and giving up.
RATE_LIMITED = "UPSTREAM_RATE_LIMITED"
AUTH_FAILED = "UPSTREAM_AUTH_FAILED"
MODEL_NOT_FOUND = "UPSTREAM_MODEL_NOT_FOUND"
TIMEOUT = "UPSTREAM_TIMEOUT"
MALFORMED = "UPSTREAM_MALFORMED"
CONNECTION_LOST = "UPSTREAM_CONNECTION_LOST"
STREAM_ERROR = "UPSTREAM_STREAM_ERROR"
INCOMPLETE = "UPSTREAM_INCOMPLETE"


def status_error(status: int, headers: Mapping[str, str]) -> DomainError:
    """An HTTP error status from an upstream model API."""
    if status == 429:
        return Unavailable(
            "the upstream model is rate limited", reason=RATE_LIMITED, retry_after_seconds=retry_after(headers)
        )
    if status in (401, 403):
        log.error("upstream rejected the gateway's credentials (HTTP %s)", status)
        return FailedPrecondition("the upstream model rejected the gateway's credentials", reason=AUTH_FAILED)
    if status == 404:
        return FailedPrecondition("the upstream does not serve this model", reason=MODEL_NOT_FOUND)
    if status >= 500 or status in (408, 409):
        # 529 is Anthropic's "overloaded"; 408 and 409 are retryable per both SDKs.
        return Unavailable(
            f"the upstream model failed (HTTP {status})", retry_after_seconds=retry_after(headers) or None
        )
    return InvalidArgument.one("messages", f"the upstream model rejected the request (HTTP {status})")


def timeout_error() -> Unavailable:
    return Unavailable("the upstream model timed out", reason=TIMEOUT)


def connection_error() -> Unavailable:
    return Unavailable("the upstream model could not be reached")


def malformed_error() -> Unavailable:
    return Unavailable("the upstream model sent a malformed response", reason=MALFORMED)


def connection_lost_error() -> Unavailable:
    return Unavailable("the upstream connection failed mid-answer", reason=CONNECTION_LOST)


def stream_error() -> Unavailable:
    return Unavailable("the upstream model failed mid-answer", reason=STREAM_ERROR)


def incomplete_error() -> Unavailable:
    return Unavailable("the upstream stream ended without a finish reason", reason=INCOMPLETE)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds form); None if absent or unparsable."""
    raw = headers.get("retry-after-ms")
    if raw is not None:
        try:
            return max(0.0, float(raw) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # the HTTP-date form: rare from model APIs, and a default backoff serves
