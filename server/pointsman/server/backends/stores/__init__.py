"""Durable state behind small interfaces: an SQLite file by default, PostgreSQL
when DATABASE_URL names one. `open_stores` connects and migrates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from ...domain.ports.stores import (
    ApiKey,
    DecisionStore,
    InstanceStore,
    RequestFilter,
    RequestLog,
    RequestRecord,
    RuleStore,
    User,
    UserRole,
    UserStore,
    VerifiedKey,
)
from ...domain.ports.tools import ToolCallLog

__all__ = [
    "ApiKey",
    "DecisionStore",
    "InstanceStore",
    "RequestFilter",
    "RequestLog",
    "RequestRecord",
    "RuleStore",
    "Stores",
    "User",
    "UserRole",
    "UserStore",
    "VerifiedKey",
    "open_stores",
]

SQLITE_FILE_NAME = "pointsman.db"
Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Stores:
    backend: Literal["sqlite", "postgres"]
    rules: RuleStore
    decisions: DecisionStore
    requests: RequestLog
    users: UserStore
    instances: InstanceStore
    tool_calls: ToolCallLog
    migrated: tuple[int, ...]  # the migrations applied by this open
    ping: Callable[[], Awaitable[None]]  # raises if the database cannot be reached
    aclose: Callable[[], Awaitable[None]]


def sqlite_path(database_url: str | None, data_dir: str | Path) -> str | None:
    """The SQLite file DATABASE_URL and POINTSMAN_DATA_DIR select, or None for
    PostgreSQL. `sqlite:///abs/path.db` and `sqlite://:memory:` are accepted."""
    if not database_url:
        return str(Path(data_dir) / SQLITE_FILE_NAME)
    if database_url.startswith("sqlite://"):
        return database_url.removeprefix("sqlite://") or str(Path(data_dir) / SQLITE_FILE_NAME)
    if database_url.startswith(("postgresql://", "postgres://")):
        return None
    # Never echo the URL: it may carry a password.
    raise ValueError("DATABASE_URL must start with postgresql://, postgres:// or sqlite://")


async def open_stores(
    database_url: str | None,
    data_dir: str | Path,
    *,
    clock: Clock = _utc_now,
    pool_size: int = 10,
) -> Stores:
    """Connects to the database (creating the SQLite file if need be), applies
    pending migrations and returns the stores. Close them with `aclose()`."""
    from .dialects import Database, PostgresDatabase, SqliteDatabase
    from .sql import SqlDecisionStore, SqlInstanceStore, SqlRequestLog, SqlRuleStore, SqlUserStore
    from .tool_calls import SqlToolCallLog

    path = sqlite_path(database_url, data_dir)
    database: Database
    if path is not None:
        database = await SqliteDatabase.open(path)
    else:
        assert database_url is not None
        database = await PostgresDatabase.open(database_url, max_size=pool_size)
    return Stores(
        backend=database.name,
        rules=SqlRuleStore(database, clock),
        decisions=SqlDecisionStore(database),
        requests=SqlRequestLog(database),
        users=SqlUserStore(database, clock),
        instances=SqlInstanceStore(database, clock),
        tool_calls=SqlToolCallLog(database),
        migrated=database.migrated,
        ping=database.ping,
        aclose=database.close,
    )
