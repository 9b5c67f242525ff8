"""Domain errors: what went wrong, in the domain's words. The transport layer
maps each class to a gRPC status code and AIP-193 error details."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One invalid field, named by its path in the request (`messages[0].content`)."""

    field: str
    description: str


class DomainError(Exception):
    """Base of every error a client may see. `message` must be safe to show:
    never prompt text, secrets or internal detail."""

    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = metadata or {}


class InvalidArgument(DomainError):
    reason = "INVALID_REQUEST"

    def __init__(self, violations: list[FieldViolation], message: str | None = None) -> None:
        summary = message or "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(summary)
        self.violations = violations

    @classmethod
    def one(cls, field_path: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field_path, description)])


class NotFound(DomainError):
    reason = "NOT_FOUND"


class AlreadyExists(DomainError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    reason = "FAILED_PRECONDITION"


class Cancelled(DomainError):
    """Work that was called off before it ran (a cancelled batch's items)."""

    reason = "CANCELLED"


class Unauthenticated(DomainError):
    """No credential, or one that does not verify. The message never quotes
    the credential."""

    reason = "CREDENTIAL_INVALID"


class PermissionDenied(DomainError):
    """The caller is known but its role does not allow the call."""

    reason = "ROLE_INSUFFICIENT"


class ContentBlocked(DomainError):
    """The firewall refused the content. Metadata names categories, rules and
    the recorded decision, never the content."""

    reason = "CONTENT_BLOCKED"


class Unavailable(DomainError):
    """Something we depend on failed in a way a retry may fix."""

    reason = "UPSTREAM_UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after_seconds: float | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_seconds = retry_after_seconds


class RateLimited(DomainError):
    """The caller (or its organisation) sent more than its rate allows."""

    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_seconds: float, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, metadata=metadata)
        self.retry_after_seconds = retry_after_seconds


class BudgetExhausted(RateLimited):
    """The organisation has spent its budget for the period."""

    reason = "BUDGET_EXHAUSTED"


@dataclass
class ViolationCollector:
    """Gathers every problem with a request so the client learns all of them at once."""

    violations: list[FieldViolation] = field(default_factory=list)

    def add(self, field_path: str, description: str) -> None:
        self.violations.append(FieldViolation(field_path, description))

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument(self.violations)
