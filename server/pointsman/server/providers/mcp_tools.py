"""The ToolRunner port over MCP, with the official SDK: one connection per
tool server (a stdio subprocess, or a streamable HTTP session), opened on
first use, kept open, and opened anew after it failed."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import AsyncExitStack
from typing import Any

import anyio
import mcp
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from ..domain.ports.tools import ToolResult, ToolServer, ToolSpec, ToolUnavailable

log = logging.getLogger(__name__)


class _Connection:
    """One server's session, held open by its own task: the SDK's transports
    are anyio task groups, entered and left in one task."""

    def __init__(self, server: ToolServer) -> None:
        self.server = server
        self._session: mcp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._failure = ""

    async def session(self) -> mcp.ClientSession:
        if self._task is None or self._task.done():
            self._ready, self._stop, self._session, self._failure = asyncio.Event(), asyncio.Event(), None, ""
            self._task = asyncio.create_task(self._hold(), name=f"mcp {self.server.name}")
        await self._ready.wait()
        if self._session is None:
            raise ToolUnavailable(f"tool server {self.server.name} is unavailable ({self._failure or 'closed'})")
        return self._session

    async def _hold(self) -> None:
        server = self.server
        try:
            async with AsyncExitStack() as stack:
                if server.url:
                    http = create_mcp_http_client(headers=dict(server.headers) or None)
                    await stack.enter_async_context(http)
                    read, write = await stack.enter_async_context(streamable_http_client(server.url, http_client=http))
                else:
                    parameters = mcp.StdioServerParameters(
                        command=server.command, args=list(server.args), env=dict(server.env) or None
                    )
                    read, write = await stack.enter_async_context(mcp.stdio_client(parameters))
                session = await stack.enter_async_context(mcp.ClientSession(read, write))
                with anyio.fail_after(server.connect_timeout_seconds):
                    await session.initialize()
                self._session = session
                self._ready.set()
                await self._stop.wait()
        except BaseException as error:
            # The type only: a message could carry a URL with credentials.
            self._failure = "timed out" if isinstance(error, TimeoutError) else type(error).__name__
            if not isinstance(error, asyncio.CancelledError):
                log.warning("tool server %s: connection failed or ended: %s", server.name, self._failure)
        finally:
            self._session = None
            self._ready.set()

    async def aclose(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        self._stop.set()
        try:
            async with asyncio.timeout(5):
                await asyncio.shield(task)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class McpToolRunner:
    def __init__(self) -> None:
        self._connections: dict[str, _Connection] = {}

    def _connection(self, server: ToolServer) -> _Connection:
        connection = self._connections.get(server.name)
        if connection is None or connection.server != server:
            if connection is not None:
                asyncio.get_running_loop().create_task(connection.aclose())
            connection = self._connections[server.name] = _Connection(server)
        return connection

    async def _broken(self, server: ToolServer, what: str) -> ToolUnavailable:
        connection = self._connections.pop(server.name, None)
        if connection is not None:
            await connection.aclose()
        return ToolUnavailable(f"tool server {server.name} {what}")

    async def list_tools(self, server: ToolServer) -> list[ToolSpec]:
        session = await self._connection(server).session()
        tools: list[ToolSpec] = []
        cursor: str | None = None
        try:
            while True:
                params = mcp.types.PaginatedRequestParams(cursor=cursor) if cursor else None
                page = await session.list_tools(params=params)
                tools.extend(
                    ToolSpec(server.name, t.name, t.description or "", dict(t.input_schema or {})) for t in page.tools
                )
                cursor = page.next_cursor
                if not cursor:
                    return tools
        except mcp.MCPError:
            raise await self._broken(server, "failed to list its tools") from None
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise await self._broken(server, "closed the connection") from None

    async def call_tool(self, server: ToolServer, tool: str, arguments: dict[str, Any]) -> ToolResult:
        session = await self._connection(server).session()
        try:
            result = await session.call_tool(tool, arguments)
        except mcp.MCPError as error:
            if error.error.code == mcp.types.CONNECTION_CLOSED:
                raise await self._broken(server, "closed the connection mid-call") from None
            # A protocol error from a live server (unknown tool, bad params): the model may do better.
            return ToolResult(error.error.message[:2000], is_error=True)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise await self._broken(server, "closed the connection mid-call") from None
        if not isinstance(result, mcp.types.CallToolResult):
            return ToolResult("the tool asked for input the gateway cannot give", is_error=True)
        return ToolResult(_text_of(result), is_error=bool(result.is_error))

    async def forget(self, server: str) -> None:
        connection = self._connections.pop(server, None)
        if connection is not None:
            await connection.aclose()

    async def aclose(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)


def _text_of(result: mcp.types.CallToolResult) -> str:
    """The result's text blocks; without any, its structured content as JSON."""
    texts = [block.text for block in result.content if isinstance(block, mcp.types.TextContent)]
    if texts:
        return "\n".join(texts)
    if result.structured_content is not None:
        return json.dumps(result.structured_content)
    kinds = sorted({getattr(block, "type", "?") for block in result.content})
    return f"[{', '.join(kinds)} content]" if kinds else ""
