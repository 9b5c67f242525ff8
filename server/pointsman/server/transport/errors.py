"""Domain errors to gRPC status with AIP-193 details: exactly one ErrorInfo,
BadRequest for invalid fields, RetryInfo where a retry can help."""

from __future__ import annotations

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from pointsman.orchestrator.v1 import orchestrator_pb2

from ..domain import errors as domain

ERROR_DOMAIN = "pointsman.dev"

# Most specific class first.
_CODES: list[tuple[type[domain.DomainError], grpc.StatusCode]] = [
    (domain.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (domain.NotFound, grpc.StatusCode.NOT_FOUND),
    (domain.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (domain.ContentBlocked, grpc.StatusCode.PERMISSION_DENIED),
    (domain.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (domain.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (domain.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (domain.Cancelled, grpc.StatusCode.CANCELLED),
    (domain.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (domain.RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED),
]

# A retry of an upstream outage may help; this is the hint when the upstream
# did not say how long to wait.
DEFAULT_RETRY_SECONDS = 1.0


def status_code_for(error: domain.DomainError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def status_name(error: BaseException | None) -> str:
    """The name of the status code a call ended with, as the request log keeps it."""
    if error is None:
        return "OK"
    if isinstance(error, domain.DomainError):
        name: str = status_code_for(error).name  # grpc.StatusCode is untyped
        return name
    if isinstance(error, Exception):
        return "INTERNAL"
    return "CANCELLED"  # GeneratorExit or CancelledError: the client went away


def to_status(error: domain.DomainError, request_id: str) -> grpc.Status:
    code = status_code_for(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    metadata = dict(error.metadata)
    metadata["request_id"] = request_id
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=metadata))
    if isinstance(error, domain.InvalidArgument):
        status.details.add().Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in error.violations
                ]
            )
        )
    if isinstance(error, domain.Unavailable | domain.RateLimited):
        seconds = error.retry_after_seconds or DEFAULT_RETRY_SECONDS
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(seconds * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return rpc_status.to_status(status)


def database_unavailable() -> domain.Unavailable:
    """A store call failed because the database is down or refusing connections."""
    return domain.Unavailable(
        "the database is unavailable right now; retry shortly", reason="DATABASE_UNAVAILABLE", retry_after_seconds=1.0
    )


def internal_status(request_id: str) -> grpc.Status:
    """For errors we did not foresee: no detail leaves the process but the id
    that finds the traceback in the log."""
    error = domain.DomainError(f"internal error; quote request id {request_id} when reporting it")
    return to_status(error, request_id)


def turn_error(error: domain.DomainError) -> orchestrator_pb2.TurnError:
    """An error reported inside a stream (a Converse turn, a compared model, a
    batch item) rather than as the call's status."""
    return orchestrator_pb2.TurnError(
        code=status_code_for(error).value[0],
        reason=error.reason,
        message=error.message,
        incomplete=error.metadata.get("incomplete") == "true",
    )
