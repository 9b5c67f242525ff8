"""Domain errors as OpenAI's JSON error body, with the HTTP status an OpenAI
client expects: `{"error": {"message", "type", "param", "code"}}`."""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from ..domain import errors as domain
from .features import with_openai_params

# Most specific class first: (class, HTTP status, OpenAI error type).
_STATUSES: list[tuple[type[domain.DomainError], int, str]] = [
    (domain.InvalidArgument, 400, "invalid_request_error"),
    (domain.NotFound, 404, "invalid_request_error"),
    (domain.AlreadyExists, 409, "invalid_request_error"),
    (domain.Unauthenticated, 401, "authentication_error"),
    (domain.ContentBlocked, 403, "permission_error"),
    (domain.PermissionDenied, 403, "permission_error"),
    (domain.FailedPrecondition, 400, "invalid_request_error"),
    (domain.Cancelled, 409, "invalid_request_error"),
    (domain.Unavailable, 503, "service_unavailable_error"),
    (domain.BudgetExhausted, 429, "insufficient_quota"),
    (domain.RateLimited, 429, "rate_limit_error"),
]

# A retry of an outage may help; the hint when the upstream did not say how long to wait.
DEFAULT_RETRY_SECONDS = 1.0


def status_for(error: domain.DomainError) -> tuple[int, str]:
    for cls, status, kind in _STATUSES:
        if isinstance(error, cls):
            return status, kind
    return 500, "server_error"


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_payload(error: domain.DomainError, request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The status, body and extra headers (Retry-After) for `error`."""
    status, kind = status_for(error)
    if status == 500:
        return internal_payload(request_id)
    param = None
    if isinstance(error, domain.InvalidArgument) and error.violations:
        error = with_openai_params(error)
        param = error.violations[0].field
    elif error.reason == "MODEL_NOT_FOUND":
        param = "model"
    headers: dict[str, str] = {}
    if isinstance(error, domain.Unavailable | domain.RateLimited):
        seconds = error.retry_after_seconds or DEFAULT_RETRY_SECONDS
        headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    body = error_body(error.message, kind, error.reason.lower(), param)
    if isinstance(error, domain.ContentBlocked):
        body["error"]["pointsman"] = blocked_json(error)
    return status, body, headers


def blocked_json(error: domain.ContentBlocked) -> dict[str, Any]:
    """What the firewall's block names (never the content): the categories,
    the rules and the recorded decision, under the door's `pointsman` key."""
    metadata = error.metadata
    return {
        "action": "block",
        "categories": [c for c in metadata.get("categories", "").split(",") if c],
        "rules": [r for r in metadata.get("rules", "").split(",") if r],
        "decision": metadata.get("decision", ""),
    }


def internal_payload(request_id: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    """For errors nobody foresaw: nothing leaves but the id that finds the traceback in the log."""
    message = f"internal error; quote request id {request_id} when reporting it"
    return 500, error_body(message, "server_error", "internal"), {}


def json_error(status: int, body: dict[str, Any], headers: dict[str, str], request_id: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers={**headers, "x-request-id": request_id},
    )


def sse_error(error: domain.DomainError | None, request_id: str) -> bytes:
    """An error after the stream began, as the frame OpenAI sends mid-stream."""
    if error is None:
        _, body, _ = internal_payload(request_id)
    else:
        _, body, _ = error_payload(error, request_id)
    return b"data: " + json.dumps(body).encode() + b"\n\n"
