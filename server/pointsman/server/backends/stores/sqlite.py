"""The embedded stores: one SQLite file (WAL mode) through aiosqlite. Times are
stored as integer microseconds since the epoch, JSON as text."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from ...domain.broadcast import Broadcaster
from ...domain.errors import AlreadyExists
from ...domain.firewall.rules import MatchType, Rule, RuleKind, RuleScope
from ...domain.firewall.verdict import Action, Category, Decision, Direction
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
from .migrate import migrate_sqlite
from .rows import LAST_USED_RESOLUTION, category_counts, check_page_size, normalise_email, request_summary

Clock = Callable[[], datetime]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
BUSY_TIMEOUT_SECONDS = 30.0


async def _enable_wal(connection: aiosqlite.Connection) -> None:
    """Switching a new file to WAL takes an exclusive lock, and SQLite does not
    wait on the busy timeout for it: when several processes open the same new
    file at once, the losers see "database is locked". Retry until it sticks."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            await connection.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


def _us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


def _us_or_none(value: datetime | None) -> int | None:
    return None if value is None else _us(value)


def _time(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _time_or_none(value: int | None) -> datetime | None:
    return None if value is None else _time(value)


class SqliteDatabase:
    """One connection and a lock around each use of it: aiosqlite runs the
    connection on its own thread, and the lock stops one coroutine's statements
    landing inside another's transaction. Other processes on the same file
    wait for its write lock (busy timeout)."""

    def __init__(self, connection: aiosqlite.Connection, migrated: tuple[int, ...] = ()) -> None:
        self._connection = connection
        self._lock = asyncio.Lock()
        self.migrated = migrated  # the migrations this open applied

    @classmethod
    async def open(cls, path: str | Path) -> SqliteDatabase:
        """Opens (creating if need be) the file and applies pending migrations."""
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            connection.row_factory = sqlite3.Row
            await _enable_wal(connection)
            # Durable at every checkpoint, not every commit: a power cut can lose
            # the last commits, never corrupt the file.
            await connection.execute("PRAGMA synchronous = NORMAL")
            await connection.execute("PRAGMA foreign_keys = ON")
            migrated = await migrate_sqlite(connection)
        except BaseException:
            await connection.close()
            raise
        return cls(connection, tuple(migrated))

    async def close(self) -> None:
        async with self._lock:
            await self._connection.close()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction; rolled back if the block raises."""
        async with self._lock:
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await self._connection.execute("ROLLBACK")
                raise
            await self._connection.execute("COMMIT")

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read transaction, so that several queries see one snapshot."""
        async with self._lock:
            await self._connection.execute("BEGIN")
            try:
                yield self._connection
            finally:
                with contextlib.suppress(sqlite3.Error):
                    await self._connection.execute("COMMIT")

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._lock, self._connection.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def ping(self) -> None:
        await self.fetchall("SELECT 1")


async def _fetchall(connection: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    async with connection.execute(sql, params) as cursor:
        return list(await cursor.fetchall())


async def _delete_before(
    database: SqliteDatabase, table: Literal["decisions", "request_log"], cutoff: datetime, limit: int
) -> int:
    # One batch per write transaction, so writers wait for one batch at most.
    async with database.write() as connection:
        cursor = await connection.execute(
            f"DELETE FROM {table} WHERE (organisation, id) IN"
            f" (SELECT organisation, id FROM {table} WHERE create_time < ? LIMIT ?)",
            (_us(cutoff), limit),
        )
        return cursor.rowcount


# Rules ----------------------------------------------------------------------


def _rule(row: sqlite3.Row) -> Rule:
    return Rule(
        id=row["id"],
        organisation=row["organisation"],
        kind=RuleKind(row["kind"]),
        match_type=MatchType(row["match_type"]),
        pattern=row["pattern"],
        keywords=tuple(json.loads(row["keywords"])),
        description=row["description"],
        enabled=bool(row["enabled"]),
        scope=RuleScope(row["scope"]),
        create_time=_time(row["create_time"]),
        update_time=_time(row["update_time"]),
    )


async def _bump_rule_version(connection: aiosqlite.Connection, organisation: str) -> int:
    rows = await _fetchall(
        connection,
        "INSERT INTO rule_versions (organisation, version) VALUES (?, 1)"
        " ON CONFLICT (organisation) DO UPDATE SET version = version + 1 RETURNING version",
        (organisation,),
    )
    return int(rows[0][0])


class SqliteRuleStore:
    def __init__(self, database: SqliteDatabase, clock: Clock) -> None:
        self._db = database
        self._clock = clock
        self._versions: dict[str, int] = {}
        self.changes: Broadcaster[RuleChange] = Broadcaster()

    def version(self, organisation: str) -> int:
        return self._versions.get(organisation, 0)

    def _observed(self, organisation: str, version: int) -> None:
        self._versions[organisation] = max(version, self.version(organisation))

    async def rules_version(self, organisation: str) -> int:
        row = await self._db.fetchone(
            "SELECT version FROM rule_versions WHERE organisation = ?", (require_organisation(organisation),)
        )
        version = 0 if row is None else int(row[0])
        self._observed(organisation, version)
        return version

    async def create_rule(self, rule: Rule) -> Rule:
        now = self._clock()
        rule = rule.with_changes(id=rule.id or new_rule_id(), create_time=now, update_time=now)
        async with self._db.write() as connection:
            try:
                await connection.execute(
                    "INSERT INTO rules (organisation, id, kind, match_type, pattern, keywords, description,"
                    " enabled, scope, create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        require_organisation(rule.organisation),
                        rule.id,
                        rule.kind.value,
                        rule.match_type.value,
                        rule.pattern,
                        json.dumps(list(rule.keywords)),
                        rule.description,
                        int(rule.enabled),
                        rule.scope.value,
                        _us(now),
                        _us(now),
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"rule '{rule.name}' already exists", reason="RULE_ALREADY_EXISTS") from None
            version = await _bump_rule_version(connection, rule.organisation)
        self._observed(rule.organisation, version)
        self.changes.publish(RuleChange(RuleChangeType.CREATED, rule))
        return rule

    async def get_rule(self, organisation: str, rule_id: str) -> Rule:
        row = await self._db.fetchone(
            "SELECT * FROM rules WHERE organisation = ? AND id = ?", (require_organisation(organisation), rule_id)
        )
        if row is None:
            raise rule_not_found(rule_id)
        return _rule(row)

    async def list_rules(self, organisation: str) -> list[Rule]:
        rows = await self._db.fetchall(
            "SELECT * FROM rules WHERE organisation = ? ORDER BY seq", (require_organisation(organisation),)
        )
        return [_rule(row) for row in rows]

    async def update_rule(self, rule: Rule) -> Rule:
        now = self._clock()
        async with self._db.write() as connection:
            rows = await _fetchall(
                connection,
                "UPDATE rules SET kind = ?, match_type = ?, pattern = ?, keywords = ?, description = ?,"
                " enabled = ?, scope = ?, update_time = ? WHERE organisation = ? AND id = ? RETURNING *",
                (
                    rule.kind.value,
                    rule.match_type.value,
                    rule.pattern,
                    json.dumps(list(rule.keywords)),
                    rule.description,
                    int(rule.enabled),
                    rule.scope.value,
                    _us(now),
                    require_organisation(rule.organisation),
                    rule.id,
                ),
            )
            if not rows:
                raise rule_not_found(rule.id)
            version = await _bump_rule_version(connection, rule.organisation)
        updated = _rule(rows[0])
        self._observed(rule.organisation, version)
        self.changes.publish(RuleChange(RuleChangeType.UPDATED, updated))
        return updated

    async def delete_rule(self, organisation: str, rule_id: str) -> Rule:
        async with self._db.write() as connection:
            rows = await _fetchall(
                connection,
                "DELETE FROM rules WHERE organisation = ? AND id = ? RETURNING *",
                (require_organisation(organisation), rule_id),
            )
            if not rows:
                raise rule_not_found(rule_id)
            version = await _bump_rule_version(connection, organisation)
        deleted = _rule(rows[0])
        self._observed(organisation, version)
        self.changes.publish(RuleChange(RuleChangeType.DELETED, deleted))
        return deleted


# Decisions ------------------------------------------------------------------


def _decision_row(decision: Decision) -> tuple[Any, ...]:
    categories = decision_categories(decision)
    return (
        require_organisation(decision.organisation),
        decision.id,
        _us(decision.create_time),
        decision.principal,
        decision.direction.value,
        decision.action.value,
        f",{','.join(categories)}," if categories else "",
        findings_to_json(decision.findings),
        decision.content_sha256,
        decision.request_id,
        decision_details_to_json(decision),
    )


def _decision(row: sqlite3.Row) -> Decision:
    return dataclass_from_plain(
        Decision,
        json.loads(row["details"]),
        id=row["id"],
        create_time=_time(row["create_time"]),
        organisation=row["organisation"],
        principal=row["principal"],
        direction=Direction(row["direction"]),
        action=Action(row["action"]),
        findings=findings_from_json(row["findings"]),
        content_sha256=row["content_sha256"],
        request_id=row["request_id"],
    )


class SqliteDecisionStore:
    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    def new_id(self) -> str:
        return new_record_id()

    async def record(self, decision: Decision) -> None:
        await self.record_many((decision,))

    async def record_many(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        rows = [_decision_row(d) for d in decisions]
        async with self._db.write() as connection:
            await connection.executemany(
                "INSERT INTO decisions (organisation, id, create_time, principal, direction, action, categories,"
                " findings, content_sha256, request_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                rows,
            )

    async def list_decisions(
        self, organisation: str, where: DecisionFilter, page_size: int, after_id: str | None
    ) -> tuple[list[Decision], str | None]:
        size = check_page_size(page_size)
        conditions = ["organisation = ?"]
        params: list[Any] = [require_organisation(organisation)]
        if after_id is not None:
            conditions.append("id < ?")
            params.append(after_id)
        if where.action is not None:
            conditions.append("action = ?")
            params.append(where.action.value)
        if where.direction is not None:
            conditions.append("direction = ?")
            params.append(where.direction.value)
        if where.category is not None:
            conditions.append("instr(categories, ?) > 0")
            params.append(f",{where.category.value},")
        if where.start_time is not None:
            conditions.append("create_time >= ?")
            params.append(_us(where.start_time))
        if where.end_time is not None:
            conditions.append("create_time < ?")
            params.append(_us(where.end_time))
        params.append(size + 1)
        rows = await self._db.fetchall(
            f"SELECT * FROM decisions WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT ?", params
        )
        page = [_decision(row) for row in rows[:size]]
        return page, (page[-1].id if len(rows) > size else None)

    async def count_by_category(
        self, organisation: str, start_time: datetime, end_time: datetime
    ) -> list[CategoryCount]:
        # `categories` is ",pii,secret,": joining it with the known categories
        # counts a decision once in each of its categories.
        rows = await self._db.fetchall(
            "SELECT known.value AS category, sum(d.action = 'block') AS blocked,"
            " sum(d.action = 'redact') AS redacted, sum(d.action = 'log') AS logged"
            " FROM decisions AS d JOIN json_each(?) AS known ON instr(d.categories, ',' || known.value || ',') > 0"
            " WHERE d.organisation = ? AND d.create_time >= ? AND d.create_time < ?"
            " AND d.action IN ('block', 'redact', 'log') GROUP BY known.value",
            (
                json.dumps([c.value for c in Category]),
                require_organisation(organisation),
                _us(start_time),
                _us(end_time),
            ),
        )
        return category_counts(rows)

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        return await _delete_before(self._db, "decisions", cutoff, limit)


# Request log ----------------------------------------------------------------

# One window of one organisation's calls.
_REQUESTS_IN_WINDOW = "FROM request_log WHERE organisation = ? AND create_time >= ? AND create_time < ?"

_SUMMARY_TOTALS = f"""
SELECT count(*) AS requests,
       coalesce(sum(status_code <> 'OK'), 0) AS failed_requests,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       coalesce(sum(cache_hit), 0) AS cache_hits,
       coalesce(sum(CASE WHEN cache_hit THEN input_tokens + output_tokens END), 0) AS tokens_saved,
       coalesce(sum(CASE WHEN NOT cache_hit THEN cost_usd END), 0) AS cost_usd,
       coalesce(sum(CASE WHEN cache_hit THEN cost_usd END), 0) AS cost_saved_usd
{_REQUESTS_IN_WINDOW}
"""

# SQLite has no percentile_disc. Its definition: the first value, in order,
# whose cumulative share of the rows (cume_dist) reaches the fraction; NULL
# first tokens rank in a partition of their own and are skipped by min().
# The sorting happens inside SQLite (spilling to disk if need be); Python
# receives one row per deployment.
_SUMMARY_DEPLOYMENTS = f"""
SELECT deployment,
       count(*) AS requests,
       sum(status_code <> 'OK') AS failed_requests,
       min(CASE WHEN latency_share >= 0.5 THEN latency_ms END) AS latency_p50_ms,
       min(CASE WHEN latency_share >= 0.99 THEN latency_ms END) AS latency_p99_ms,
       min(CASE WHEN ttft_share >= 0.5 THEN time_to_first_token_ms END) AS time_to_first_token_p50_ms,
       sum(cost_usd) AS cost_usd
FROM (
    SELECT deployment, status_code, latency_ms, time_to_first_token_ms, cost_usd,
           cume_dist() OVER (PARTITION BY deployment ORDER BY latency_ms) AS latency_share,
           cume_dist() OVER (PARTITION BY deployment, time_to_first_token_ms IS NULL
                             ORDER BY time_to_first_token_ms) AS ttft_share
    {_REQUESTS_IN_WINDOW} AND NOT cache_hit AND deployment <> ''
)
GROUP BY deployment
ORDER BY requests DESC, deployment
"""


def _request(row: sqlite3.Row) -> RequestRecord:
    return RequestRecord(
        id=row["id"],
        create_time=_time(row["create_time"]),
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
        cache_hit=bool(row["cache_hit"]),
        cost_usd=row["cost_usd"],
    )


class SqliteRequestLog:
    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    def new_id(self) -> str:
        return new_record_id()

    async def record(self, entry: RequestRecord) -> None:
        await self.record_many((entry,))

    async def record_many(self, entries: Sequence[RequestRecord]) -> None:
        if not entries:
            return
        rows = [
            (
                require_organisation(e.organisation),
                e.id,
                _us(e.create_time),
                e.request_id,
                e.principal,
                e.model,
                e.deployment,
                e.status_code,
                e.input_tokens,
                e.output_tokens,
                e.latency_ms,
                e.time_to_first_token_ms,
                int(e.cache_hit),
                e.cost_usd,
            )
            for e in entries
        ]
        async with self._db.write() as connection:
            await connection.executemany(
                "INSERT INTO request_log (organisation, id, create_time, request_id, principal, model, deployment,"
                " status_code, input_tokens, output_tokens, latency_ms, time_to_first_token_ms, cache_hit, cost_usd)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows,
            )

    async def list_requests(
        self, organisation: str, where: RequestFilter, page_size: int, after_id: str | None
    ) -> tuple[list[RequestRecord], str | None]:
        size = check_page_size(page_size)
        conditions = ["organisation = ?"]
        params: list[Any] = [require_organisation(organisation)]
        if after_id is not None:
            conditions.append("id < ?")
            params.append(after_id)
        for column, value in (
            ("model", where.model),
            ("principal", where.principal),
            ("status_code", where.status_code),
        ):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        if where.start_time is not None:
            conditions.append("create_time >= ?")
            params.append(_us(where.start_time))
        if where.end_time is not None:
            conditions.append("create_time < ?")
            params.append(_us(where.end_time))
        params.append(size + 1)
        rows = await self._db.fetchall(
            f"SELECT * FROM request_log WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT ?", params
        )
        page = [_request(row) for row in rows[:size]]
        return page, (page[-1].id if len(rows) > size else None)

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        return await _delete_before(self._db, "request_log", cutoff, limit)

    async def cost_since(self, organisation: str, start_time: datetime, principal: str | None = None) -> float:
        async with self._db.read() as connection:
            (row,) = await _fetchall(
                connection,
                "SELECT coalesce(sum(cost_usd), 0) AS spent FROM request_log"
                " WHERE organisation = ? AND create_time >= ? AND NOT cache_hit AND (? IS NULL OR principal = ?)",
                (require_organisation(organisation), _us(start_time), principal, principal),
            )
        return float(row["spent"])

    async def summarise(self, organisation: str, start_time: datetime, end_time: datetime) -> RequestSummary:
        window = (require_organisation(organisation), _us(start_time), _us(end_time))
        async with self._db.read() as connection:  # totals and deployments from one snapshot
            (totals,) = await _fetchall(connection, _SUMMARY_TOTALS, window)
            deployments = await _fetchall(connection, _SUMMARY_DEPLOYMENTS, window)
        return request_summary(totals, deployments)


# Users and API keys ---------------------------------------------------------


def _user(row: sqlite3.Row, prefix: str = "") -> User:
    return User(
        id=row[f"{prefix}id"],
        organisation=row[f"{prefix}organisation"],
        email=row[f"{prefix}email"],
        role=UserRole(row[f"{prefix}role"]),
        display_name=row[f"{prefix}display_name"],
        create_time=_time(row[f"{prefix}create_time"]),
    )


def _api_key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        organisation=row["organisation"],
        user_id=row["user_id"],
        display_name=row["display_name"],
        create_time=_time(row["create_time"]),
        expire_time=_time_or_none(row["expire_time"]),
        revoke_time=_time_or_none(row["revoke_time"]),
        last_used_time=_time_or_none(row["last_used_time"]),
    )


class SqliteUserStore:
    def __init__(self, database: SqliteDatabase, clock: Clock) -> None:
        self._db = database
        self._clock = clock

    async def create_user(self, user: User) -> User:
        now = self._clock()
        user = replace(user, id=user.id or secrets.token_hex(8), email=normalise_email(user.email), create_time=now)
        async with self._db.write() as connection:
            try:
                await connection.execute(
                    "INSERT INTO users (organisation, id, email, display_name, role, create_time)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        require_organisation(user.organisation),
                        user.id,
                        user.email,
                        user.display_name,
                        user.role.value,
                        _us(now),
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(
                    "a user with this id or email already exists", reason="USER_ALREADY_EXISTS"
                ) from None
        return user

    async def get_user(self, organisation: str, user_id: str) -> User:
        row = await self._db.fetchone(
            "SELECT * FROM users WHERE organisation = ? AND id = ?", (require_organisation(organisation), user_id)
        )
        if row is None:
            raise user_not_found(user_id)
        return _user(row)

    async def find_user_by_email(self, organisation: str, email: str) -> User:
        row = await self._db.fetchone(
            "SELECT * FROM users WHERE organisation = ? AND email = ?",
            (require_organisation(organisation), normalise_email(email)),
        )
        if row is None:
            raise user_not_found_by_email()
        return _user(row)

    async def list_users(self, organisation: str) -> list[User]:
        rows = await self._db.fetchall(
            "SELECT * FROM users WHERE organisation = ? ORDER BY create_time, id", (require_organisation(organisation),)
        )
        return [_user(row) for row in rows]

    async def set_user_role(self, organisation: str, user_id: str, role: UserRole) -> User:
        async with self._db.write() as connection:
            rows = await _fetchall(
                connection,
                "UPDATE users SET role = ? WHERE organisation = ? AND id = ? RETURNING *",
                (role.value, require_organisation(organisation), user_id),
            )
        if not rows:
            raise user_not_found(user_id)
        return _user(rows[0])

    async def delete_user(self, organisation: str, user_id: str) -> User:
        async with self._db.write() as connection:
            rows = await _fetchall(
                connection,
                "DELETE FROM users WHERE organisation = ? AND id = ? RETURNING *",
                (require_organisation(organisation), user_id),
            )
        if not rows:
            raise user_not_found(user_id)
        return _user(rows[0])

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
        async with self._db.write() as connection:
            try:
                await connection.execute(
                    "INSERT INTO api_keys (id, organisation, user_id, display_name, key_sha256, create_time,"
                    " expire_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        key.id,
                        key.organisation,
                        key.user_id,
                        key.display_name,
                        api_key_digest(plaintext),
                        _us(key.create_time),
                        _us_or_none(key.expire_time),
                    ),
                )
            except sqlite3.IntegrityError:
                # The foreign key: no such user in this organisation.
                raise user_not_found(user_id) from None
        return key, plaintext

    async def list_api_keys(self, organisation: str, user_id: str | None = None) -> list[ApiKey]:
        sql = "SELECT * FROM api_keys WHERE organisation = ?"
        params: list[Any] = [require_organisation(organisation)]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        rows = await self._db.fetchall(sql + " ORDER BY create_time, id", params)
        return [_api_key(row) for row in rows]

    async def revoke_api_key(self, organisation: str, key_id: str) -> ApiKey:
        async with self._db.write() as connection:
            rows = await _fetchall(
                connection,
                "UPDATE api_keys SET revoke_time = coalesce(revoke_time, ?)"
                " WHERE organisation = ? AND id = ? RETURNING *",
                (_us(self._clock()), require_organisation(organisation), key_id),
            )
        if not rows:
            raise api_key_not_found(key_id)
        return _api_key(rows[0])

    async def revoke_token(self, organisation: str, token_sha256: str, expire_time: datetime) -> None:
        async with self._db.write() as connection:
            await connection.execute(
                "INSERT INTO revoked_tokens (token_sha256, organisation, expire_time, revoke_time)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (token_sha256) DO NOTHING",
                (token_sha256, require_organisation(organisation), _us(expire_time), _us(self._clock())),
            )

    async def revoked_tokens(self) -> dict[str, datetime]:
        async with self._db.write() as connection:
            await connection.execute("DELETE FROM revoked_tokens WHERE expire_time <= ?", (_us(self._clock()),))
            rows = await _fetchall(connection, "SELECT token_sha256, expire_time FROM revoked_tokens", ())
        return {row["token_sha256"]: _time(row["expire_time"]) for row in rows}

    async def verify_api_key(self, plaintext: str) -> VerifiedKey | None:
        key_id = api_key_id(plaintext)
        if key_id is None:
            return None
        row = await self._db.fetchone(
            "SELECT k.*, u.id AS u_id, u.organisation AS u_organisation, u.email AS u_email, u.role AS u_role,"
            " u.display_name AS u_display_name, u.create_time AS u_create_time, k.key_sha256 AS digest"
            " FROM api_keys k JOIN users u ON u.organisation = k.organisation AND u.id = k.user_id"
            " WHERE k.id = ?",
            (key_id,),
        )
        if row is None or not hmac.compare_digest(row["digest"], api_key_digest(plaintext)):
            return None
        key = _api_key(row)
        now = self._clock()
        if key.revoke_time is not None or (key.expire_time is not None and key.expire_time <= now):
            return None
        if key.last_used_time is None or now - key.last_used_time >= LAST_USED_RESOLUTION:
            async with self._db.write() as connection:
                await connection.execute("UPDATE api_keys SET last_used_time = ? WHERE id = ?", (_us(now), key.id))
            key = replace(key, last_used_time=now)
        return VerifiedKey(key, _user(row, "u_"))


# Registry instances ---------------------------------------------------------


def _instance(row: sqlite3.Row) -> Instance:
    return Instance(
        instance_id=row["instance_id"],
        organisation=row["organisation"],
        address=row["address"],
        version=row["version"],
        models=tuple(json.loads(row["models"])),
        labels=dict(json.loads(row["labels"])),
        register_time=_time(row["register_time"]),
        lease_expire_time=_time(row["lease_expire_time"]),
    )


def _instances(rows: Iterable[sqlite3.Row]) -> list[Instance]:
    return [_instance(row) for row in rows]


class SqliteInstanceStore:
    def __init__(self, database: SqliteDatabase, clock: Clock) -> None:
        self._db = database
        self._clock = clock

    async def register_instance(self, instance: Instance, lease_seconds: float) -> tuple[Instance, bool]:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        now = self._clock()
        expire = now + timedelta(seconds=lease_seconds)
        instance = replace(instance, register_time=now, lease_expire_time=expire)
        async with self._db.write() as connection:
            rows = await _fetchall(
                connection,
                "SELECT lease_expire_time FROM instances WHERE organisation = ? AND instance_id = ?",
                (require_organisation(instance.organisation), instance.instance_id),
            )
            new = not rows or rows[0][0] <= _us(now)
            await connection.execute(
                "INSERT INTO instances (organisation, instance_id, address, version, models, labels, lease_seconds,"
                " register_time, lease_expire_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (organisation, instance_id) DO UPDATE SET address = excluded.address,"
                " version = excluded.version, models = excluded.models, labels = excluded.labels,"
                " lease_seconds = excluded.lease_seconds, register_time = excluded.register_time,"
                " lease_expire_time = excluded.lease_expire_time",
                (
                    instance.organisation,
                    instance.instance_id,
                    instance.address,
                    instance.version,
                    json.dumps(list(instance.models)),
                    json.dumps(instance.labels),
                    lease_seconds,
                    _us(now),
                    _us(expire),
                ),
            )
        return instance, new

    async def renew_lease(self, organisation: str, instance_id: str) -> Instance:
        now = _us(self._clock())
        async with self._db.write() as connection:
            rows = await _fetchall(
                connection,
                "UPDATE instances SET lease_expire_time = ? + CAST(lease_seconds * 1000000 AS INTEGER)"
                " WHERE organisation = ? AND instance_id = ? AND lease_expire_time > ? RETURNING *",
                (now, require_organisation(organisation), instance_id, now),
            )
        if not rows:
            raise instance_not_found(instance_id)
        return _instance(rows[0])

    async def get_instance(self, organisation: str, instance_id: str) -> Instance:
        row = await self._db.fetchone(
            "SELECT * FROM instances WHERE organisation = ? AND instance_id = ? AND lease_expire_time > ?",
            (require_organisation(organisation), instance_id, _us(self._clock())),
        )
        if row is None:
            raise instance_not_found(instance_id)
        return _instance(row)

    async def list_instances(self, organisation: str) -> list[Instance]:
        rows = await self._db.fetchall(
            "SELECT * FROM instances WHERE organisation = ? AND lease_expire_time > ? ORDER BY instance_id",
            (require_organisation(organisation), _us(self._clock())),
        )
        return _instances(rows)

    async def delete_instance(self, organisation: str, instance_id: str) -> Instance:
        now = _us(self._clock())
        async with self._db.write() as connection:
            rows = await _fetchall(
                connection,
                "DELETE FROM instances WHERE organisation = ? AND instance_id = ? AND lease_expire_time > ?"
                " RETURNING *",
                (require_organisation(organisation), instance_id, now),
            )
        # A lapsed lease is gone already, as far as callers can tell; its row
        # stays for the reaper, which announces it as expired.
        if not rows:
            raise instance_not_found(instance_id)
        return _instance(rows[0])

    async def expire_lapsed(self) -> list[Instance]:
        # Across organisations: the reaper is the system's, not a tenant's.
        async with self._db.write() as connection:
            rows = await _fetchall(
                connection,
                "DELETE FROM instances WHERE lease_expire_time <= ? RETURNING *",
                (_us(self._clock()),),
            )
        return sorted(_instances(rows), key=lambda i: (i.organisation, i.instance_id))

    async def next_lease_expiry(self) -> datetime | None:
        row = await self._db.fetchone("SELECT min(lease_expire_time) FROM instances")
        return None if row is None else _time_or_none(row[0])
