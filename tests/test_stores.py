"""One conformance suite for the durable stores, run against the embedded
SQLite file and a real PostgreSQL: a database with a random name is created
for the run and dropped after. Each test works in organisations of its own."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest

from pointsman.server.auth import ApiKeys
from pointsman.server.backends.stores import (
    RequestFilter,
    RequestRecord,
    Stores,
    User,
    UserRole,
    open_stores,
)
from pointsman.server.backends.stores.codec import (
    dataclass_from_plain,
    dataclass_to_plain,
    findings_from_json,
    findings_to_json,
)
from pointsman.server.backends.stores.migrate import (
    Migration,
    MigrationError,
    load_migrations,
)
from pointsman.server.domain.errors import AlreadyExists, NotFound
from pointsman.server.domain.firewall.rules import MatchType, Rule, RuleKind, RuleScope
from pointsman.server.domain.firewall.verdict import Action, Category, Decision, Direction, Finding
from pointsman.server.domain.ports.stores import DecisionFilter, Instance, RuleChangeType

POSTGRES_ADMIN_URL = os.environ.get("POINTSMAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REPO = Path(__file__).resolve().parent.parent


def _database_url(name: str) -> str:
    parts = urlsplit(POSTGRES_ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def _fresh_postgres_database() -> AsyncIterator[str]:
    name = f"pointsman_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _database_url(name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    async with _fresh_postgres_database() as url:
        yield url


class FakeClock:
    """Moves 1 ms per reading (so records made one after another have distinct
    times) and jumps when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Backend:
    """Where one test's stores live, and a way to read their raw tables."""

    name: Literal["sqlite", "postgres"]
    url: str | None
    data_dir: Path

    async def open(self, clock: Callable[[], datetime] | None = None) -> Stores:
        if clock is None:
            return await open_stores(self.url, self.data_dir)
        return await open_stores(self.url, self.data_dir, clock=clock)

    async def raw_rows(self, sql: str) -> list[dict[str, Any]]:
        if self.url is None:
            with sqlite3.connect(self.data_dir / "pointsman.db") as connection:
                connection.row_factory = sqlite3.Row
                return [dict(row) for row in connection.execute(sql)]
        connection = await asyncpg.connect(self.url)
        try:
            return [dict(row) for row in await connection.fetch(sql)]
        finally:
            await connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", None, tmp_path)
    return Backend("postgres", request.getfixturevalue("postgres_url"), tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def stores(backend: Backend, clock: FakeClock) -> AsyncIterator[Stores]:
    opened = await backend.open(clock)
    yield opened
    await opened.aclose()


@pytest.fixture
def api_keys(stores: Stores, clock: FakeClock) -> ApiKeys:
    """Keys are minted and checked by auth, over the store's rows."""
    return ApiKeys(stores.users, clock)


@pytest.fixture
def org() -> str:
    return f"org-a-{secrets.token_hex(4)}"


@pytest.fixture
def other_org() -> str:
    return f"org-b-{secrets.token_hex(4)}"


# Rules ----------------------------------------------------------------------


def _rule(organisation: str, **changes: Any) -> Rule:
    rule = Rule(id="", organisation=organisation, kind=RuleKind.BLOCK, match_type=MatchType.SUBSTRING, pattern="x")
    return replace(rule, **changes)


async def test_rule_round_trips_every_field(stores: Stores, org: str) -> None:
    created = await stores.rules.create_rule(
        _rule(
            org,
            kind=RuleKind.ALLOW,
            match_type=MatchType.TOPIC,
            pattern="",
            keywords=("billing", "refund policy", "ünïcode"),
            description="topics support may discuss",
            enabled=False,
            scope=RuleScope.BOTH,
        )
    )
    assert created.id and created.create_time is not None and created.create_time == created.update_time
    assert await stores.rules.get_rule(org, created.id) == created
    assert await stores.rules.list_rules(org) == [created]


async def test_rules_list_in_creation_order(stores: Stores, org: str) -> None:
    created = [await stores.rules.create_rule(_rule(org, pattern=f"p{i}")) for i in range(5)]
    await stores.rules.update_rule(created[0].with_changes(pattern="changed"))
    assert [r.id for r in await stores.rules.list_rules(org)] == [r.id for r in created]


async def test_update_keeps_create_time_and_moves_update_time(stores: Stores, org: str) -> None:
    created = await stores.rules.create_rule(_rule(org, id="fixed-id", pattern="old"))
    updated = await stores.rules.update_rule(
        created.with_changes(pattern="new", match_type=MatchType.REGEX, scope=RuleScope.OUTPUT, create_time=None)
    )
    assert updated.id == "fixed-id"
    assert (updated.pattern, updated.match_type, updated.scope) == ("new", MatchType.REGEX, RuleScope.OUTPUT)
    assert updated.create_time == created.create_time
    assert updated.update_time is not None and created.update_time is not None
    assert updated.update_time > created.update_time
    assert await stores.rules.get_rule(org, "fixed-id") == updated


async def test_deleted_rule_is_gone(stores: Stores, org: str) -> None:
    created = await stores.rules.create_rule(_rule(org))
    assert await stores.rules.delete_rule(org, created.id) == created
    assert await stores.rules.list_rules(org) == []
    with pytest.raises(NotFound):
        await stores.rules.get_rule(org, created.id)


async def test_missing_rule_is_not_found_everywhere(stores: Stores, org: str) -> None:
    with pytest.raises(NotFound) as raised:
        await stores.rules.get_rule(org, "nope")
    assert raised.value.reason == "RULE_NOT_FOUND"
    with pytest.raises(NotFound):
        await stores.rules.update_rule(_rule(org, id="nope"))
    with pytest.raises(NotFound):
        await stores.rules.delete_rule(org, "nope")


async def test_duplicate_rule_id_already_exists(stores: Stores, org: str) -> None:
    await stores.rules.create_rule(_rule(org, id="seeded"))
    with pytest.raises(AlreadyExists):
        await stores.rules.create_rule(_rule(org, id="seeded", pattern="other"))
    assert [r.pattern for r in await stores.rules.list_rules(org)] == ["x"]


async def test_rule_version_moves_with_every_change_and_is_shared(backend: Backend, stores: Stores, org: str) -> None:
    assert await stores.rules.rules_version(org) == 0
    rule = await stores.rules.create_rule(_rule(org))
    assert await stores.rules.rules_version(org) == 1
    assert stores.rules.version(org) == 1
    await stores.rules.update_rule(rule.with_changes(pattern="y"))
    with pytest.raises(NotFound):
        await stores.rules.delete_rule(org, "nope")  # a failed change is no change
    assert await stores.rules.rules_version(org) == 2

    # Another replica on the same database changes the rules: the stored
    # version shows it; this process's local view catches up when it reads.
    replica = await backend.open()
    try:
        await replica.rules.delete_rule(org, rule.id)
        assert stores.rules.version(org) == 2
        assert await stores.rules.rules_version(org) == 3
        assert stores.rules.version(org) == 3
    finally:
        await replica.aclose()


async def test_rule_changes_are_announced(stores: Stores, org: str) -> None:
    subscription = stores.rules.changes.subscribe()
    rule = await stores.rules.create_rule(_rule(org))
    updated = await stores.rules.update_rule(rule.with_changes(enabled=False))
    await stores.rules.delete_rule(org, rule.id)
    subscription.close()
    events = [event async for event in subscription]
    assert [(e.change_type, e.rule) for e in events] == [
        (RuleChangeType.CREATED, rule),
        (RuleChangeType.UPDATED, updated),
        (RuleChangeType.DELETED, updated),
    ]


async def test_rules_are_invisible_to_other_organisations(stores: Stores, org: str, other_org: str) -> None:
    rule = await stores.rules.create_rule(_rule(org, id="shared-name"))
    assert await stores.rules.list_rules(other_org) == []
    assert await stores.rules.rules_version(other_org) == 0
    with pytest.raises(NotFound):
        await stores.rules.get_rule(other_org, rule.id)
    with pytest.raises(NotFound):
        await stores.rules.update_rule(rule.with_changes(organisation=other_org, pattern="hijack"))
    with pytest.raises(NotFound):
        await stores.rules.delete_rule(other_org, rule.id)
    # The same id in another organisation is another rule.
    theirs = await stores.rules.create_rule(_rule(other_org, id="shared-name", pattern="theirs"))
    assert await stores.rules.get_rule(org, rule.id) == rule
    assert await stores.rules.list_rules(other_org) == [theirs]
    assert await stores.rules.rules_version(org) == 1


async def test_an_empty_organisation_is_refused(stores: Stores) -> None:
    with pytest.raises(ValueError):
        await stores.rules.list_rules("")
    with pytest.raises(ValueError):
        await stores.rules.create_rule(_rule(""))


# Decisions ------------------------------------------------------------------

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _decision(stores: Stores, organisation: str, at: datetime = START, **changes: Any) -> Decision:
    decision = Decision(
        id=stores.decisions.new_id(),
        create_time=at,
        organisation=organisation,
        principal="users/alice",
        direction=Direction.INPUT,
        action=Action.ALLOW,
        content_sha256=hashlib.sha256(b"text").hexdigest(),
        request_id="req-1",
    )
    return replace(decision, **changes)


async def test_decision_with_findings_round_trips(stores: Stores, org: str) -> None:
    decision = _decision(
        stores,
        org,
        action=Action.BLOCK,
        findings=(
            Finding(
                Category.SECRET, type="OPENAI_KEY", start=3, end=54, score=0.97, preview="sk-…cdef", digest="ab" * 32
            ),
            Finding(Category.BLOCK_RULE, rule="rules/abc", start=0, end=4),
            Finding(Category.PII, type="EMAIL_ADDRESS", start=60, end=77, score=0.5),
        ),
    )
    await stores.decisions.record(decision)
    page, cursor = await stores.decisions.list_decisions(org, DecisionFilter(), 10, None)
    assert page == [decision] and cursor is None


async def test_decisions_page_newest_first_without_gaps_or_repeats(stores: Stores, org: str) -> None:
    decisions = [_decision(stores, org, at=START + timedelta(seconds=i)) for i in range(25)]
    await stores.decisions.record_many(decisions[:20])
    for decision in decisions[20:]:
        await stores.decisions.record(decision)
    seen: list[Decision] = []
    sizes = []
    cursor = None
    while True:
        page, cursor = await stores.decisions.list_decisions(org, DecisionFilter(), 10, cursor)
        seen.extend(page)
        sizes.append(len(page))
        if cursor is None:
            break
    assert sizes == [10, 10, 5]
    assert seen == list(reversed(decisions))


async def test_an_exactly_full_last_page_has_no_next_cursor(stores: Stores, org: str) -> None:
    await stores.decisions.record_many([_decision(stores, org) for _ in range(4)])
    page, cursor = await stores.decisions.list_decisions(org, DecisionFilter(), 2, None)
    assert len(page) == 2 and cursor is not None
    page, cursor = await stores.decisions.list_decisions(org, DecisionFilter(), 2, cursor)
    assert len(page) == 2 and cursor is None


async def test_decision_filters(stores: Stores, org: str) -> None:
    pii = Finding(Category.PII, type="EMAIL_ADDRESS")
    secret = Finding(Category.SECRET, type="AWS_KEY")
    blocked_input = _decision(stores, org, START, action=Action.BLOCK, findings=(secret, pii))
    redacted_output = _decision(
        stores, org, START + timedelta(minutes=1), action=Action.REDACT, direction=Direction.OUTPUT, findings=(pii,)
    )
    allowed = _decision(stores, org, START + timedelta(minutes=2))
    await stores.decisions.record_many([blocked_input, redacted_output, allowed])

    async def ids(where: DecisionFilter) -> list[str]:
        page, _ = await stores.decisions.list_decisions(org, where, 100, None)
        return [d.id for d in page]

    assert await ids(DecisionFilter(action=Action.BLOCK)) == [blocked_input.id]
    assert await ids(DecisionFilter(direction=Direction.OUTPUT)) == [redacted_output.id]
    assert await ids(DecisionFilter(category=Category.PII)) == [redacted_output.id, blocked_input.id]
    assert await ids(DecisionFilter(category=Category.SECRET)) == [blocked_input.id]
    assert await ids(DecisionFilter(category=Category.TOXICITY)) == []
    assert await ids(DecisionFilter(start_time=START + timedelta(minutes=1))) == [allowed.id, redacted_output.id]
    assert await ids(DecisionFilter(end_time=START + timedelta(minutes=1))) == [blocked_input.id]
    assert await ids(
        DecisionFilter(category=Category.PII, direction=Direction.INPUT, end_time=START + timedelta(hours=1))
    ) == [blocked_input.id]


async def test_recording_a_decision_twice_keeps_one(stores: Stores, org: str) -> None:
    decision = _decision(stores, org)
    await stores.decisions.record(decision)
    await stores.decisions.record_many([decision, _decision(stores, org)])
    page, _ = await stores.decisions.list_decisions(org, DecisionFilter(), 100, None)
    assert len(page) == 2 and decision in page


async def test_a_large_batch_retried_after_an_unclear_failure_writes_what_is_missing(stores: Stores, org: str) -> None:
    # Large enough for PostgreSQL's COPY path, which a stored key fails as a whole.
    batch = [_decision(stores, org, findings=(Finding(Category.PII, type="EMAIL_ADDRESS"),)) for _ in range(100)]
    await stores.decisions.record_many(batch[:60])  # committed, but the writer did not hear back
    await stores.decisions.record_many(batch)
    page, _ = await stores.decisions.list_decisions(org, DecisionFilter(category=Category.PII), 1000, None)
    assert sorted(d.id for d in page) == sorted(d.id for d in batch)


async def test_a_refused_record_writes_none_of_its_batch_and_the_store_goes_on(stores: Stores, org: str) -> None:
    # SQLite writes a batch in one job on its connection's thread (BEGIN, the
    # rows, COMMIT): a row it cannot bind midway must roll back the rows before it.
    good = [_decision(stores, org) for _ in range(3)]
    refused = _decision(stores, org, principal=object())
    with pytest.raises(Exception):  # noqa: B017 - each driver has its own error for an unbindable value
        await stores.decisions.record_many([good[0], good[1], refused, good[2]])
    page, _ = await stores.decisions.list_decisions(org, DecisionFilter(), 100, None)
    assert page == []
    await stores.decisions.record_many(good)
    page, _ = await stores.decisions.list_decisions(org, DecisionFilter(), 100, None)
    assert sorted(d.id for d in page) == sorted(d.id for d in good)


async def test_decisions_are_invisible_to_other_organisations(stores: Stores, org: str, other_org: str) -> None:
    mine = _decision(stores, org, action=Action.BLOCK, findings=(Finding(Category.PII),))
    theirs = _decision(stores, other_org, action=Action.BLOCK, findings=(Finding(Category.PII),))
    await stores.decisions.record_many([mine, theirs])
    for where in (DecisionFilter(), DecisionFilter(action=Action.BLOCK), DecisionFilter(category=Category.PII)):
        assert (await stores.decisions.list_decisions(org, where, 100, None))[0] == [mine]
        assert (await stores.decisions.list_decisions(other_org, where, 100, None))[0] == [theirs]


def test_findings_json_reads_records_from_older_and_newer_versions() -> None:
    finding = Finding(Category.SECRET, type="GITHUB_TOKEN", start=1, end=41, score=0.9, digest="d" * 64)
    stored = json.loads(findings_to_json((finding,)))
    assert stored == [
        {"category": "secret", "type": "GITHUB_TOKEN", "start": 1, "end": 41, "score": 0.9, "digest": "d" * 64}
    ]
    # A newer writer's extra field is ignored; an older writer's missing field takes its default.
    newer = [{**stored[0], "field_from_the_future": [1, 2]}]
    older = [{"category": "pii", "start": 2}]
    assert findings_from_json(json.dumps(newer)) == (finding,)
    assert findings_from_json(json.dumps(older)) == (Finding(Category.PII, start=2),)


@dataclass(frozen=True)
class _LaterDecisionFields:
    """Stands in for fields a later version adds to Decision: they travel in
    the `details` JSON column through the same codec."""

    id: str
    category: Category = Category.PII
    scores: tuple[float, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    reviewed_time: datetime | None = None
    nested: Finding | None = None


def test_fields_added_later_round_trip_through_json() -> None:
    value = _LaterDecisionFields(
        id="x",
        category=Category.SECRET,
        scores=(0.5, 1.0),
        labels={"team": "payments"},
        reviewed_time=START,
        nested=Finding(Category.TOXICITY, score=0.9),
    )
    plain = json.loads(json.dumps(dataclass_to_plain(value, skip=frozenset({"id"}))))
    assert dataclass_from_plain(_LaterDecisionFields, plain, id="x") == value
    assert dataclass_to_plain(_LaterDecisionFields(id="y")) == {"id": "y"}  # defaults are left out


# Request log ----------------------------------------------------------------


def _request(stores: Stores, organisation: str, at: datetime = START, **changes: Any) -> RequestRecord:
    entry = RequestRecord(
        id=stores.requests.new_id(),
        create_time=at,
        organisation=organisation,
        request_id=secrets.token_hex(8),
        principal="users/alice",
        model="fast",
        deployment="openai/gpt-4o-mini",
        status_code="OK",
        input_tokens=12,
        output_tokens=34,
        latency_ms=123.5,
        time_to_first_token_ms=45.25,
        cache_hit=False,
    )
    return replace(entry, **changes)


async def test_request_log_round_trips(stores: Stores, org: str) -> None:
    answered = _request(stores, org)
    cached = _request(stores, org, START + timedelta(seconds=1), cache_hit=True, deployment="", latency_ms=0.4)
    failed = _request(
        stores,
        org,
        START + timedelta(seconds=2),
        status_code="UNAVAILABLE",
        output_tokens=0,
        time_to_first_token_ms=None,
    )
    await stores.requests.record(answered)
    await stores.requests.record_many([cached, failed])
    page, cursor = await stores.requests.list_requests(org, RequestFilter(), 10, None)
    assert page == [failed, cached, answered] and cursor is None


async def test_request_log_pages_and_filters(stores: Stores, org: str) -> None:
    entries = [
        _request(
            stores,
            org,
            START + timedelta(seconds=i),
            model="fast" if i % 2 else "smart",
            principal=f"users/u{i % 3}",
            status_code="OK" if i % 5 else "RESOURCE_EXHAUSTED",
        )
        for i in range(15)
    ]
    await stores.requests.record_many(entries)
    seen: list[RequestRecord] = []
    cursor = None
    while True:
        page, cursor = await stores.requests.list_requests(org, RequestFilter(), 4, cursor)
        seen.extend(page)
        if cursor is None:
            break
    assert seen == list(reversed(entries))

    async def matching(where: RequestFilter) -> list[RequestRecord]:
        page, _ = await stores.requests.list_requests(org, where, 100, None)
        return page

    newest_first = list(reversed(entries))
    assert await matching(RequestFilter(model="fast")) == [e for e in newest_first if e.model == "fast"]
    assert await matching(RequestFilter(principal="users/u1")) == [e for e in newest_first if e.principal == "users/u1"]
    assert [e.id for e in await matching(RequestFilter(status_code="RESOURCE_EXHAUSTED"))] == [
        entries[10].id,
        entries[5].id,
        entries[0].id,
    ]
    window = RequestFilter(start_time=START + timedelta(seconds=3), end_time=START + timedelta(seconds=6))
    assert await matching(window) == [entries[5], entries[4], entries[3]]


async def test_request_log_is_idempotent_and_per_organisation(stores: Stores, org: str, other_org: str) -> None:
    mine = _request(stores, org)
    theirs = _request(stores, other_org)
    await stores.requests.record_many([mine, theirs, mine])
    assert (await stores.requests.list_requests(org, RequestFilter(), 100, None))[0] == [mine]
    assert (await stores.requests.list_requests(other_org, RequestFilter(model="fast"), 100, None))[0] == [theirs]


# Users and API keys ---------------------------------------------------------


async def _user(stores: Stores, organisation: str, email: str = "Alice@Example.com", **changes: Any) -> User:
    return await stores.users.create_user(
        replace(User(id="", organisation=organisation, email=email, role=UserRole.DEVELOPER), **changes)
    )


async def test_user_crud(stores: Stores, org: str) -> None:
    alice = await _user(stores, org, display_name="Alice")
    bob = await _user(stores, org, "bob@example.com", role=UserRole.VIEWER)
    assert alice.email == "alice@example.com" and alice.create_time is not None
    assert await stores.users.get_user(org, alice.id) == alice
    assert await stores.users.find_user_by_email(org, "  ALICE@example.COM ") == alice
    assert await stores.users.list_users(org) == [alice, bob]
    promoted = await stores.users.set_user_role(org, bob.id, UserRole.ADMIN)
    assert promoted == replace(bob, role=UserRole.ADMIN)
    assert await stores.users.get_user(org, bob.id) == promoted
    assert await stores.users.delete_user(org, alice.id) == alice
    assert await stores.users.list_users(org) == [promoted]
    for missing in (
        stores.users.get_user(org, alice.id),
        stores.users.find_user_by_email(org, "alice@example.com"),
        stores.users.set_user_role(org, alice.id, UserRole.VIEWER),
        stores.users.delete_user(org, alice.id),
    ):
        with pytest.raises(NotFound):
            await missing


async def test_email_is_unique_within_an_organisation_only(stores: Stores, org: str, other_org: str) -> None:
    await _user(stores, org)
    with pytest.raises(AlreadyExists):
        await _user(stores, org, "ALICE@example.com")
    theirs = await _user(stores, other_org)
    assert await stores.users.find_user_by_email(other_org, "alice@example.com") == theirs


async def test_users_are_invisible_to_other_organisations(
    api_keys: ApiKeys, stores: Stores, org: str, other_org: str
) -> None:
    alice = await _user(stores, org, role=UserRole.ADMIN)
    assert await stores.users.list_users(other_org) == []
    with pytest.raises(NotFound):
        await stores.users.get_user(other_org, alice.id)
    with pytest.raises(NotFound):
        await stores.users.find_user_by_email(other_org, alice.email)
    with pytest.raises(NotFound):
        await stores.users.set_user_role(other_org, alice.id, UserRole.VIEWER)
    with pytest.raises(NotFound):
        await stores.users.delete_user(other_org, alice.id)
    with pytest.raises(NotFound):
        await api_keys.create_api_key(other_org, alice.id, "sneaky")
    assert await stores.users.get_user(org, alice.id) == alice


async def test_api_key_verifies_to_its_user(api_keys: ApiKeys, stores: Stores, org: str, clock: FakeClock) -> None:
    alice = await _user(stores, org, role=UserRole.ADMIN)
    key, plaintext = await api_keys.create_api_key(org, alice.id, "ci")
    assert plaintext.startswith(key.prefix + "_") and key.last_used_time is None
    verified = await api_keys.verify_api_key(plaintext)
    assert verified is not None
    assert verified.user == alice and verified.key.organisation == org
    assert verified.key.id == key.id and verified.key.last_used_time is not None
    assert await stores.users.list_api_keys(org) == [verified.key]

    # last_used_time moves at most once a minute: verification is not a write per call.
    first_use = verified.key.last_used_time
    again = await api_keys.verify_api_key(plaintext)
    assert again is not None and again.key.last_used_time == first_use
    clock.advance(120)
    later = await api_keys.verify_api_key(plaintext)
    assert later is not None and later.key.last_used_time is not None and later.key.last_used_time > first_use
    assert (await stores.users.list_api_keys(org))[0].last_used_time == later.key.last_used_time


async def test_wrong_or_malformed_keys_do_not_verify(api_keys: ApiKeys, stores: Stores, org: str) -> None:
    alice = await _user(stores, org)
    _, plaintext = await api_keys.create_api_key(org, alice.id, "ci")
    wrong_secret = plaintext[:-4] + ("AAAA" if not plaintext.endswith("AAAA") else "BBBB")
    unknown_id = "pm_" + "0" * 16 + plaintext[19:]
    for candidate in (wrong_secret, unknown_id, plaintext[:-1], plaintext + "x", "", "Bearer " + plaintext, "pm_"):
        assert await api_keys.verify_api_key(candidate) is None, candidate
    assert await api_keys.verify_api_key(plaintext) is not None


async def test_api_key_plaintext_is_never_stored(api_keys: ApiKeys, backend: Backend, stores: Stores, org: str) -> None:
    alice = await _user(stores, org)
    key, plaintext = await api_keys.create_api_key(org, alice.id, "ci")
    assert await api_keys.verify_api_key(plaintext) is not None
    secret_part = plaintext.split("_", 2)[2]
    rows = await backend.raw_rows("SELECT * FROM api_keys")
    (row,) = [r for r in rows if r["id"] == key.id]
    assert row["key_sha256"] == hashlib.sha256(plaintext.encode()).hexdigest()
    for value in (str(v) for r in rows for v in r.values()):
        assert plaintext not in value and secret_part not in value


async def test_revoked_and_expired_keys_do_not_verify(
    api_keys: ApiKeys, stores: Stores, org: str, clock: FakeClock
) -> None:
    alice = await _user(stores, org)
    revoked, revoked_plaintext = await api_keys.create_api_key(org, alice.id, "old")
    expiring, expiring_plaintext = await api_keys.create_api_key(
        org, alice.id, "temporary", expire_time=clock.now + timedelta(hours=1)
    )
    assert await api_keys.verify_api_key(revoked_plaintext) is not None
    done = await stores.users.revoke_api_key(org, revoked.id)
    assert done.revoke_time is not None
    assert await api_keys.verify_api_key(revoked_plaintext) is None
    # Revoking again keeps the first revocation time.
    assert (await stores.users.revoke_api_key(org, revoked.id)).revoke_time == done.revoke_time
    assert await api_keys.verify_api_key(expiring_plaintext) is not None
    clock.advance(3601)
    assert await api_keys.verify_api_key(expiring_plaintext) is None
    assert [k.id for k in await stores.users.list_api_keys(org, alice.id)] == [revoked.id, expiring.id]
    with pytest.raises(NotFound):
        await stores.users.revoke_api_key(org, "0" * 16)


async def test_api_keys_are_invisible_to_other_organisations(
    api_keys: ApiKeys, stores: Stores, org: str, other_org: str
) -> None:
    alice = await _user(stores, org)
    key, plaintext = await api_keys.create_api_key(org, alice.id, "ci")
    assert await stores.users.list_api_keys(other_org) == []
    with pytest.raises(NotFound):
        await stores.users.revoke_api_key(other_org, key.id)
    verified = await api_keys.verify_api_key(plaintext)
    assert verified is not None and verified.key.organisation == org and verified.key.revoke_time is None


async def test_deleting_a_user_removes_their_keys(api_keys: ApiKeys, stores: Stores, org: str) -> None:
    alice = await _user(stores, org)
    bob = await _user(stores, org, "bob@example.com")
    _, alice_key = await api_keys.create_api_key(org, alice.id, "a")
    bob_key_record, bob_key = await api_keys.create_api_key(org, bob.id, "b")
    await stores.users.delete_user(org, alice.id)
    assert await api_keys.verify_api_key(alice_key) is None
    assert await api_keys.verify_api_key(bob_key) is not None
    assert [k.id for k in await stores.users.list_api_keys(org)] == [bob_key_record.id]
    with pytest.raises(NotFound):
        await api_keys.create_api_key(org, alice.id, "for a user who left")


async def test_revoked_tokens_are_kept_until_they_would_have_expired(
    stores: Stores, org: str, other_org: str, clock: FakeClock
) -> None:
    # The database may be shared with other tests: look only at this test's digests.
    short, long, theirs = (secrets.token_hex(32) for _ in range(3))
    start = clock.now
    await stores.users.revoke_token(org, short, start + timedelta(seconds=60))
    await stores.users.revoke_token(org, long, start + timedelta(hours=1))
    await stores.users.revoke_token(other_org, theirs, start + timedelta(hours=1))
    await stores.users.revoke_token(org, short, start + timedelta(hours=5))  # again: unchanged

    def mine(revoked: dict[str, datetime]) -> dict[str, datetime]:
        return {digest: expiry for digest, expiry in revoked.items() if digest in (short, long, theirs)}

    assert mine(await stores.users.revoked_tokens()) == {
        short: start + timedelta(seconds=60),
        long: start + timedelta(hours=1),
        theirs: start + timedelta(hours=1),
    }
    clock.advance(61)
    assert set(mine(await stores.users.revoked_tokens())) == {long, theirs}
    clock.advance(3600)
    assert mine(await stores.users.revoked_tokens()) == {}


# Registry instances ---------------------------------------------------------


def _instance(organisation: str, instance_id: str = "orchestrator-1", **changes: Any) -> Instance:
    instance = Instance(
        instance_id=instance_id,
        organisation=organisation,
        address="10.0.0.1:50051",
        version="0.1.0",
        models=("fast", "smart"),
        labels={"zone": "a", "gpu": "none"},
    )
    return replace(instance, **changes)


async def test_instance_registers_and_re_registers(stores: Stores, org: str, clock: FakeClock) -> None:
    registered, new = await stores.instances.register_instance(_instance(org), 10)
    assert new
    assert registered.register_time is not None and registered.lease_expire_time is not None
    assert registered.lease_expire_time - registered.register_time == timedelta(seconds=10)
    assert await stores.instances.get_instance(org, "orchestrator-1") == registered
    moved, new = await stores.instances.register_instance(_instance(org, address="10.0.0.2:50051", models=()), 10)
    assert not new
    assert await stores.instances.list_instances(org) == [moved]
    assert moved.address == "10.0.0.2:50051" and moved.models == () and moved.labels == {"zone": "a", "gpu": "none"}


async def test_instances_list_sorted_by_id(stores: Stores, org: str) -> None:
    for instance_id in ("c-instance", "a-instance", "b-instance"):
        await stores.instances.register_instance(_instance(org, instance_id), 10)
    assert [i.instance_id for i in await stores.instances.list_instances(org)] == [
        "a-instance",
        "b-instance",
        "c-instance",
    ]


async def test_renewal_extends_the_lease(stores: Stores, org: str, clock: FakeClock) -> None:
    await stores.instances.register_instance(_instance(org), 10)
    clock.advance(8)
    renewed = await stores.instances.renew_lease(org, "orchestrator-1")
    assert renewed.lease_expire_time is not None and renewed.lease_expire_time > clock.now + timedelta(seconds=9)
    clock.advance(8)
    assert await stores.instances.get_instance(org, "orchestrator-1") == renewed


async def _reap(stores: Stores, organisation: str) -> list[Instance]:
    # The database is shared with other tests: keep this test's organisation.
    return [i for i in await stores.instances.expire_lapsed() if i.organisation == organisation]


async def test_lapsed_leases_vanish_and_are_reaped_once(stores: Stores, org: str, clock: FakeClock) -> None:
    short, _ = await stores.instances.register_instance(_instance(org, "short-lease"), 5)
    long, _ = await stores.instances.register_instance(_instance(org, "long-lease"), 60)
    assert short.lease_expire_time is not None and long.lease_expire_time is not None
    next_expiry = await stores.instances.next_lease_expiry()
    assert next_expiry is not None and next_expiry <= short.lease_expire_time
    assert await _reap(stores, org) == []
    clock.advance(6)
    # Lapsed but not yet reaped: already invisible.
    assert await stores.instances.list_instances(org) == [long]
    for lapsed in (
        stores.instances.get_instance(org, "short-lease"),
        stores.instances.renew_lease(org, "short-lease"),
    ):
        with pytest.raises(NotFound):
            await lapsed
    assert await _reap(stores, org) == [short]
    assert await _reap(stores, org) == []
    next_expiry = await stores.instances.next_lease_expiry()
    assert next_expiry is not None and clock.now < next_expiry <= long.lease_expire_time
    # Registering again after a lapse is a new registration.
    _, new = await stores.instances.register_instance(_instance(org, "short-lease"), 5)
    assert new


async def test_replicas_reaping_together_report_each_lapse_once(
    backend: Backend, stores: Stores, org: str, clock: FakeClock
) -> None:
    for i in range(20):
        await stores.instances.register_instance(_instance(org, f"instance-{i:02d}"), 1)
    clock.advance(2)
    replica = await backend.open(clock)
    try:
        reaped = await asyncio.gather(*(s.instances.expire_lapsed() for s in (stores, replica, stores, replica)))
    finally:
        await replica.aclose()
    names = [i.instance_id for batch in reaped for i in batch if i.organisation == org]
    assert sorted(names) == [f"instance-{i:02d}" for i in range(20)]


async def test_registering_over_a_lapsed_lease_is_new(stores: Stores, org: str, clock: FakeClock) -> None:
    await stores.instances.register_instance(_instance(org), 5)
    clock.advance(6)
    _, new = await stores.instances.register_instance(_instance(org), 5)
    assert new


async def test_deregistered_instance_is_gone(stores: Stores, org: str, clock: FakeClock) -> None:
    registered, _ = await stores.instances.register_instance(_instance(org), 10)
    assert await stores.instances.delete_instance(org, "orchestrator-1") == registered
    assert await stores.instances.list_instances(org) == []
    with pytest.raises(NotFound):
        await stores.instances.delete_instance(org, "orchestrator-1")
    lapsed, _ = await stores.instances.register_instance(_instance(org), 5)
    clock.advance(6)
    with pytest.raises(NotFound):
        await stores.instances.delete_instance(org, "orchestrator-1")
    # The lapsed row is left to the reaper, so its expiry is still announced.
    assert await _reap(stores, org) == [lapsed]


async def test_instances_are_invisible_to_other_organisations(
    stores: Stores, org: str, other_org: str, clock: FakeClock
) -> None:
    mine, _ = await stores.instances.register_instance(_instance(org), 5)
    assert await stores.instances.list_instances(other_org) == []
    for foreign in (
        stores.instances.get_instance(other_org, mine.instance_id),
        stores.instances.renew_lease(other_org, mine.instance_id),
        stores.instances.delete_instance(other_org, mine.instance_id),
    ):
        with pytest.raises(NotFound):
            await foreign
    theirs, new = await stores.instances.register_instance(_instance(other_org, address="10.9.9.9:1"), 50)
    assert new
    assert await stores.instances.get_instance(org, mine.instance_id) == mine
    clock.advance(6)
    # The reaper works across organisations and says whose instance lapsed.
    assert await _reap(stores, org) == [mine]
    assert await _reap(stores, other_org) == []
    assert await stores.instances.list_instances(other_org) == [theirs]


# Migrations -----------------------------------------------------------------


@asynccontextmanager
async def _fresh(backend: Backend, tmp_path: Path) -> AsyncIterator[Backend]:
    """A database no test has migrated yet."""
    if backend.url is None:
        data_dir = tmp_path / f"fresh-{secrets.token_hex(3)}"
        yield Backend(backend.name, None, data_dir)
    else:
        async with _fresh_postgres_database() as url:
            yield Backend(backend.name, url, tmp_path)


async def _migration_rows(backend: Backend) -> list[tuple[int, str]]:
    rows = await backend.raw_rows("SELECT version, name FROM schema_migrations ORDER BY version")
    return [(r["version"], r["name"]) for r in rows]


def _expected(backend: Backend) -> list[tuple[int, str]]:
    return [(m.version, m.name) for m in load_migrations(backend.name)]


async def test_migrating_twice_applies_each_migration_once(backend: Backend, tmp_path: Path) -> None:
    async with _fresh(backend, tmp_path) as fresh:
        first = await fresh.open()
        await first.aclose()
        second = await fresh.open()
        await second.aclose()
        assert list(first.migrated) == [v for v, _ in _expected(fresh)]
        assert second.migrated == ()
        assert await _migration_rows(fresh) == _expected(fresh)


async def test_concurrent_migrators_apply_each_migration_once(backend: Backend, tmp_path: Path) -> None:
    async with _fresh(backend, tmp_path) as fresh:
        opened = await asyncio.gather(*(fresh.open() for _ in range(4)))
        for stores in opened:
            await stores.aclose()
        applied = sorted(v for stores in opened for v in stores.migrated)
        assert applied == [v for v, _ in _expected(fresh)]
        assert await _migration_rows(fresh) == _expected(fresh)


async def test_two_processes_migrating_at_once(backend: Backend, tmp_path: Path) -> None:
    async with _fresh(backend, tmp_path) as fresh:
        env = {**os.environ, "POINTSMAN_DATA_DIR": str(fresh.data_dir)}
        env.pop("DATABASE_URL", None)
        args = [fresh.url] if fresh.url else []
        command = [sys.executable, "-m", "pointsman.server.backends.stores.migrate", *args]
        processes = [
            await asyncio.create_subprocess_exec(
                *command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for _ in range(2)
        ]
        outputs = [await process.communicate() for process in processes]
        for process, (_, stderr) in zip(processes, outputs, strict=True):
            assert process.returncode == 0, stderr.decode()
        lines = sorted(stdout.decode().strip() for stdout, _ in outputs)
        assert lines == [
            f"{fresh.name}: applied {[v for v, _ in _expected(fresh)]}",
            f"{fresh.name}: applied nothing, the schema is current",
        ]
        assert await _migration_rows(fresh) == _expected(fresh)


async def _migrate(backend: Backend, migrations: list[Migration]) -> list[int]:
    """Runs the migrator alone on its own connection, as a starting replica would."""
    from pointsman.server.backends.stores import migrate

    if backend.url is None:
        import aiosqlite

        backend.data_dir.mkdir(parents=True, exist_ok=True)
        lite = await aiosqlite.connect(backend.data_dir / "pointsman.db", isolation_level=None, timeout=30)
        try:
            return await migrate.migrate_sqlite(lite, migrations)
        finally:
            await lite.close()
    pg = await asyncpg.connect(backend.url)
    try:
        return await migrate.migrate_postgres(pg, migrations)
    finally:
        await pg.close()


async def test_replicas_starting_together_apply_a_new_migration_once(backend: Backend, tmp_path: Path) -> None:
    async with _fresh(backend, tmp_path) as fresh:
        current = load_migrations(fresh.name)
        assert await _migrate(fresh, current) == [m.version for m in current]
        # The next release adds a migration; its replicas start at the same time.
        upgrade = [*current, Migration(len(current) + 1, "add_extra", "CREATE TABLE extra (x integer);")]
        applied = await asyncio.gather(*(_migrate(fresh, upgrade) for _ in range(4)))
        assert sorted(v for versions in applied for v in versions) == [len(current) + 1]
        assert [v for v, _ in await _migration_rows(fresh)] == [m.version for m in upgrade]


async def test_a_changed_migration_is_refused(backend: Backend, tmp_path: Path) -> None:
    async with _fresh(backend, tmp_path) as fresh:
        current = load_migrations(fresh.name)
        await _migrate(fresh, current)
        changed = [replace(m, sql=m.sql + "\n-- edited after release\n") for m in current]
        with pytest.raises(MigrationError):
            await _migrate(fresh, changed)


def test_migrations_are_numbered_without_gaps() -> None:
    dialects: tuple[Literal["sqlite", "postgres"], ...] = ("sqlite", "postgres")
    for dialect in dialects:
        migrations = load_migrations(dialect)
        assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
        assert all(isinstance(m, Migration) and m.sql.strip() for m in migrations)
    # Both dialects describe the same schema history.
    assert [m.name for m in load_migrations("sqlite")] == [m.name for m in load_migrations("postgres")]


def test_database_outages_are_told_apart_from_bugs() -> None:
    import asyncpg.exceptions as pg

    from pointsman.server.backends.stores.outages import is_database_outage

    outages = [
        ConnectionRefusedError(111, "refused"),
        OSError(113, "No route to host"),
        TimeoutError(),
        pg.CannotConnectNowError("the database system is starting up"),
        pg.AdminShutdownError("terminating connection due to administrator command"),
        pg.TooManyConnectionsError("too many clients"),
        pg.ConnectionDoesNotExistError("connection was closed"),
        pg.ObjectNotInPrerequisiteStateError("database is not currently accepting connections"),
        sqlite3.OperationalError("database is locked"),
    ]
    bugs = [
        pg.UndefinedColumnError("column does not exist"),
        pg.UniqueViolationError("duplicate key"),
        sqlite3.OperationalError("no such table: rules"),
        ValueError("bad"),
        KeyError("x"),
        FileNotFoundError("routes.yaml"),
    ]
    assert [is_database_outage(e) for e in outages] == [True] * len(outages)
    assert [is_database_outage(e) for e in bugs] == [False] * len(bugs)
