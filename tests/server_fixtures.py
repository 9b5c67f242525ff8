"""Fixtures that start a real Pointsman server on port 0 and real clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from pointsman.client import AsyncClient, PointsmanError
from pointsman.server.app.server import PointsmanServer, open_server
from pointsman.server.settings import Settings

ServerFactory = Callable[..., Awaitable[PointsmanServer]]


def settings(**env: Any) -> Settings:
    """Settings as the environment would give them, isolated from the real environment."""
    values: dict[str, Any] = {
        "POINTSMAN_ADDRESS": "127.0.0.1:0",
        "OPENAI_API_KEY": None,
        "OPENAI_BASE_URL": None,
        "ANTHROPIC_API_KEY": None,
        "ANTHROPIC_BASE_URL": None,
        "USE_MOCK": False,
        "REGISTRY_ADDR": None,
        "FIREWALL_ALLOWLIST_TOPICS": [],
        "POINTSMAN_SHUTDOWN_GRACE_SECONDS": 5,
        # Each server gets a throwaway database; tests that share one say so.
        "DATABASE_URL": "sqlite://:memory:",
        "REDIS_URL": None,
        "POINTSMAN_DEV_MODE": True,
    }
    values.update(env)
    return Settings(**values)


@pytest_asyncio.fixture
async def start_server() -> AsyncIterator[ServerFactory]:
    """Starts servers with the given settings; stops them all afterwards."""
    started: list[PointsmanServer] = []

    async def start(**env: Any) -> PointsmanServer:
        server = await open_server(settings(**env))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop(grace=0)


@pytest_asyncio.fixture
async def server(start_server: ServerFactory) -> PointsmanServer:
    return await start_server()


@pytest_asyncio.fixture
async def client(server: PointsmanServer) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server.address, timeout=10) as c:
        yield c


async def eventually(check: Callable[[], Awaitable[bool] | bool], timeout: float = 5.0) -> None:
    """Polls until `check` is true; fails after `timeout` seconds. No fixed sleeps."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def raises(awaitable: Awaitable[Any]) -> PointsmanError:
    with pytest.raises(PointsmanError) as caught:
        await awaitable
    return caught.value


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]
