"""The durable stores' interfaces and the records only they hold. Every
organisation-owned record carries its organisation and every method that reads
or changes one takes it: a store cannot be asked for another tenant's rows."""

from __future__ import annotations

import enum
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ..broadcast import Broadcaster
from ..chat import RouteDecision
from ..errors import NotFound
from ..firewall.rules import Rule
from ..firewall.verdict import Action, Category, Decision, Direction

_random_bits = random.getrandbits


def new_record_id() -> str:
    """Sorts by creation time (nanosecond clock), then 32 random bits, so ids
    minted by several replicas at once neither collide nor lose their order.
    The bits only keep ids apart, they guard nothing: `random` (seeded from
    the OS per process, reseeded after a fork) rather than a system call per
    id, which the request path pays several times a call."""
    return f"{time.time_ns():016x}{_random_bits(32):08x}"


def require_organisation(organisation: str) -> str:
    # An empty organisation would silently be one tenant shared by every caller.
    if not organisation:
        raise ValueError("organisation is required")
    return organisation


def new_rule_id() -> str:
    return secrets.token_hex(8)


class RuleChangeType:
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class RuleChange:
    change_type: str
    rule: Rule


class RuleStore(Protocol):
    """Firewall rules per organisation, in creation order. `changes` announces
    the changes made through this store (other replicas' changes arrive by the
    bus, not here)."""

    changes: Broadcaster[RuleChange]

    def version(self, organisation: str) -> int:
        """The newest version this process has written or read. Honest for one
        process; with replicas, use `rules_version`."""
        ...

    async def rules_version(self, organisation: str) -> int:
        """The organisation's rule version as stored, bumped in the same
        transaction as every change. Read it before `list_rules`."""
        ...

    async def create_rule(self, rule: Rule) -> Rule: ...
    async def get_rule(self, organisation: str, rule_id: str) -> Rule: ...
    async def list_rules(self, organisation: str) -> list[Rule]: ...
    async def update_rule(self, rule: Rule) -> Rule: ...
    async def delete_rule(self, organisation: str, rule_id: str) -> Rule: ...


@dataclass(frozen=True, slots=True)
class DecisionFilter:
    action: Action | None = None
    direction: Direction | None = None
    category: Category | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None

    def matches(self, decision: Decision) -> bool:
        if self.action is not None and decision.action is not self.action:
            return False
        if self.direction is not None and decision.direction is not self.direction:
            return False
        if self.category is not None and all(f.category is not self.category for f in decision.findings):
            return False
        if self.start_time is not None and decision.create_time < self.start_time:
            return False
        return not (self.end_time is not None and decision.create_time >= self.end_time)


class DecisionStore(Protocol):
    """Firewall decisions, listed newest first. Recording is idempotent by
    (organisation, id), so a batch may be retried after an unclear failure."""

    def new_id(self) -> str: ...
    async def record(self, decision: Decision) -> None: ...
    async def record_many(self, decisions: Sequence[Decision]) -> None: ...
    async def list_decisions(
        self, organisation: str, where: DecisionFilter, page_size: int, after_id: str | None
    ) -> tuple[list[Decision], str | None]: ...

    async def count_by_category(
        self, organisation: str, start_time: datetime, end_time: datetime
    ) -> list[CategoryCount]:
        """Decisions made in [start_time, end_time) that blocked, redacted or
        logged, per category of finding, in category order. A decision counts
        once in each category it has findings in."""
        ...

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        """Deletes up to `limit` decisions made before `cutoff`, in every
        organisation (retention is the system's job); how many it deleted."""
        ...


@dataclass(frozen=True, slots=True)
class CategoryCount:
    category: Category
    blocked: int = 0
    redacted: int = 0
    logged: int = 0


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One chat call, as the request log keeps it. `status_code` is the
    canonical status name ("OK", "UNAVAILABLE", ...)."""

    id: str
    create_time: datetime
    organisation: str
    request_id: str
    principal: str
    model: str  # the alias the caller asked for
    deployment: str  # the deployment that answered; "" if none did
    status_code: str
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    time_to_first_token_ms: float | None = None
    cache_hit: bool = False
    # The answer's tokens at the deployment's price, in US dollars; for a
    # cache hit, what the answer would have cost.
    cost_usd: float = 0.0
    semantic_cache_hit: bool = False  # a cache hit the semantic cache answered
    end_user_id: str = ""  # the caller's RequestMetadata; "" when not given
    tags: dict[str, str] = field(default_factory=dict)
    # Through a router alias (`model`): the class chosen, the model alias it
    # sent the call to and how it decided; "", "" and None for a plain alias.
    route_class: str = ""
    routed_model: str = ""
    route_decision: RouteDecision | None = None


@dataclass(frozen=True, slots=True)
class RequestFilter:
    model: str | None = None
    principal: str | None = None
    status_code: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    end_user_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # every one of them
    route_class: str | None = None


@dataclass(frozen=True, slots=True)
class SpendGroup:
    """The calls of one tag value (`tag_key` set), of one end user (`tag_key`
    ""), or of one router alias's class (`router` the alias, `value` the class)."""

    tag_key: str
    value: str
    requests: int = 0
    failed_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hits: int = 0
    cost_usd: float = 0.0  # upstream calls only: cache hits cost nothing
    router: str = ""


@dataclass(frozen=True, slots=True)
class SpendGroups:
    tags: tuple[SpendGroup, ...] = ()  # costliest, then busiest, first
    end_users: tuple[SpendGroup, ...] = ()
    route_classes: tuple[SpendGroup, ...] = ()
    truncated: bool = False  # some group beyond `limit` was left out


class RequestLog(Protocol):
    """One row per chat call, listed newest first; idempotent like decisions."""

    def new_id(self) -> str: ...
    async def record(self, entry: RequestRecord) -> None: ...
    async def record_many(self, entries: Sequence[RequestRecord]) -> None: ...
    async def list_requests(
        self, organisation: str, where: RequestFilter, page_size: int, after_id: str | None
    ) -> tuple[list[RequestRecord], str | None]: ...

    async def summarise(self, organisation: str, start_time: datetime, end_time: datetime) -> RequestSummary:
        """The calls made in [start_time, end_time), computed in the database."""
        ...

    async def summarise_groups(
        self,
        organisation: str,
        start_time: datetime,
        end_time: datetime,
        tag_keys: Sequence[str],
        by_end_user: bool,
        limit: int,
        by_route_class: bool = False,
    ) -> SpendGroups:
        """The calls in [start_time, end_time) summed per value of each of
        `tag_keys`, (with `by_end_user`) per end user and (with
        `by_route_class`) per router alias and class, in the database; at
        most `limit` groups in each list."""
        ...

    async def cost_since(self, organisation: str, start_time: datetime, principal: str | None = None) -> float:
        """What the organisation's calls (or one principal's) that reached an
        upstream have cost since `start_time`, in US dollars (cache hits cost
        nothing)."""
        ...

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        """Deletes up to `limit` rows made before `cutoff`, in every
        organisation; how many it deleted."""
        ...


@dataclass(frozen=True, slots=True)
class DeploymentSummary:
    """One deployment's calls, cache hits excluded. Percentiles are nearest
    rank (PostgreSQL's percentile_disc): always a latency that was measured."""

    deployment: str
    requests: int
    failed_requests: int
    latency_p50_ms: float
    latency_p99_ms: float
    time_to_first_token_p50_ms: float  # 0 when no call measured it
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class RequestSummary:
    requests: int = 0
    failed_requests: int = 0  # status other than OK
    input_tokens: int = 0
    output_tokens: int = 0
    cache_hits: int = 0
    tokens_saved: int = 0  # input plus output tokens of the cache hits
    deployments: tuple[DeploymentSummary, ...] = ()  # busiest first
    cost_usd: float = 0.0  # calls that reached an upstream
    cost_saved_usd: float = 0.0  # what the cache hits would have cost
    # Of the above, the semantic cache's hits and what they saved.
    semantic_cache_hits: int = 0
    semantic_tokens_saved: int = 0
    semantic_cost_saved_usd: float = 0.0
    llm_calls: int = 0  # calls that reached an upstream (not cached, not refused before one)
    average_latency_ms: float = 0.0  # mean whole-call latency over all requests


class UserRole(enum.Enum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    organisation: str
    email: str
    role: UserRole
    display_name: str = ""
    create_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"users/{self.id}"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key as stored: never the key itself. `id` is the non-secret part
    of the key (`pm_{id}_{secret}`), used to find the row and to show it."""

    id: str
    organisation: str
    user_id: str
    display_name: str
    create_time: datetime
    expire_time: datetime | None = None
    revoke_time: datetime | None = None
    last_used_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"apiKeys/{self.id}"

    @property
    def prefix(self) -> str:
        return f"pm_{self.id}"


@dataclass(frozen=True, slots=True)
class VerifiedKey:
    key: ApiKey
    user: User


@dataclass(frozen=True, slots=True)
class StoredApiKey:
    key: ApiKey
    key_sha256: str  # the digest of the whole key; the key itself is never stored
    user: User


class UserStore(Protocol):
    """Users and their API keys. Emails are unique within an organisation and
    compared case-insensitively."""

    async def create_user(self, user: User) -> User: ...
    async def get_user(self, organisation: str, user_id: str) -> User: ...
    async def find_user_by_email(self, organisation: str, email: str) -> User: ...
    async def list_users(self, organisation: str) -> list[User]: ...
    async def set_user_role(self, organisation: str, user_id: str, role: UserRole) -> User: ...
    async def delete_user(self, organisation: str, user_id: str) -> User: ...

    async def add_api_key(self, key: ApiKey, key_sha256: str) -> ApiKey:
        """Stores a key minted by auth (only its digest); NotFound if the user is not there."""
        ...

    async def find_api_key(self, key_id: str) -> StoredApiKey | None:
        """The key with its digest and owner, by id alone: the one lookup not
        scoped by organisation, since the organisation is what the key tells."""
        ...

    async def touch_api_key(self, key_id: str, used_time: datetime) -> None: ...
    async def list_api_keys(self, organisation: str, user_id: str | None = None) -> list[ApiKey]: ...
    async def revoke_api_key(self, organisation: str, key_id: str) -> ApiKey: ...

    async def revoke_token(self, organisation: str, token_sha256: str, expire_time: datetime) -> None:
        """Records a revoked JWT by its digest until `expire_time`, its own
        expiry; revoking it again changes nothing."""
        ...

    async def revoked_tokens(self) -> dict[str, datetime]:
        """Every revoked JWT that has not expired yet, across organisations:
        digest -> expiry. Rows past their expiry are deleted on the way."""
        ...


@dataclass(frozen=True, slots=True)
class Instance:
    instance_id: str
    organisation: str
    address: str
    version: str = ""
    models: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    register_time: datetime | None = None
    lease_expire_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"instances/{self.instance_id}"


class InstanceStore(Protocol):
    """Registry instances with leases. A lapsed instance is invisible to
    `get`/`list` at once and removed by `expire_lapsed`, which returns each
    lapsed instance exactly once even with several replicas reaping."""

    async def register_instance(self, instance: Instance, lease_seconds: float) -> tuple[Instance, bool]:
        """Creates or replaces the instance with a fresh lease; True if it was
        new (or its previous lease had lapsed)."""
        ...

    async def renew_lease(self, organisation: str, instance_id: str) -> Instance: ...
    async def get_instance(self, organisation: str, instance_id: str) -> Instance: ...
    async def list_instances(self, organisation: str) -> list[Instance]: ...
    async def delete_instance(self, organisation: str, instance_id: str) -> Instance: ...
    async def expire_lapsed(self) -> list[Instance]: ...
    async def next_lease_expiry(self) -> datetime | None: ...


# The errors the stores raise --------------------------------------------------


def rule_not_found(rule_id: str) -> NotFound:
    return NotFound(f"rule 'rules/{rule_id}' does not exist", reason="RULE_NOT_FOUND")


def user_not_found(user_id: str) -> NotFound:
    return NotFound(f"user 'users/{user_id}' does not exist", reason="USER_NOT_FOUND")


def api_key_not_found(key_id: str) -> NotFound:
    return NotFound(f"API key 'apiKeys/{key_id}' does not exist", reason="API_KEY_NOT_FOUND")


def instance_not_found(instance_id: str) -> NotFound:
    return NotFound(
        f"instance 'instances/{instance_id}' is not registered (or its lease lapsed)", reason="INSTANCE_NOT_FOUND"
    )


def user_not_found_by_email() -> NotFound:
    # Never the address itself: it is personal data.
    return NotFound("no user has this email", reason="USER_NOT_FOUND")
