"""The shared stores: PostgreSQL through an asyncpg pool, for several replicas
at once. Batches are written with one statement over arrays (`unnest`), one
round trip per batch however large."""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg  # type: ignore[import-untyped]  # no stubs shipped
from asyncpg import Record

from ...domain.broadcast import Broadcaster
from ...domain.errors import AlreadyExists
from ...domain.firewall.rules import MatchType, Rule, RuleKind, RuleScope
from ...domain.firewall.verdict import Action, Decision, Direction
from ...domain.ports.stores import (
    ApiKey,
    CategoryCount,
    DecisionFilter,
    Instance,
    RequestFilter,
    RequestRecord,
    RequestSummary,
    RuleChange,
    RuleChangeType,
    User,
    UserRole,
    VerifiedKey,
    api_key_not_found,
    instance_not_found,
    new_record_id,
    new_rule_id,
    require_organisation,
    rule_not_found,
    user_not_found,
    user_not_found_by_email,
)
from .codec import (
    dataclass_from_plain,
    decision_categories,
    decision_details_to_json,
    findings_from_json,
    findings_to_json,
)
from .keys import api_key_digest, api_key_id, mint_api_key
from .migrate import migrate_postgres
from .rows import LAST_USED_RESOLUTION, category_counts, check_page_size, normalise_email, request_summary

Clock = Callable[[], datetime]
# Every statement has a deadline: a stuck database must not hold a call forever.
COMMAND_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 10.0


class PostgresDatabase:
    def __init__(self, pool: asyncpg.Pool, migrated: tuple[int, ...] = ()) -> None:
        self.pool = pool
        self.migrated = migrated  # the migrations this open applied

    @classmethod
    async def open(cls, url: str, *, min_size: int = 1, max_size: int = 10) -> PostgresDatabase:
        """Connects and applies pending migrations."""
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            command_timeout=COMMAND_TIMEOUT_SECONDS,
            timeout=CONNECT_TIMEOUT_SECONDS,
        )
        try:
            async with pool.acquire() as connection:
                migrated = await migrate_postgres(connection)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, tuple(migrated))

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            self.pool.terminate()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")


class _Conditions:
    """WHERE clauses with numbered parameters."""

    def __init__(self) -> None:
        self.clauses: list[str] = []
        self.params: list[Any] = []

    def add(self, clause: str, value: Any) -> None:
        self.params.append(value)
        self.clauses.append(clause.replace("?", f"${len(self.params)}"))

    def next_param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


# Rules ----------------------------------------------------------------------


def _rule(row: Record) -> Rule:
    return Rule(
        id=row["id"],
        organisation=row["organisation"],
        kind=RuleKind(row["kind"]),
        match_type=MatchType(row["match_type"]),
        pattern=row["pattern"],
        keywords=tuple(row["keywords"]),
        description=row["description"],
        enabled=row["enabled"],
        scope=RuleScope(row["scope"]),
        create_time=row["create_time"],
        update_time=row["update_time"],
    )


_BUMP_RULE_VERSION = (
    "INSERT INTO rule_versions (organisation, version) VALUES ($1, 1)"
    " ON CONFLICT (organisation) DO UPDATE SET version = rule_versions.version + 1 RETURNING version"
)


class PostgresRuleStore:
    def __init__(self, database: PostgresDatabase, clock: Clock) -> None:
        self._pool = database.pool
        self._clock = clock
        self._versions: dict[str, int] = {}
        self.changes: Broadcaster[RuleChange] = Broadcaster()

    def version(self, organisation: str) -> int:
        return self._versions.get(organisation, 0)

    def _observed(self, organisation: str, version: int) -> None:
        self._versions[organisation] = max(version, self.version(organisation))

    async def rules_version(self, organisation: str) -> int:
        version = await self._pool.fetchval(
            "SELECT version FROM rule_versions WHERE organisation = $1", require_organisation(organisation)
        )
        version = 0 if version is None else int(version)
        self._observed(organisation, version)
        return version

    async def create_rule(self, rule: Rule) -> Rule:
        now = self._clock()
        rule = rule.with_changes(id=rule.id or new_rule_id(), create_time=now, update_time=now)
        async with self._pool.acquire() as connection, connection.transaction():
            try:
                await connection.execute(
                    "INSERT INTO rules (organisation, id, kind, match_type, pattern, keywords, description,"
                    " enabled, scope, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
                    require_organisation(rule.organisation),
                    rule.id,
                    rule.kind.value,
                    rule.match_type.value,
                    rule.pattern,
                    list(rule.keywords),
                    rule.description,
                    rule.enabled,
                    rule.scope.value,
                    now,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"rule '{rule.name}' already exists", reason="RULE_ALREADY_EXISTS") from None
            version = await connection.fetchval(_BUMP_RULE_VERSION, rule.organisation)
        self._observed(rule.organisation, version)
        self.changes.publish(RuleChange(RuleChangeType.CREATED, rule))
        return rule

    async def get_rule(self, organisation: str, rule_id: str) -> Rule:
        row = await self._pool.fetchrow(
            "SELECT * FROM rules WHERE organisation = $1 AND id = $2", require_organisation(organisation), rule_id
        )
        if row is None:
            raise rule_not_found(rule_id)
        return _rule(row)

    async def list_rules(self, organisation: str) -> list[Rule]:
        rows = await self._pool.fetch(
            "SELECT * FROM rules WHERE organisation = $1 ORDER BY seq", require_organisation(organisation)
        )
        return [_rule(row) for row in rows]

    async def update_rule(self, rule: Rule) -> Rule:
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "UPDATE rules SET kind = $1, match_type = $2, pattern = $3, keywords = $4, description = $5,"
                " enabled = $6, scope = $7, update_time = $8 WHERE organisation = $9 AND id = $10 RETURNING *",
                rule.kind.value,
                rule.match_type.value,
                rule.pattern,
                list(rule.keywords),
                rule.description,
                rule.enabled,
                rule.scope.value,
                self._clock(),
                require_organisation(rule.organisation),
                rule.id,
            )
            if row is None:
                raise rule_not_found(rule.id)
            version = await connection.fetchval(_BUMP_RULE_VERSION, rule.organisation)
        updated = _rule(row)
        self._observed(rule.organisation, version)
        self.changes.publish(RuleChange(RuleChangeType.UPDATED, updated))
        return updated

    async def delete_rule(self, organisation: str, rule_id: str) -> Rule:
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "DELETE FROM rules WHERE organisation = $1 AND id = $2 RETURNING *",
                require_organisation(organisation),
                rule_id,
            )
            if row is None:
                raise rule_not_found(rule_id)
            version = await connection.fetchval(_BUMP_RULE_VERSION, organisation)
        deleted = _rule(row)
        self._observed(organisation, version)
        self.changes.publish(RuleChange(RuleChangeType.DELETED, deleted))
        return deleted


# Decisions ------------------------------------------------------------------

# Columns travel as parallel arrays; categories as "pii,secret" (one text per
# row: unnest cannot take an array of arrays of different lengths).
_INSERT_DECISIONS = """
INSERT INTO decisions (organisation, id, create_time, principal, direction, action, categories, findings,
                       content_sha256, request_id, details)
SELECT o, i, ct, p, dr, a, string_to_array(c, ','), f::jsonb, h, r, dt::jsonb
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[], $10::text[], $11::text[]) AS batch(o, i, ct, p, dr, a, c, f, h, r, dt)
ON CONFLICT DO NOTHING
"""


def decision_columns(decisions: Sequence[Decision]) -> list[list[Any]]:
    columns: list[list[Any]] = [[] for _ in range(11)]
    for d in decisions:
        for column, value in zip(
            columns,
            (
                require_organisation(d.organisation),
                d.id,
                d.create_time,
                d.principal,
                d.direction.value,
                d.action.value,
                ",".join(decision_categories(d)),
                findings_to_json(d.findings),
                d.content_sha256,
                d.request_id,
                decision_details_to_json(d),
            ),
            strict=True,
        ):
            column.append(value)
    return columns


def _decision(row: Record) -> Decision:
    return dataclass_from_plain(
        Decision,
        json.loads(row["details"]),
        id=row["id"],
        create_time=row["create_time"],
        organisation=row["organisation"],
        principal=row["principal"],
        direction=Direction(row["direction"]),
        action=Action(row["action"]),
        findings=findings_from_json(row["findings"]),
        content_sha256=row["content_sha256"],
        request_id=row["request_id"],
    )


class PostgresDecisionStore:
    def __init__(self, database: PostgresDatabase) -> None:
        self._pool = database.pool

    def new_id(self) -> str:
        return new_record_id()

    async def record(self, decision: Decision) -> None:
        await self.record_many((decision,))

    async def record_many(self, decisions: Sequence[Decision]) -> None:
        if decisions:
            await self._pool.execute(_INSERT_DECISIONS, *decision_columns(decisions))

    async def list_decisions(
        self, organisation: str, where: DecisionFilter, page_size: int, after_id: str | None
    ) -> tuple[list[Decision], str | None]:
        size = check_page_size(page_size)
        conditions = _Conditions()
        conditions.add("organisation = ?", require_organisation(organisation))
        if after_id is not None:
            conditions.add("id < ?", after_id)
        if where.action is not None:
            conditions.add("action = ?", where.action.value)
        if where.direction is not None:
            conditions.add("direction = ?", where.direction.value)
        if where.category is not None:
            conditions.add("? = ANY (categories)", where.category.value)
        if where.start_time is not None:
            conditions.add("create_time >= ?", where.start_time)
        if where.end_time is not None:
            conditions.add("create_time < ?", where.end_time)
        limit = conditions.next_param(size + 1)
        rows = await self._pool.fetch(
            f"SELECT * FROM decisions WHERE {conditions.sql} ORDER BY id DESC LIMIT {limit}", *conditions.params
        )
        page = [_decision(row) for row in rows[:size]]
        return page, (page[-1].id if len(rows) > size else None)

    async def count_by_category(
        self, organisation: str, start_time: datetime, end_time: datetime
    ) -> list[CategoryCount]:
        # A decision's categories are distinct, so unnesting them counts it
        # once in each.
        rows = await self._pool.fetch(
            "SELECT category, count(*) FILTER (WHERE action = 'block') AS blocked,"
            " count(*) FILTER (WHERE action = 'redact') AS redacted, count(*) FILTER (WHERE action = 'log') AS logged"
            " FROM decisions, unnest(categories) AS category"
            " WHERE organisation = $1 AND create_time >= $2 AND create_time < $3"
            " AND action IN ('block', 'redact', 'log') GROUP BY category",
            require_organisation(organisation),
            start_time,
            end_time,
        )
        return category_counts(rows)

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        return await _delete_before(self._pool, "decisions", cutoff, limit)


async def _delete_before(
    pool: asyncpg.Pool, table: Literal["decisions", "request_log"], cutoff: datetime, limit: int
) -> int:
    # One batch at a time (by the time index of migration 0005), so a large
    # backlog never holds one long transaction.
    status = await pool.execute(
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE create_time < $1 LIMIT $2))",
        cutoff,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])  # "DELETE <count>"


# Request log ----------------------------------------------------------------

# One window of one organisation's calls.
_REQUESTS_IN_WINDOW = "FROM request_log WHERE organisation = $1 AND create_time >= $2 AND create_time < $3"

_SUMMARY_TOTALS = f"""
SELECT count(*) AS requests,
       count(*) FILTER (WHERE status_code <> 'OK') AS failed_requests,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       count(*) FILTER (WHERE cache_hit) AS cache_hits,
       coalesce(sum(input_tokens + output_tokens) FILTER (WHERE cache_hit), 0) AS tokens_saved,
       coalesce(sum(cost_usd) FILTER (WHERE NOT cache_hit), 0) AS cost_usd,
       coalesce(sum(cost_usd) FILTER (WHERE cache_hit), 0) AS cost_saved_usd
{_REQUESTS_IN_WINDOW}
"""

# percentile_disc: the nearest rank, always a latency that was measured
# (ordered-set aggregates skip NULLs, so calls without a first token too).
_SUMMARY_DEPLOYMENTS = f"""
SELECT deployment,
       count(*) AS requests,
       count(*) FILTER (WHERE status_code <> 'OK') AS failed_requests,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms) AS latency_p99_ms,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY time_to_first_token_ms) AS time_to_first_token_p50_ms,
       sum(cost_usd) AS cost_usd
{_REQUESTS_IN_WINDOW} AND NOT cache_hit AND deployment <> ''
GROUP BY deployment
ORDER BY requests DESC, deployment COLLATE "C"
"""

_INSERT_REQUESTS = """
INSERT INTO request_log (organisation, id, create_time, request_id, principal, model, deployment, status_code,
                         input_tokens, output_tokens, latency_ms, time_to_first_token_ms, cache_hit, cost_usd)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::integer[], $10::integer[], $11::float8[], $12::float8[], $13::boolean[],
                     $14::float8[])
ON CONFLICT DO NOTHING
"""


def _request(row: Record) -> RequestRecord:
    return RequestRecord(
        id=row["id"],
        create_time=row["create_time"],
        organisation=row["organisation"],
        request_id=row["request_id"],
        principal=row["principal"],
        model=row["model"],
        deployment=row["deployment"],
        status_code=row["status_code"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        latency_ms=row["latency_ms"],
        time_to_first_token_ms=row["time_to_first_token_ms"],
        cache_hit=row["cache_hit"],
        cost_usd=row["cost_usd"],
    )


class PostgresRequestLog:
    def __init__(self, database: PostgresDatabase) -> None:
        self._pool = database.pool

    def new_id(self) -> str:
        return new_record_id()

    async def record(self, entry: RequestRecord) -> None:
        await self.record_many((entry,))

    async def record_many(self, entries: Sequence[RequestRecord]) -> None:
        if not entries:
            return
        columns: list[list[Any]] = [[] for _ in range(14)]
        for e in entries:
            for column, value in zip(
                columns,
                (
                    require_organisation(e.organisation),
                    e.id,
                    e.create_time,
                    e.request_id,
                    e.principal,
                    e.model,
                    e.deployment,
                    e.status_code,
                    e.input_tokens,
                    e.output_tokens,
                    e.latency_ms,
                    e.time_to_first_token_ms,
                    e.cache_hit,
                    e.cost_usd,
                ),
                strict=True,
            ):
                column.append(value)
        await self._pool.execute(_INSERT_REQUESTS, *columns)

    async def list_requests(
        self, organisation: str, where: RequestFilter, page_size: int, after_id: str | None
    ) -> tuple[list[RequestRecord], str | None]:
        size = check_page_size(page_size)
        conditions = _Conditions()
        conditions.add("organisation = ?", require_organisation(organisation))
        if after_id is not None:
            conditions.add("id < ?", after_id)
        if where.model is not None:
            conditions.add("model = ?", where.model)
        if where.principal is not None:
            conditions.add("principal = ?", where.principal)
        if where.status_code is not None:
            conditions.add("status_code = ?", where.status_code)
        if where.start_time is not None:
            conditions.add("create_time >= ?", where.start_time)
        if where.end_time is not None:
            conditions.add("create_time < ?", where.end_time)
        limit = conditions.next_param(size + 1)
        rows = await self._pool.fetch(
            f"SELECT * FROM request_log WHERE {conditions.sql} ORDER BY id DESC LIMIT {limit}", *conditions.params
        )
        page = [_request(row) for row in rows[:size]]
        return page, (page[-1].id if len(rows) > size else None)

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        return await _delete_before(self._pool, "request_log", cutoff, limit)

    async def cost_since(self, organisation: str, start_time: datetime, principal: str | None = None) -> float:
        spent = await self._pool.fetchval(
            "SELECT coalesce(sum(cost_usd), 0) FROM request_log"
            " WHERE organisation = $1 AND create_time >= $2 AND NOT cache_hit"
            " AND ($3::text IS NULL OR principal = $3)",
            require_organisation(organisation),
            start_time,
            principal,
        )
        return float(spent)

    async def summarise(self, organisation: str, start_time: datetime, end_time: datetime) -> RequestSummary:
        window = (require_organisation(organisation), start_time, end_time)
        # Totals and deployments from one snapshot.
        async with (
            self._pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            totals = await connection.fetchrow(_SUMMARY_TOTALS, *window)
            deployments = await connection.fetch(_SUMMARY_DEPLOYMENTS, *window)
        return request_summary(totals, deployments)


# Users and API keys ---------------------------------------------------------


def _user(row: Record, prefix: str = "") -> User:
    return User(
        id=row[f"{prefix}id"],
        organisation=row[f"{prefix}organisation"],
        email=row[f"{prefix}email"],
        role=UserRole(row[f"{prefix}role"]),
        display_name=row[f"{prefix}display_name"],
        create_time=row[f"{prefix}create_time"],
    )


def _api_key(row: Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        organisation=row["organisation"],
        user_id=row["user_id"],
        display_name=row["display_name"],
        create_time=row["create_time"],
        expire_time=row["expire_time"],
        revoke_time=row["revoke_time"],
        last_used_time=row["last_used_time"],
    )


class PostgresUserStore:
    def __init__(self, database: PostgresDatabase, clock: Clock) -> None:
        self._pool = database.pool
        self._clock = clock

    async def create_user(self, user: User) -> User:
        now = self._clock()
        user = replace(user, id=user.id or secrets.token_hex(8), email=normalise_email(user.email), create_time=now)
        try:
            await self._pool.execute(
                "INSERT INTO users (organisation, id, email, display_name, role, create_time)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                require_organisation(user.organisation),
                user.id,
                user.email,
                user.display_name,
                user.role.value,
                now,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("a user with this id or email already exists", reason="USER_ALREADY_EXISTS") from None
        return user

    async def get_user(self, organisation: str, user_id: str) -> User:
        row = await self._pool.fetchrow(
            "SELECT * FROM users WHERE organisation = $1 AND id = $2", require_organisation(organisation), user_id
        )
        if row is None:
            raise user_not_found(user_id)
        return _user(row)

    async def find_user_by_email(self, organisation: str, email: str) -> User:
        row = await self._pool.fetchrow(
            "SELECT * FROM users WHERE organisation = $1 AND email = $2",
            require_organisation(organisation),
            normalise_email(email),
        )
        if row is None:
            raise user_not_found_by_email()
        return _user(row)

    async def list_users(self, organisation: str) -> list[User]:
        rows = await self._pool.fetch(
            "SELECT * FROM users WHERE organisation = $1 ORDER BY create_time, id", require_organisation(organisation)
        )
        return [_user(row) for row in rows]

    async def set_user_role(self, organisation: str, user_id: str, role: UserRole) -> User:
        row = await self._pool.fetchrow(
            "UPDATE users SET role = $1 WHERE organisation = $2 AND id = $3 RETURNING *",
            role.value,
            require_organisation(organisation),
            user_id,
        )
        if row is None:
            raise user_not_found(user_id)
        return _user(row)

    async def delete_user(self, organisation: str, user_id: str) -> User:
        row = await self._pool.fetchrow(
            "DELETE FROM users WHERE organisation = $1 AND id = $2 RETURNING *",
            require_organisation(organisation),
            user_id,
        )
        if row is None:
            raise user_not_found(user_id)
        return _user(row)

    async def create_api_key(
        self, organisation: str, user_id: str, display_name: str, expire_time: datetime | None = None
    ) -> tuple[ApiKey, str]:
        key_id, plaintext = mint_api_key()
        key = ApiKey(
            id=key_id,
            organisation=require_organisation(organisation),
            user_id=user_id,
            display_name=display_name,
            create_time=self._clock(),
            expire_time=expire_time,
        )
        try:
            await self._pool.execute(
                "INSERT INTO api_keys (id, organisation, user_id, display_name, key_sha256, create_time, expire_time)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                key.id,
                key.organisation,
                key.user_id,
                key.display_name,
                api_key_digest(plaintext),
                key.create_time,
                key.expire_time,
            )
        except asyncpg.ForeignKeyViolationError:
            raise user_not_found(user_id) from None
        return key, plaintext

    async def list_api_keys(self, organisation: str, user_id: str | None = None) -> list[ApiKey]:
        if user_id is None:
            rows = await self._pool.fetch(
                "SELECT * FROM api_keys WHERE organisation = $1 ORDER BY create_time, id",
                require_organisation(organisation),
            )
        else:
            rows = await self._pool.fetch(
                "SELECT * FROM api_keys WHERE organisation = $1 AND user_id = $2 ORDER BY create_time, id",
                require_organisation(organisation),
                user_id,
            )
        return [_api_key(row) for row in rows]

    async def revoke_api_key(self, organisation: str, key_id: str) -> ApiKey:
        row = await self._pool.fetchrow(
            "UPDATE api_keys SET revoke_time = coalesce(revoke_time, $1) WHERE organisation = $2 AND id = $3"
            " RETURNING *",
            self._clock(),
            require_organisation(organisation),
            key_id,
        )
        if row is None:
            raise api_key_not_found(key_id)
        return _api_key(row)

    async def revoke_token(self, organisation: str, token_sha256: str, expire_time: datetime) -> None:
        await self._pool.execute(
            "INSERT INTO revoked_tokens (token_sha256, organisation, expire_time, revoke_time)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (token_sha256) DO NOTHING",
            token_sha256,
            require_organisation(organisation),
            expire_time,
            self._clock(),
        )

    async def revoked_tokens(self) -> dict[str, datetime]:
        now = self._clock()
        async with self._pool.acquire() as connection:
            await connection.execute("DELETE FROM revoked_tokens WHERE expire_time <= $1", now)
            rows = await connection.fetch("SELECT token_sha256, expire_time FROM revoked_tokens")
        return {row["token_sha256"]: row["expire_time"] for row in rows}

    async def verify_api_key(self, plaintext: str) -> VerifiedKey | None:
        key_id = api_key_id(plaintext)
        if key_id is None:
            return None
        row = await self._pool.fetchrow(
            "SELECT k.*, u.id AS u_id, u.organisation AS u_organisation, u.email AS u_email, u.role AS u_role,"
            " u.display_name AS u_display_name, u.create_time AS u_create_time"
            " FROM api_keys k JOIN users u ON u.organisation = k.organisation AND u.id = k.user_id"
            " WHERE k.id = $1",
            key_id,
        )
        if row is None or not hmac.compare_digest(row["key_sha256"], api_key_digest(plaintext)):
            return None
        key = _api_key(row)
        now = self._clock()
        if key.revoke_time is not None or (key.expire_time is not None and key.expire_time <= now):
            return None
        if key.last_used_time is None or now - key.last_used_time >= LAST_USED_RESOLUTION:
            await self._pool.execute("UPDATE api_keys SET last_used_time = $1 WHERE id = $2", now, key.id)
            key = replace(key, last_used_time=now)
        return VerifiedKey(key, _user(row, "u_"))


# Registry instances ---------------------------------------------------------


def _instance(row: Record) -> Instance:
    return Instance(
        instance_id=row["instance_id"],
        organisation=row["organisation"],
        address=row["address"],
        version=row["version"],
        models=tuple(row["models"]),
        labels=dict(json.loads(row["labels"])),
        register_time=row["register_time"],
        lease_expire_time=row["lease_expire_time"],
    )


class PostgresInstanceStore:
    def __init__(self, database: PostgresDatabase, clock: Clock) -> None:
        self._pool = database.pool
        self._clock = clock

    async def register_instance(self, instance: Instance, lease_seconds: float) -> tuple[Instance, bool]:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        now = self._clock()
        expire = now + timedelta(seconds=lease_seconds)
        instance = replace(instance, register_time=now, lease_expire_time=expire)
        async with self._pool.acquire() as connection, connection.transaction():
            previous = await connection.fetchval(
                "SELECT lease_expire_time FROM instances WHERE organisation = $1 AND instance_id = $2 FOR UPDATE",
                require_organisation(instance.organisation),
                instance.instance_id,
            )
            await connection.execute(
                "INSERT INTO instances (organisation, instance_id, address, version, models, labels, lease_seconds,"
                " register_time, lease_expire_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                " ON CONFLICT (organisation, instance_id) DO UPDATE SET address = excluded.address,"
                " version = excluded.version, models = excluded.models, labels = excluded.labels,"
                " lease_seconds = excluded.lease_seconds, register_time = excluded.register_time,"
                " lease_expire_time = excluded.lease_expire_time",
                instance.organisation,
                instance.instance_id,
                instance.address,
                instance.version,
                list(instance.models),
                json.dumps(instance.labels),
                lease_seconds,
                now,
                expire,
            )
        return instance, previous is None or previous <= now

    async def renew_lease(self, organisation: str, instance_id: str) -> Instance:
        row = await self._pool.fetchrow(
            "UPDATE instances SET lease_expire_time = $1 + make_interval(secs => lease_seconds)"
            " WHERE organisation = $2 AND instance_id = $3 AND lease_expire_time > $1 RETURNING *",
            self._clock(),
            require_organisation(organisation),
            instance_id,
        )
        if row is None:
            raise instance_not_found(instance_id)
        return _instance(row)

    async def get_instance(self, organisation: str, instance_id: str) -> Instance:
        row = await self._pool.fetchrow(
            "SELECT * FROM instances WHERE organisation = $1 AND instance_id = $2 AND lease_expire_time > $3",
            require_organisation(organisation),
            instance_id,
            self._clock(),
        )
        if row is None:
            raise instance_not_found(instance_id)
        return _instance(row)

    async def list_instances(self, organisation: str) -> list[Instance]:
        rows = await self._pool.fetch(
            "SELECT * FROM instances WHERE organisation = $1 AND lease_expire_time > $2 ORDER BY instance_id",
            require_organisation(organisation),
            self._clock(),
        )
        return [_instance(row) for row in rows]

    async def delete_instance(self, organisation: str, instance_id: str) -> Instance:
        now = self._clock()
        # A lapsed lease is gone already, as far as callers can tell; its row
        # stays for the reaper, which announces it as expired.
        row = await self._pool.fetchrow(
            "DELETE FROM instances WHERE organisation = $1 AND instance_id = $2 AND lease_expire_time > $3 RETURNING *",
            require_organisation(organisation),
            instance_id,
            now,
        )
        if row is None:
            raise instance_not_found(instance_id)
        return _instance(row)

    async def expire_lapsed(self) -> list[Instance]:
        # Across organisations: the reaper is the system's, not a tenant's.
        # DELETE ... RETURNING hands each lapsed row to exactly one reaper.
        rows = await self._pool.fetch(
            "DELETE FROM instances WHERE lease_expire_time <= $1 RETURNING *",
            self._clock(),
        )
        return sorted((_instance(row) for row in rows), key=lambda i: (i.organisation, i.instance_id))

    async def next_lease_expiry(self) -> datetime | None:
        value: datetime | None = await self._pool.fetchval("SELECT min(lease_expire_time) FROM instances")
        return value
