"""Real PostgreSQL and Redis for server-level tests: a fresh database per
test (dropped after), a Redis key prefix per test (its keys deleted after),
and outages made by refusing connections or stopping a proxy."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from redis.asyncio import Redis

POSTGRES_ADMIN_URL = os.environ.get("POINTSMAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("POINTSMAN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class PostgresDatabase:
    name: str
    url: str

    async def set_down(self, down: bool) -> None:
        """Refuses (and cuts) every connection, or lets them in again: an
        outage as the server sees it, without stopping the shared server."""
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            await admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS {"false" if down else "true"}')
            if down:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1"
                    " AND pid <> pg_backend_pid()",
                    self.name,
                )
        finally:
            await admin.close()

    async def fetchval(self, sql: str, *args: object) -> object:
        connection = await asyncpg.connect(self.url)
        try:
            return await connection.fetchval(sql, *args)
        finally:
            await connection.close()


@pytest.fixture
async def postgres_database() -> AsyncIterator[PostgresDatabase]:
    name = f"pointsman_test_{secrets.token_hex(6)}"
    parts = urlsplit(POSTGRES_ADMIN_URL)
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield PostgresDatabase(name, urlunsplit(parts._replace(path=f"/{name}")))
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own; every key under it is deleted after."""
    prefix = f"pointsman-test:{secrets.token_hex(4)}:"
    yield prefix
    admin = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in admin.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await admin.delete(*keys)
    finally:
        await admin.aclose()
