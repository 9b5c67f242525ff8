"""Numbered SQL migrations (`migrations/<dialect>/NNNN_name.sql`), each applied
once and recorded in `schema_migrations`, under a lock so that replicas
starting together apply them once: `pg_advisory_lock` on PostgreSQL, a
`BEGIN IMMEDIATE` write transaction on SQLite."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import logging
import os
import re
import sqlite3
import sys
from dataclasses import dataclass
from typing import Literal

import aiosqlite
import asyncpg  # type: ignore[import-untyped]  # no stubs shipped

log = logging.getLogger(__name__)

Dialect = Literal["sqlite", "postgres"]

# "pointsma" in ASCII: one advisory lock key for every Pointsman migrator.
POSTGRES_LOCK_KEY = 0x706F696E74736D61
LOCK_WAIT_SECONDS = 300.0
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The migrations on disk and those recorded in the database disagree."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(dialect: Dialect) -> list[Migration]:
    """The dialect's migrations in order, numbered 1, 2, 3... without gaps."""
    folder = importlib.resources.files(__package__).joinpath("migrations", dialect)
    migrations = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            continue
        migrations.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    migrations.sort(key=lambda m: m.version)
    if [m.version for m in migrations] != list(range(1, len(migrations) + 1)):
        raise MigrationError(f"{dialect} migrations must be numbered 1, 2, 3... without gaps or repeats")
    return migrations


def _pending(applied: dict[int, str], migrations: list[Migration]) -> list[Migration]:
    for migration in migrations:
        checksum = applied.get(migration.version)
        if checksum is not None and checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was changed after it was applied; "
                "add a new migration instead"
            )
    newer = sorted(set(applied) - {m.version for m in migrations})
    if newer:
        # A rolling upgrade: a newer replica migrated first. Newer migrations
        # only add, so this version keeps working.
        log.warning("the database has migrations this version does not know: %s", newer)
    return [m for m in migrations if m.version not in applied]


def sqlite_statements(script: str) -> list[str]:
    """Splits a script into statements (quoted ';' and triggers included), so
    they can run inside one transaction: `executescript` would commit first."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if any(line.strip() and not line.strip().startswith("--") for line in current.splitlines()):
        raise MigrationError("a migration ends with an incomplete statement")
    return statements


async def migrate_sqlite(connection: aiosqlite.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Applies pending migrations in one write transaction; returns their versions.
    The connection must be in autocommit mode (`isolation_level=None`)."""
    migrations = load_migrations("sqlite") if migrations is None else migrations
    # Takes the database's write lock at once: a second migrator waits here
    # (busy timeout) and then sees the first one's work.
    await connection.execute("BEGIN IMMEDIATE")
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
            " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) STRICT"
        )
        async with connection.execute("SELECT version, checksum FROM schema_migrations") as cursor:
            applied = {int(row[0]): str(row[1]) async for row in cursor}
        pending = _pending(applied, migrations)
        for migration in pending:
            for statement in sqlite_statements(migration.sql):
                await connection.execute(statement)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                (migration.version, migration.name, migration.checksum),
            )
        await connection.execute("COMMIT")
    except BaseException:
        await connection.execute("ROLLBACK")
        raise
    for migration in pending:
        log.info("applied migration %04d_%s", migration.version, migration.name)
    return [m.version for m in pending]


async def migrate_postgres(connection: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Applies pending migrations, each in its own transaction, holding the
    advisory lock throughout; returns their versions."""
    migrations = load_migrations("postgres") if migrations is None else migrations
    await connection.execute("SELECT pg_advisory_lock($1)", POSTGRES_LOCK_KEY, timeout=LOCK_WAIT_SECONDS)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await connection.fetch("SELECT version, checksum FROM schema_migrations")
        pending = _pending({row["version"]: row["checksum"] for row in rows}, migrations)
        for migration in pending:
            async with connection.transaction():
                # No arguments: the simple query protocol, which runs a whole script.
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
        return [m.version for m in pending]
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", POSTGRES_LOCK_KEY)


async def _main(argv: list[str]) -> int:
    from . import open_stores

    url = argv[0] if argv else os.environ.get("DATABASE_URL")
    stores = await open_stores(url, os.environ.get("POINTSMAN_DATA_DIR", "data"))
    await stores.aclose()
    print(f"{stores.backend}: applied {list(stores.migrated) or 'nothing, the schema is current'}")
    return 0


if __name__ == "__main__":
    # python -m pointsman.server.backends.stores.migrate [DATABASE_URL]: migrates
    # what DATABASE_URL / POINTSMAN_DATA_DIR select (or the URL given) and exits.
    sys.exit(asyncio.run(_main(sys.argv[1:])))
