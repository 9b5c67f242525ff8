"""The durable stores, written once over a `Database` (dialects.py): SQLite by
default, PostgreSQL when DATABASE_URL names one. Statements use `?`
placeholders; what the two spell differently comes from the dialect."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from ...domain.broadcast import Broadcaster
from ...domain.chat import RouteDecision
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
    SpendGroup,
    SpendGroups,
    StoredApiKey,
    User,
    UserRole,
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
from .dialects import Database, DuplicateRow, Kind, MissingParent, Row, Table, read_time_or_none, time_or_none
from .rows import category_counts, check_page_size, normalise_email, request_summary

Clock = Callable[[], datetime]
Entry = TypeVar("Entry")


class _Where:
    """AND-ed conditions and their parameters, in order."""

    def __init__(self, clause: str, value: Any) -> None:
        self.clauses = [clause]
        self.params = [value]

    def add(self, clause: str, *values: Any) -> None:
        self.clauses.append(clause)
        self.params.extend(values)

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


async def _page(
    db: Database, table: str, where: _Where, page_size: int, read: Callable[[Row], Any]
) -> tuple[list[Any], str | None]:
    """One page newest first, and the id to continue after (None at the end)."""
    size = check_page_size(page_size)
    rows = await db.fetch(f"SELECT * FROM {table} WHERE {where.sql} ORDER BY id DESC LIMIT ?", *where.params, size + 1)
    page = [read(row) for row in rows[:size]]
    return page, (page[-1].id if len(rows) > size else None)


class _AppendOnlyLog(Generic[Entry]):
    """An organisation's records, written in batches, never updated, paged newest
    first and deleted oldest first by retention: the decisions and the request log."""

    table: Table

    def __init__(self, database: Database) -> None:
        self._db = database

    def new_id(self) -> str:
        return new_record_id()

    async def record(self, entry: Entry) -> None:
        await self.record_many((entry,))

    async def record_many(self, entries: Sequence[Entry]) -> None:
        if entries:
            await self._db.insert_new(self.table, self._rows(entries))

    def _rows(self, entries: Sequence[Entry]) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _page_filter(
        self, organisation: str, after_id: str | None, start_time: datetime | None, end_time: datetime | None
    ) -> _Where:
        """The conditions every page shares: the organisation, the cursor, the time window."""
        conditions = _Where("organisation = ?", require_organisation(organisation))
        if after_id is not None:
            conditions.add("id < ?", after_id)
        if start_time is not None:
            conditions.add("create_time >= ?", self._db.time(start_time))
        if end_time is not None:
            conditions.add("create_time < ?", self._db.time(end_time))
        return conditions

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        db = self._db
        return await db.execute(db.delete_oldest.format(table=self.table.name), db.time(cutoff), limit)


# Rules ----------------------------------------------------------------------


def _rule(db: Database, row: Row) -> Rule:
    return Rule(
        id=row["id"],
        organisation=row["organisation"],
        kind=RuleKind(row["kind"]),
        match_type=MatchType(row["match_type"]),
        pattern=row["pattern"],
        keywords=db.read_words(row["keywords"]),
        description=row["description"],
        enabled=bool(row["enabled"]),
        scope=RuleScope(row["scope"]),
        create_time=db.read_time(row["create_time"]),
        update_time=db.read_time(row["update_time"]),
        examples=db.read_words(row["examples"]),
        threshold=float(row["threshold"]),
    )


_BUMP_RULE_VERSION = (
    "INSERT INTO rule_versions (organisation, version) VALUES (?, 1)"
    " ON CONFLICT (organisation) DO UPDATE SET version = rule_versions.version + 1 RETURNING version"
)


class SqlRuleStore:
    def __init__(self, database: Database, clock: Clock) -> None:
        self._db = database
        self._clock = clock
        self._versions: dict[str, int] = {}
        self.changes: Broadcaster[RuleChange] = Broadcaster()

    def version(self, organisation: str) -> int:
        return self._versions.get(organisation, 0)

    def _observed(self, organisation: str, version: int) -> None:
        self._versions[organisation] = max(version, self.version(organisation))

    def _changed(self, kind: str, rule: Rule, version: int) -> Rule:
        # The version was bumped in the change's transaction; announce it after commit.
        self._observed(rule.organisation, version)
        self.changes.publish(RuleChange(kind, rule))
        return rule

    async def rules_version(self, organisation: str) -> int:
        row = await self._db.fetchrow(
            "SELECT version FROM rule_versions WHERE organisation = ?", require_organisation(organisation)
        )
        version = 0 if row is None else int(row[0])
        self._observed(organisation, version)
        return version

    async def create_rule(self, rule: Rule) -> Rule:
        now = self._clock()
        rule = rule.with_changes(id=rule.id or new_rule_id(), create_time=now, update_time=now)
        db = self._db
        async with db.transaction() as tx:
            try:
                await tx.execute(
                    "INSERT INTO rules (organisation, id, kind, match_type, pattern, keywords, description,"
                    " enabled, scope, create_time, update_time, examples, threshold)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    require_organisation(rule.organisation),
                    rule.id,
                    rule.kind.value,
                    rule.match_type.value,
                    rule.pattern,
                    db.words(rule.keywords),
                    rule.description,
                    rule.enabled,
                    rule.scope.value,
                    db.time(now),
                    db.time(now),
                    db.words(rule.examples),
                    rule.threshold,
                )
            except DuplicateRow:
                raise AlreadyExists(f"rule '{rule.name}' already exists", reason="RULE_ALREADY_EXISTS") from None
            (bumped,) = await tx.execute_returning(_BUMP_RULE_VERSION, rule.organisation)
        return self._changed(RuleChangeType.CREATED, rule, bumped[0])

    async def get_rule(self, organisation: str, rule_id: str) -> Rule:
        row = await self._db.fetchrow(
            "SELECT * FROM rules WHERE organisation = ? AND id = ?", require_organisation(organisation), rule_id
        )
        if row is None:
            raise rule_not_found(rule_id)
        return _rule(self._db, row)

    async def list_rules(self, organisation: str) -> list[Rule]:
        rows = await self._db.fetch(
            "SELECT * FROM rules WHERE organisation = ? ORDER BY seq", require_organisation(organisation)
        )
        return [_rule(self._db, row) for row in rows]

    async def update_rule(self, rule: Rule) -> Rule:
        db = self._db
        async with db.transaction() as tx:
            rows = await tx.execute_returning(
                "UPDATE rules SET kind = ?, match_type = ?, pattern = ?, keywords = ?, description = ?,"
                " enabled = ?, scope = ?, update_time = ?, examples = ?, threshold = ?"
                " WHERE organisation = ? AND id = ? RETURNING *",
                rule.kind.value,
                rule.match_type.value,
                rule.pattern,
                db.words(rule.keywords),
                rule.description,
                rule.enabled,
                rule.scope.value,
                db.time(self._clock()),
                db.words(rule.examples),
                rule.threshold,
                require_organisation(rule.organisation),
                rule.id,
            )
            if not rows:
                raise rule_not_found(rule.id)
            (bumped,) = await tx.execute_returning(_BUMP_RULE_VERSION, rule.organisation)
        return self._changed(RuleChangeType.UPDATED, _rule(db, rows[0]), bumped[0])

    async def delete_rule(self, organisation: str, rule_id: str) -> Rule:
        async with self._db.transaction() as tx:
            rows = await tx.execute_returning(
                "DELETE FROM rules WHERE organisation = ? AND id = ? RETURNING *",
                require_organisation(organisation),
                rule_id,
            )
            if not rows:
                raise rule_not_found(rule_id)
            (bumped,) = await tx.execute_returning(_BUMP_RULE_VERSION, organisation)
        return self._changed(RuleChangeType.DELETED, _rule(self._db, rows[0]), bumped[0])


# Decisions ------------------------------------------------------------------

DECISIONS = Table(
    "decisions",
    (
        ("organisation", Kind.TEXT),
        ("id", Kind.TEXT),
        ("create_time", Kind.TIME),
        ("principal", Kind.TEXT),
        ("direction", Kind.TEXT),
        ("action", Kind.TEXT),
        ("categories", Kind.TAGS),
        ("findings", Kind.JSON),
        ("content_sha256", Kind.TEXT),
        ("request_id", Kind.TEXT),
        ("details", Kind.JSON),
    ),
)
_KNOWN_CATEGORIES = json.dumps([c.value for c in Category])


def decision_rows(db: Database, decisions: Iterable[Decision]) -> list[tuple[Any, ...]]:
    return [
        (
            require_organisation(d.organisation),
            d.id,
            db.time(d.create_time),
            d.principal,
            d.direction.value,
            d.action.value,
            db.tags(decision_categories(d)),
            findings_to_json(d.findings),
            d.content_sha256,
            d.request_id,
            decision_details_to_json(d),
        )
        for d in decisions
    ]


def _decision(db: Database, row: Row) -> Decision:
    return dataclass_from_plain(
        Decision,
        json.loads(row["details"]),
        id=row["id"],
        create_time=db.read_time(row["create_time"]),
        organisation=row["organisation"],
        principal=row["principal"],
        direction=Direction(row["direction"]),
        action=Action(row["action"]),
        findings=findings_from_json(row["findings"]),
        content_sha256=row["content_sha256"],
        request_id=row["request_id"],
    )


class SqlDecisionStore(_AppendOnlyLog[Decision]):
    table = DECISIONS

    def _rows(self, entries: Sequence[Decision]) -> list[tuple[Any, ...]]:
        return decision_rows(self._db, entries)

    async def list_decisions(
        self, organisation: str, where: DecisionFilter, page_size: int, after_id: str | None
    ) -> tuple[list[Decision], str | None]:
        db = self._db
        conditions = self._page_filter(organisation, after_id, where.start_time, where.end_time)
        if where.action is not None:
            conditions.add("action = ?", where.action.value)
        if where.direction is not None:
            conditions.add("direction = ?", where.direction.value)
        if where.category is not None:
            conditions.add(*db.has_tag("categories", where.category.value))
        return await _page(db, "decisions", conditions, page_size, lambda row: _decision(db, row))

    async def count_by_category(
        self, organisation: str, start_time: datetime, end_time: datetime
    ) -> list[CategoryCount]:
        db = self._db
        rows = await db.fetch(
            db.count_by_tag.format(categories=_KNOWN_CATEGORIES),
            require_organisation(organisation),
            db.time(start_time),
            db.time(end_time),
        )
        return category_counts(rows)


# Request log ----------------------------------------------------------------

REQUEST_LOG = Table(
    "request_log",
    (
        ("organisation", Kind.TEXT),
        ("id", Kind.TEXT),
        ("create_time", Kind.TIME),
        ("request_id", Kind.TEXT),
        ("principal", Kind.TEXT),
        ("model", Kind.TEXT),
        ("deployment", Kind.TEXT),
        ("status_code", Kind.TEXT),
        ("input_tokens", Kind.INTEGER),
        ("output_tokens", Kind.INTEGER),
        ("latency_ms", Kind.REAL),
        ("time_to_first_token_ms", Kind.REAL),
        ("cache_hit", Kind.BOOLEAN),
        ("cost_usd", Kind.REAL),
        ("semantic_cache_hit", Kind.BOOLEAN),
        ("end_user_id", Kind.TEXT),
        ("tags", Kind.JSON),
        ("route_class", Kind.TEXT),
        ("routed_model", Kind.TEXT),
        ("route_decision", Kind.TEXT),
    ),
)

# One window of one organisation's calls.
_REQUESTS_IN_WINDOW = "FROM request_log WHERE organisation = ? AND create_time >= ? AND create_time < ?"

_SUMMARY_TOTALS = f"""
SELECT count(*) AS requests,
       count(*) FILTER (WHERE status_code <> 'OK') AS failed_requests,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       count(*) FILTER (WHERE cache_hit) AS cache_hits,
       coalesce(sum(input_tokens + output_tokens) FILTER (WHERE cache_hit), 0) AS tokens_saved,
       coalesce(sum(cost_usd) FILTER (WHERE NOT cache_hit), 0) AS cost_usd,
       coalesce(sum(cost_usd) FILTER (WHERE cache_hit), 0) AS cost_saved_usd,
       count(*) FILTER (WHERE semantic_cache_hit) AS semantic_cache_hits,
       coalesce(sum(input_tokens + output_tokens) FILTER (WHERE semantic_cache_hit), 0) AS semantic_tokens_saved,
       coalesce(sum(cost_usd) FILTER (WHERE semantic_cache_hit), 0) AS semantic_cost_saved_usd,
       count(*) FILTER (WHERE NOT cache_hit AND deployment <> '') AS llm_calls,
       coalesce(avg(latency_ms), 0) AS average_latency_ms
{_REQUESTS_IN_WINDOW}
"""


def _request(db: Database, row: Row) -> RequestRecord:
    return RequestRecord(
        id=row["id"],
        create_time=db.read_time(row["create_time"]),
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
        semantic_cache_hit=bool(row["semantic_cache_hit"]),
        end_user_id=row["end_user_id"],
        tags=json.loads(row["tags"]),
        route_class=row["route_class"],
        routed_model=row["routed_model"],
        route_decision=_route_decision(row["route_decision"]),
    )


def _route_decision(text: str) -> RouteDecision | None:
    # One a newer version wrote and this one does not know reads as none said.
    try:
        return RouteDecision(text) if text else None
    except ValueError:
        return None


# One group's figures, as SpendGroup holds them.
_GROUP_FIGURES = """count(*) AS requests,
       count(*) FILTER (WHERE status_code <> 'OK') AS failed_requests,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       count(*) FILTER (WHERE cache_hit) AS cache_hits,
       coalesce(sum(cost_usd) FILTER (WHERE NOT cache_hit), 0) AS cost_usd"""


def _spend_group(row: Row, router: str = "") -> SpendGroup:
    return SpendGroup(
        router=router,
        tag_key=row["tag_key"],
        value=row["value"],
        requests=row["requests"],
        failed_requests=row["failed_requests"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cache_hits=row["cache_hits"],
        cost_usd=float(row["cost_usd"]),
    )


class SqlRequestLog(_AppendOnlyLog[RequestRecord]):
    table = REQUEST_LOG

    def _rows(self, entries: Sequence[RequestRecord]) -> list[tuple[Any, ...]]:
        time = self._db.time
        return [
            (
                require_organisation(e.organisation),
                e.id,
                time(e.create_time),
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
                e.semantic_cache_hit,
                e.end_user_id,
                json.dumps(e.tags, ensure_ascii=False, sort_keys=True),
                e.route_class,
                e.routed_model,
                e.route_decision.value if e.route_decision is not None else "",
            )
            for e in entries
        ]

    async def list_requests(
        self, organisation: str, where: RequestFilter, page_size: int, after_id: str | None
    ) -> tuple[list[RequestRecord], str | None]:
        db = self._db
        conditions = self._page_filter(organisation, after_id, where.start_time, where.end_time)
        for column, value in (
            ("model", where.model),
            ("principal", where.principal),
            ("status_code", where.status_code),
            ("route_class", where.route_class),
        ):
            if value is not None:
                conditions.add(f"{column} = ?", value)
        if where.end_user_id is not None:
            conditions.add("end_user_id = ?", where.end_user_id)
        for key, value in where.tags.items():
            clause, params = db.has_entry("tags", key, value)
            conditions.add(clause, *params)
        return await _page(db, "request_log", conditions, page_size, lambda row: _request(db, row))

    async def cost_since(self, organisation: str, start_time: datetime, principal: str | None = None) -> float:
        conditions = _Where("organisation = ?", require_organisation(organisation))
        conditions.add("create_time >= ?", self._db.time(start_time))
        if principal is not None:
            conditions.add("principal = ?", principal)
        row = await self._db.fetchrow(
            f"SELECT coalesce(sum(cost_usd), 0) FROM request_log WHERE {conditions.sql} AND NOT cache_hit",
            *conditions.params,
        )
        assert row is not None  # an aggregate always returns its row
        return float(row[0])

    async def summarise(self, organisation: str, start_time: datetime, end_time: datetime) -> RequestSummary:
        db = self._db
        window = (require_organisation(organisation), db.time(start_time), db.time(end_time))
        deployments_sql = (
            db.deployment_percentiles.format(window=f"{_REQUESTS_IN_WINDOW} AND NOT cache_hit AND deployment <> ''")
            + f" ORDER BY requests DESC, deployment{db.binary_order}"
        )
        async with db.snapshot() as snapshot:  # totals and deployments from one snapshot
            totals = await snapshot.fetchrow(_SUMMARY_TOTALS, *window)
            deployments = await snapshot.fetch(deployments_sql, *window)
        return request_summary(totals, deployments)

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
        db = self._db
        window = (require_organisation(organisation), db.time(start_time), db.time(end_time))
        # Costliest, then busiest, then by name: the same order on every replica.
        order = " ORDER BY cost_usd DESC, requests DESC, {names} LIMIT ?"
        binary = db.binary_order
        tags: list[Row] = []
        end_users: list[Row] = []
        route_classes: list[Row] = []
        async with db.snapshot() as snapshot:  # every list from one snapshot
            if tag_keys:
                keys = ", ".join("?" for _ in tag_keys)
                tags = await snapshot.fetch(
                    f"SELECT entry.key AS tag_key, entry.value AS value, {_GROUP_FIGURES}"
                    f" FROM request_log, {db.json_entries.format(column='request_log.tags')}"
                    f" WHERE organisation = ? AND create_time >= ? AND create_time < ? AND tags <> '{{}}'"
                    f" AND entry.key IN ({keys}) GROUP BY entry.key, entry.value"
                    + order.format(names=f"entry.key{binary}, entry.value{binary}"),
                    *window,
                    *tag_keys,
                    limit + 1,
                )
            if by_end_user:
                end_users = await snapshot.fetch(
                    f"SELECT '' AS tag_key, end_user_id AS value, {_GROUP_FIGURES}"
                    f" {_REQUESTS_IN_WINDOW} AND end_user_id <> '' GROUP BY end_user_id"
                    + order.format(names=f"end_user_id{binary}"),
                    *window,
                    limit + 1,
                )
            if by_route_class:
                # Class names are the router's own: grouped by router alias and class.
                route_classes = await snapshot.fetch(
                    f"SELECT model AS router, '' AS tag_key, route_class AS value, {_GROUP_FIGURES}"
                    f" {_REQUESTS_IN_WINDOW} AND route_class <> '' GROUP BY model, route_class"
                    + order.format(names=f"model{binary}, route_class{binary}"),
                    *window,
                    limit + 1,
                )
        return SpendGroups(
            tags=tuple(_spend_group(row) for row in tags[:limit]),
            end_users=tuple(_spend_group(row) for row in end_users[:limit]),
            route_classes=tuple(_spend_group(row, row["router"]) for row in route_classes[:limit]),
            truncated=len(tags) > limit or len(end_users) > limit or len(route_classes) > limit,
        )


# Users and API keys ---------------------------------------------------------

_KEY_WITH_USER = (
    "SELECT k.*, u.id AS u_id, u.organisation AS u_organisation, u.email AS u_email, u.role AS u_role,"
    " u.display_name AS u_display_name, u.create_time AS u_create_time"
    " FROM api_keys k JOIN users u ON u.organisation = k.organisation AND u.id = k.user_id WHERE k.id = ?"
)


def _user(db: Database, row: Row, prefix: str = "") -> User:
    return User(
        id=row[f"{prefix}id"],
        organisation=row[f"{prefix}organisation"],
        email=row[f"{prefix}email"],
        role=UserRole(row[f"{prefix}role"]),
        display_name=row[f"{prefix}display_name"],
        create_time=db.read_time(row[f"{prefix}create_time"]),
    )


def _api_key(db: Database, row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        organisation=row["organisation"],
        user_id=row["user_id"],
        display_name=row["display_name"],
        create_time=db.read_time(row["create_time"]),
        expire_time=read_time_or_none(db, row["expire_time"]),
        revoke_time=read_time_or_none(db, row["revoke_time"]),
        last_used_time=read_time_or_none(db, row["last_used_time"]),
    )


class SqlUserStore:
    """Users, their API keys' rows and revoked tokens. Minting and checking
    keys is auth's job (`auth/api_keys.py`): this store never sees a key."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self._db = database
        self._clock = clock

    async def create_user(self, user: User) -> User:
        now = self._clock()
        user = replace(user, id=user.id or secrets.token_hex(8), email=normalise_email(user.email), create_time=now)
        try:
            await self._db.execute(
                "INSERT INTO users (organisation, id, email, display_name, role, create_time)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                require_organisation(user.organisation),
                user.id,
                user.email,
                user.display_name,
                user.role.value,
                self._db.time(now),
            )
        except DuplicateRow:
            raise AlreadyExists("a user with this id or email already exists", reason="USER_ALREADY_EXISTS") from None
        return user

    async def _one_user(self, sql: str, *params: Any) -> User | None:
        row = await self._db.fetchrow(sql, *params)
        return None if row is None else _user(self._db, row)

    async def get_user(self, organisation: str, user_id: str) -> User:
        sql = "SELECT * FROM users WHERE organisation = ? AND id = ?"
        user = await self._one_user(sql, require_organisation(organisation), user_id)
        if user is None:
            raise user_not_found(user_id)
        return user

    async def find_user_by_email(self, organisation: str, email: str) -> User:
        sql = "SELECT * FROM users WHERE organisation = ? AND email = ?"
        user = await self._one_user(sql, require_organisation(organisation), normalise_email(email))
        if user is None:
            raise user_not_found_by_email()
        return user

    async def list_users(self, organisation: str) -> list[User]:
        rows = await self._db.fetch(
            "SELECT * FROM users WHERE organisation = ? ORDER BY create_time, id", require_organisation(organisation)
        )
        return [_user(self._db, row) for row in rows]

    async def _changed_user(self, sql: str, organisation: str, user_id: str, *params: Any) -> User:
        rows = await self._db.execute_returning(sql, *params, require_organisation(organisation), user_id)
        if not rows:
            raise user_not_found(user_id)
        return _user(self._db, rows[0])

    async def set_user_role(self, organisation: str, user_id: str, role: UserRole) -> User:
        sql = "UPDATE users SET role = ? WHERE organisation = ? AND id = ? RETURNING *"
        return await self._changed_user(sql, organisation, user_id, role.value)

    async def delete_user(self, organisation: str, user_id: str) -> User:
        sql = "DELETE FROM users WHERE organisation = ? AND id = ? RETURNING *"
        return await self._changed_user(sql, organisation, user_id)

    async def add_api_key(self, key: ApiKey, key_sha256: str) -> ApiKey:
        db = self._db
        try:
            await db.execute(
                "INSERT INTO api_keys (id, organisation, user_id, display_name, key_sha256, create_time, expire_time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                key.id,
                require_organisation(key.organisation),
                key.user_id,
                key.display_name,
                key_sha256,
                db.time(key.create_time),
                time_or_none(db, key.expire_time),
            )
        except MissingParent:
            raise user_not_found(key.user_id) from None
        return key

    async def find_api_key(self, key_id: str) -> StoredApiKey | None:
        row = await self._db.fetchrow(_KEY_WITH_USER, key_id)
        if row is None:
            return None
        return StoredApiKey(_api_key(self._db, row), row["key_sha256"], _user(self._db, row, "u_"))

    async def touch_api_key(self, key_id: str, used_time: datetime) -> None:
        await self._db.execute("UPDATE api_keys SET last_used_time = ? WHERE id = ?", self._db.time(used_time), key_id)

    async def list_api_keys(self, organisation: str, user_id: str | None = None) -> list[ApiKey]:
        conditions = _Where("organisation = ?", require_organisation(organisation))
        if user_id is not None:
            conditions.add("user_id = ?", user_id)
        rows = await self._db.fetch(
            f"SELECT * FROM api_keys WHERE {conditions.sql} ORDER BY create_time, id", *conditions.params
        )
        return [_api_key(self._db, row) for row in rows]

    async def revoke_api_key(self, organisation: str, key_id: str) -> ApiKey:
        rows = await self._db.execute_returning(
            "UPDATE api_keys SET revoke_time = coalesce(revoke_time, ?) WHERE organisation = ? AND id = ? RETURNING *",
            self._db.time(self._clock()),
            require_organisation(organisation),
            key_id,
        )
        if not rows:
            raise api_key_not_found(key_id)
        return _api_key(self._db, rows[0])

    async def revoke_token(self, organisation: str, token_sha256: str, expire_time: datetime) -> None:
        await self._db.execute(
            "INSERT INTO revoked_tokens (token_sha256, organisation, expire_time, revoke_time)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (token_sha256) DO NOTHING",
            token_sha256,
            require_organisation(organisation),
            self._db.time(expire_time),
            self._db.time(self._clock()),
        )

    async def revoked_tokens(self) -> dict[str, datetime]:
        db = self._db
        async with db.transaction() as tx:
            await tx.execute("DELETE FROM revoked_tokens WHERE expire_time <= ?", db.time(self._clock()))
            rows = await tx.fetch("SELECT token_sha256, expire_time FROM revoked_tokens")
        return {row["token_sha256"]: db.read_time(row["expire_time"]) for row in rows}


# Registry instances ---------------------------------------------------------


def _instance(db: Database, row: Row) -> Instance:
    return Instance(
        instance_id=row["instance_id"],
        organisation=row["organisation"],
        address=row["address"],
        version=row["version"],
        models=db.read_words(row["models"]),
        labels=dict(json.loads(row["labels"])),
        register_time=db.read_time(row["register_time"]),
        lease_expire_time=db.read_time(row["lease_expire_time"]),
    )


class SqlInstanceStore:
    def __init__(self, database: Database, clock: Clock) -> None:
        self._db = database
        self._clock = clock

    def _instances(self, rows: Iterable[Row]) -> list[Instance]:
        return [_instance(self._db, row) for row in rows]

    async def register_instance(self, instance: Instance, lease_seconds: float) -> tuple[Instance, bool]:
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        db = self._db
        now = self._clock()
        expire = now + timedelta(seconds=lease_seconds)
        instance = replace(instance, register_time=now, lease_expire_time=expire)
        async with db.transaction() as tx:
            previous = await tx.fetchrow(
                f"SELECT lease_expire_time FROM instances WHERE organisation = ? AND instance_id = ?{db.lock_row}",
                require_organisation(instance.organisation),
                instance.instance_id,
            )
            await tx.execute(
                "INSERT INTO instances (organisation, instance_id, address, version, models, labels, lease_seconds,"
                " register_time, lease_expire_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (organisation, instance_id) DO UPDATE SET address = excluded.address,"
                " version = excluded.version, models = excluded.models, labels = excluded.labels,"
                " lease_seconds = excluded.lease_seconds, register_time = excluded.register_time,"
                " lease_expire_time = excluded.lease_expire_time",
                instance.organisation,
                instance.instance_id,
                instance.address,
                instance.version,
                db.words(instance.models),
                json.dumps(instance.labels),
                lease_seconds,
                db.time(now),
                db.time(expire),
            )
        return instance, previous is None or db.read_time(previous[0]) <= now

    async def renew_lease(self, organisation: str, instance_id: str) -> Instance:
        now = self._db.time(self._clock())
        renewed = self._db.plus_seconds("?", "lease_seconds")
        rows = await self._db.execute_returning(
            f"UPDATE instances SET lease_expire_time = {renewed}"
            " WHERE organisation = ? AND instance_id = ? AND lease_expire_time > ? RETURNING *",
            now,
            require_organisation(organisation),
            instance_id,
            now,
        )
        if not rows:
            raise instance_not_found(instance_id)
        return _instance(self._db, rows[0])

    async def get_instance(self, organisation: str, instance_id: str) -> Instance:
        row = await self._db.fetchrow(
            "SELECT * FROM instances WHERE organisation = ? AND instance_id = ? AND lease_expire_time > ?",
            require_organisation(organisation),
            instance_id,
            self._db.time(self._clock()),
        )
        if row is None:
            raise instance_not_found(instance_id)
        return _instance(self._db, row)

    async def list_instances(self, organisation: str) -> list[Instance]:
        rows = await self._db.fetch(
            "SELECT * FROM instances WHERE organisation = ? AND lease_expire_time > ? ORDER BY instance_id",
            require_organisation(organisation),
            self._db.time(self._clock()),
        )
        return self._instances(rows)

    async def delete_instance(self, organisation: str, instance_id: str) -> Instance:
        # A lapsed lease is gone already, as far as callers can tell; its row
        # stays for the reaper, which announces it as expired.
        rows = await self._db.execute_returning(
            "DELETE FROM instances WHERE organisation = ? AND instance_id = ? AND lease_expire_time > ? RETURNING *",
            require_organisation(organisation),
            instance_id,
            self._db.time(self._clock()),
        )
        if not rows:
            raise instance_not_found(instance_id)
        return _instance(self._db, rows[0])

    async def expire_lapsed(self) -> list[Instance]:
        # Across organisations: the reaper is the system's, not a tenant's.
        # DELETE ... RETURNING hands each lapsed row to exactly one reaper.
        rows = await self._db.execute_returning(
            "DELETE FROM instances WHERE lease_expire_time <= ? RETURNING *", self._db.time(self._clock())
        )
        return sorted(self._instances(rows), key=lambda i: (i.organisation, i.instance_id))

    async def next_lease_expiry(self) -> datetime | None:
        row = await self._db.fetchrow("SELECT min(lease_expire_time) FROM instances")
        return None if row is None else read_time_or_none(self._db, row[0])
