"""The two databases behind one small interface, so each store's SQL is written
once (`sql.py`). A dialect owns what really differs: connections and
transactions, placeholders (statements are written with `?`; PostgreSQL gets
`$1, $2...`), how times, word lists and tag sets are stored, batch inserts,
the driver's errors, and the few statements SQL itself spells differently.

SQLite: one file (WAL mode) through aiosqlite, times as integer microseconds
since the epoch, lists as JSON text, tags as ",pii,secret,". PostgreSQL: an
asyncpg pool, timestamptz, text[], and batches by COPY, or in one statement
over arrays (`unnest`) when COPY cannot: one round trip however large."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import aiosqlite
import asyncpg  # type: ignore[import-untyped]  # no stubs shipped

from .migrate import migrate_postgres, migrate_sqlite

# A row reads by column name or position (sqlite3.Row, asyncpg.Record).
Row = Any


class DuplicateRow(Exception):
    """A unique key (primary or secondary) already holds this value."""


class MissingParent(Exception):
    """A foreign key names a row that does not exist."""


class Kind(enum.Enum):
    """What a column holds, for the codecs and PostgreSQL's batch arrays."""

    TEXT = "text"
    INTEGER = "integer"
    REAL = "float8"
    BOOLEAN = "boolean"
    TIME = "timestamptz"
    JSON = "jsonb"  # given as JSON text
    TAGS = "text[]"  # a small set of words without commas, matched by `has_tag`


@dataclass(frozen=True, slots=True)
class Table:
    """A table's name and the columns a batch insert fills, in order."""

    name: str
    columns: tuple[tuple[str, Kind], ...]

    @property
    def column_names(self) -> str:
        return ", ".join(name for name, _ in self.columns)


class Session(Protocol):
    """Statements on one connection. Outside `transaction()` each runs as its
    own transaction; `fetch` and `fetchrow` only read."""

    async def fetch(self, sql: str, *params: Any) -> list[Row]: ...
    async def fetchrow(self, sql: str, *params: Any) -> Row | None: ...

    async def execute(self, sql: str, *params: Any) -> int:
        """Runs a change; how many rows it changed."""
        ...

    async def execute_returning(self, sql: str, *params: Any) -> list[Row]:
        """Runs a change with RETURNING; the rows it returned."""
        ...

    async def insert_new(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        """Inserts the rows whose key is not stored yet (a retried batch is
        harmless), in one statement."""
        ...


class Database(Session, Protocol):
    @property
    def name(self) -> Literal["sqlite", "postgres"]: ...

    migrated: tuple[int, ...]  # the migrations this open applied

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Session]:
        """A write transaction; rolled back if the block raises."""
        ...

    def snapshot(self) -> contextlib.AbstractAsyncContextManager[Session]:
        """A read-only transaction: several queries see one state."""
        ...

    async def ping(self) -> None: ...
    async def close(self) -> None: ...

    # Codecs: Python values to parameters and back.
    def time(self, value: datetime) -> Any: ...
    def read_time(self, value: Any) -> datetime: ...
    def words(self, values: Sequence[str]) -> Any: ...
    def read_words(self, value: Any) -> tuple[str, ...]: ...
    def tags(self, values: Sequence[str]) -> Any: ...

    # Statements SQL spells differently.
    def has_tag(self, column: str, tag: str) -> tuple[str, Any]:
        """A condition and its one parameter: the column's tags include `tag`."""
        ...

    def plus_seconds(self, time_param: str, seconds_column: str) -> str:
        """An expression: a time parameter plus a column of seconds."""
        ...

    lock_row: str  # appended to a SELECT that must lock the row it reads
    binary_order: str  # appended to ORDER BY a text, for byte order
    delete_oldest: str  # {table}: up to ? rows made before ?
    count_by_tag: str  # decisions per category; {categories}: the known ones as JSON
    deployment_percentiles: str  # {window}: see sql.py
    # A JSON object column's entries as rows (key, value: text), to join:
    # {column} names the column.
    json_entries: str

    def has_entry(self, column: str, key: str, value: str) -> tuple[str, tuple[Any, ...]]:
        """A condition and its parameters: the JSON object column holds key: value."""
        ...


def read_time_or_none(database: Database, value: Any) -> datetime | None:
    return None if value is None else database.read_time(value)


def time_or_none(database: Database, value: datetime | None) -> Any:
    return None if value is None else database.time(value)


# SQLite ---------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
BUSY_TIMEOUT_SECONDS = 30.0
_SQLITE_DUPLICATES = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def _sqlite_error(error: sqlite3.IntegrityError) -> Exception:
    name = getattr(error, "sqlite_errorname", "")
    if name in _SQLITE_DUPLICATES:
        return DuplicateRow()
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return MissingParent()
    return error


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


async def _on_connection_thread(connection: aiosqlite.Connection, function: Callable[..., Any], *args: Any) -> Any:
    """Runs `function` on the connection's own thread, as aiosqlite runs each
    statement (`Connection._execute`, the one way it offers to run several
    statements in one hand-over; aiosqlite is pinned in constraints.txt)."""
    return await connection._execute(function, *args)  # type: ignore[no-untyped-call]  # private, untyped


def _insert_transaction(connection: aiosqlite.Connection, sql: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """On the connection's thread: the rows in one write transaction, taken
    first (BEGIN IMMEDIATE, so it waits on the busy timeout), rolled back if
    a row is refused."""
    raw = connection._conn
    raw.execute("BEGIN IMMEDIATE")
    try:
        raw.executemany(sql, rows)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")
        raise
    raw.execute("COMMIT")


class _SqliteSession:
    """Statements inside a transaction the caller holds."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        try:
            async with self._connection.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.IntegrityError as error:
            raise _sqlite_error(error) from None

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        rows = await self.fetch(sql, *params)
        return rows[0] if rows else None

    async def execute(self, sql: str, *params: Any) -> int:
        try:
            cursor = await self._connection.execute(sql, params)
        except sqlite3.IntegrityError as error:
            raise _sqlite_error(error) from None
        return cursor.rowcount

    execute_returning = fetch

    async def insert_new(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" for _ in table.columns)
        await self._connection.executemany(
            f"INSERT INTO {table.name} ({table.column_names}) VALUES ({marks}) ON CONFLICT DO NOTHING", rows
        )


class SqliteDatabase:
    """One connection and a lock around each use of it: aiosqlite runs the
    connection on its own thread, and the lock stops one coroutine's statements
    landing inside another's transaction. Other processes on the same file
    wait for its write lock (busy timeout). Changes run in `BEGIN IMMEDIATE`
    transactions, which take the write lock first and so wait for it."""

    name: Literal["sqlite"] = "sqlite"
    lock_row = ""  # the write transaction holds the whole file
    binary_order = ""  # BINARY is SQLite's default collation
    json_entries = "json_each({column}) AS entry"

    @staticmethod
    def has_entry(column: str, key: str, value: str) -> tuple[str, tuple[Any, ...]]:
        return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE key = ? AND value = ?)", (key, value)

    def __init__(self, connection: aiosqlite.Connection, migrated: tuple[int, ...] = ()) -> None:
        self._connection = connection
        self._session = _SqliteSession(connection)
        self._lock = asyncio.Lock()
        self.migrated = migrated

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
    async def transaction(self) -> AsyncIterator[Session]:
        async with self._lock:
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._session
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    await self._connection.execute("ROLLBACK")
                raise
            await self._connection.execute("COMMIT")

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Session]:
        async with self._lock:
            await self._connection.execute("BEGIN")
            try:
                yield self._session
            finally:
                with contextlib.suppress(sqlite3.Error):
                    await self._connection.execute("COMMIT")

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        async with self._lock:
            return await self._session.fetch(sql, *params)

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        async with self._lock:
            return await self._session.fetchrow(sql, *params)

    async def execute(self, sql: str, *params: Any) -> int:
        async with self.transaction() as session:
            return await session.execute(sql, *params)

    async def execute_returning(self, sql: str, *params: Any) -> list[Row]:
        async with self.transaction() as session:
            return await session.execute_returning(sql, *params)

    async def insert_new(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        # Every call writes decisions and a request-log row, so this runs on
        # each flush of the write buffers: the whole transaction goes to
        # aiosqlite's thread as one job (one hand-over instead of three for
        # BEGIN, the rows and COMMIT), which halves the event loop's share of
        # a batch. The lock still keeps it out of another coroutine's transaction.
        marks = ", ".join("?" for _ in table.columns)
        sql = f"INSERT INTO {table.name} ({table.column_names}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        async with self._lock:
            await _on_connection_thread(self._connection, _insert_transaction, self._connection, sql, rows)

    async def ping(self) -> None:
        await self.fetch("SELECT 1")

    @staticmethod
    def time(value: datetime) -> int:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return (value - _EPOCH) // _MICROSECOND

    @staticmethod
    def read_time(value: int) -> datetime:
        return _EPOCH + timedelta(microseconds=value)

    @staticmethod
    def words(values: Sequence[str]) -> str:
        return json.dumps(list(values))

    @staticmethod
    def read_words(value: str) -> tuple[str, ...]:
        return tuple(json.loads(value))

    @staticmethod
    def tags(values: Sequence[str]) -> str:
        # Commas at both ends, so ",pii," finds a whole tag with instr().
        return f",{','.join(values)}," if values else ""

    @staticmethod
    def has_tag(column: str, tag: str) -> tuple[str, Any]:
        return f"instr({column}, ?) > 0", f",{tag},"

    @staticmethod
    def plus_seconds(time_param: str, seconds_column: str) -> str:
        return f"{time_param} + CAST({seconds_column} * 1000000 AS INTEGER)"

    # One batch per write transaction, so writers wait for one batch at most.
    delete_oldest = (
        "DELETE FROM {table} WHERE (organisation, id) IN"
        " (SELECT organisation, id FROM {table} WHERE create_time < ? LIMIT ?)"
    )
    # `categories` is ",pii,secret,": joining it with the known categories
    # counts a decision once in each of its categories ({categories}: the
    # known ones, a JSON array in a literal).
    count_by_tag = (
        "SELECT known.value AS category, sum(d.action = 'block') AS blocked,"
        " sum(d.action = 'redact') AS redacted, sum(d.action = 'log') AS logged"
        " FROM decisions AS d JOIN json_each('{categories}') AS known"
        " ON instr(d.categories, ',' || known.value || ',') > 0"
        " WHERE d.organisation = ? AND d.create_time >= ? AND d.create_time < ?"
        " AND d.action IN ('block', 'redact', 'log') GROUP BY known.value"
    )
    # SQLite has no percentile_disc. Its definition: the first value, in order,
    # whose cumulative share of the rows (cume_dist) reaches the fraction; NULL
    # first tokens rank in a partition of their own and are skipped by min().
    # The sorting happens inside SQLite (spilling to disk if need be); Python
    # receives one row per deployment.
    deployment_percentiles = """
SELECT deployment,
       count(*) AS requests,
       count(*) FILTER (WHERE status_code <> 'OK') AS failed_requests,
       min(CASE WHEN latency_share >= 0.5 THEN latency_ms END) AS latency_p50_ms,
       min(CASE WHEN latency_share >= 0.99 THEN latency_ms END) AS latency_p99_ms,
       min(CASE WHEN ttft_share >= 0.5 THEN time_to_first_token_ms END) AS time_to_first_token_p50_ms,
       sum(cost_usd) AS cost_usd
FROM (
    SELECT deployment, status_code, latency_ms, time_to_first_token_ms, cost_usd,
           cume_dist() OVER (PARTITION BY deployment ORDER BY latency_ms) AS latency_share,
           cume_dist() OVER (PARTITION BY deployment, time_to_first_token_ms IS NULL
                             ORDER BY time_to_first_token_ms) AS ttft_share
    {window}
)
GROUP BY deployment
"""


# PostgreSQL -----------------------------------------------------------------

# Every statement has a deadline: a stuck database must not hold a call forever.
COMMAND_TIMEOUT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 10.0
COPY_MIN_ROWS = 32
_QUESTION_MARK = re.compile(r"\?")


@lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2...` (no statement here has a
    question mark in a literal)."""
    counter = iter(range(1, 1_000_000))
    return _QUESTION_MARK.sub(lambda _: f"${next(counter)}", sql)


def _rows_changed(status: str) -> int:
    # "INSERT 0 3", "UPDATE 2", "DELETE 1"
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


@lru_cache(maxsize=32)
def _unnest_insert(table: Table) -> str:
    """One INSERT over parallel arrays, one per column. Tags travel as
    "pii,secret" (unnest cannot take an array of arrays of different lengths)."""
    arrays = ", ".join(
        f"${i}::{'text' if kind in (Kind.JSON, Kind.TAGS) else kind.value}[]"
        for i, (_, kind) in enumerate(table.columns, 1)
    )
    names = [f"c{i}" for i in range(len(table.columns))]
    values = ", ".join(
        f"string_to_array({n}, ',')" if kind is Kind.TAGS else f"{n}::jsonb" if kind is Kind.JSON else n
        for n, (_, kind) in zip(names, table.columns, strict=True)
    )
    return (
        f"INSERT INTO {table.name} ({table.column_names}) SELECT {values}"
        f" FROM unnest({arrays}) AS batch({', '.join(names)}) ON CONFLICT DO NOTHING"
    )


def _postgres_error(error: Exception) -> Exception:
    if isinstance(error, asyncpg.UniqueViolationError):
        return DuplicateRow()
    if isinstance(error, asyncpg.ForeignKeyViolationError):
        return MissingParent()
    return error


class _PostgresSession:
    """Statements on the pool (each its own transaction) or on one connection."""

    def __init__(self, executor: Any) -> None:
        self._executor = executor  # asyncpg.Pool or asyncpg.Connection: the same methods

    async def fetch(self, sql: str, *params: Any) -> list[Row]:
        try:
            return list(await self._executor.fetch(numbered(sql), *params))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise _postgres_error(error) from None

    async def fetchrow(self, sql: str, *params: Any) -> Row | None:
        try:
            return await self._executor.fetchrow(numbered(sql), *params)
        except asyncpg.IntegrityConstraintViolationError as error:
            raise _postgres_error(error) from None

    async def execute(self, sql: str, *params: Any) -> int:
        try:
            return _rows_changed(await self._executor.execute(numbered(sql), *params))
        except asyncpg.IntegrityConstraintViolationError as error:
            raise _postgres_error(error) from None

    execute_returning = fetch

    async def insert_new(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            await self._executor.execute(_unnest_insert(table), *_columns(table, rows))


def _columns(table: Table, rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    columns = [list(column) for column in zip(*rows, strict=True)]
    for index, (_, kind) in enumerate(table.columns):
        if kind is Kind.TAGS:
            columns[index] = [",".join(tags) for tags in columns[index]]
    return columns


class PostgresDatabase(_PostgresSession):
    name: Literal["postgres"] = "postgres"
    lock_row = " FOR UPDATE"
    binary_order = ' COLLATE "C"'  # the database's collation may sort by language
    json_entries = "jsonb_each_text({column}) AS entry"

    @staticmethod
    def has_entry(column: str, key: str, value: str) -> tuple[str, tuple[Any, ...]]:
        # Containment: the GIN index of migration 0009 answers it.
        return f"{column} @> ?::jsonb", (json.dumps({key: value}),)

    def __init__(self, pool: asyncpg.Pool, migrated: tuple[int, ...] = ()) -> None:
        super().__init__(pool)
        self.pool = pool
        self.migrated = migrated

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

    async def insert_new(self, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
        """COPY first: the fastest way in, but a single stored key fails it as
        a whole, and keys are stored already only when a batch is retried
        after an unclear failure. Then the idempotent INSERT writes the rest.
        Small batches skip COPY: it costs a round trip more."""
        if len(rows) < COPY_MIN_ROWS:
            await super().insert_new(table, rows)
            return
        try:
            await self.pool.copy_records_to_table(table.name, records=rows, columns=[name for name, _ in table.columns])
        except asyncpg.UniqueViolationError:
            await super().insert_new(table, rows)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Session]:
        async with self.pool.acquire() as connection, connection.transaction():
            yield _PostgresSession(connection)

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Session]:
        async with (
            self.pool.acquire() as connection,
            connection.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield _PostgresSession(connection)

    @staticmethod
    def time(value: datetime) -> datetime:
        return value

    @staticmethod
    def read_time(value: datetime) -> datetime:
        return value

    @staticmethod
    def words(values: Sequence[str]) -> list[str]:
        return list(values)

    @staticmethod
    def read_words(value: Iterable[str]) -> tuple[str, ...]:
        return tuple(value)

    @staticmethod
    def tags(values: Sequence[str]) -> list[str]:
        return list(values)

    @staticmethod
    def has_tag(column: str, tag: str) -> tuple[str, Any]:
        return f"? = ANY ({column})", tag

    @staticmethod
    def plus_seconds(time_param: str, seconds_column: str) -> str:
        return f"{time_param}::timestamptz + make_interval(secs => {seconds_column})"

    # One batch at a time (by the time index of migration 0005), so a large
    # backlog never holds one long transaction; by ctid, the row's address.
    delete_oldest = (
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} WHERE create_time < ? LIMIT ?))"
    )
    # A decision's categories are distinct, so unnesting them counts it once
    # in each.
    count_by_tag = (
        "SELECT category, count(*) FILTER (WHERE action = 'block') AS blocked,"
        " count(*) FILTER (WHERE action = 'redact') AS redacted, count(*) FILTER (WHERE action = 'log') AS logged"
        " FROM decisions, unnest(categories) AS category"
        " WHERE organisation = ? AND create_time >= ? AND create_time < ?"
        " AND action IN ('block', 'redact', 'log') GROUP BY category"
    )
    # percentile_disc: the nearest rank, always a latency that was measured
    # (ordered-set aggregates skip NULLs, so calls without a first token too).
    deployment_percentiles = """
SELECT deployment,
       count(*) AS requests,
       count(*) FILTER (WHERE status_code <> 'OK') AS failed_requests,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50_ms,
       percentile_disc(0.99) WITHIN GROUP (ORDER BY latency_ms) AS latency_p99_ms,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY time_to_first_token_ms) AS time_to_first_token_p50_ms,
       sum(cost_usd) AS cost_usd
{window}
GROUP BY deployment
"""
