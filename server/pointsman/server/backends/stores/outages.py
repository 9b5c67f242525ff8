"""Telling a database that is down or refusing connections apart from a bug:
the first is worth a retry (UNAVAILABLE), the second is an internal error."""

from __future__ import annotations

import socket
import sqlite3

# SQLSTATE classes and codes a reachable-again database clears by itself:
# connection exceptions (08), insufficient resources such as too many
# connections (53), operator intervention: shutting down, starting up (57),
# and a database not accepting connections now (55000).
_OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "53", "57"})
_OUTAGE_SQLSTATES = frozenset({"55000"})
# SQLite: another process holds the write lock past the busy timeout, or the
# file cannot be opened (a volume gone).
_SQLITE_OUTAGES = ("database is locked", "database is busy", "unable to open database")


def is_database_outage(error: BaseException) -> bool:
    if isinstance(error, ConnectionError | TimeoutError | socket.gaierror) or type(error) is OSError:
        return True  # refused, reset, no such host, unreachable (a bare OSError), timed out; not file errors
    sqlstate = getattr(error, "sqlstate", None)  # asyncpg's PostgresError
    if isinstance(sqlstate, str) and (sqlstate[:2] in _OUTAGE_SQLSTATE_CLASSES or sqlstate in _OUTAGE_SQLSTATES):
        return True
    return isinstance(error, sqlite3.OperationalError) and str(error).startswith(_SQLITE_OUTAGES)


def is_refused_value(error: BaseException) -> bool:
    """The database refused a value the caller sent (SQLSTATE class 22, data
    exception: a NUL character, a number or time out of range; or SQLite's
    integer overflow). Validation should have caught it; this is the last
    resort that keeps it from being reported as an outage or a bug."""
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith("22"):
        return True
    return isinstance(error, OverflowError) and "SQLite" in str(error)
