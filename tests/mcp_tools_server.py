"""An MCP tool server for the tests, written with the official SDK (MCPServer,
formerly FastMCP). Over stdio by default; with --http it serves streamable
HTTP on a free loopback port and prints the port on its first line."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

tools = MCPServer("pointsman-test-tools", log_level="CRITICAL")


@tools.tool()
def add(a: int, b: int) -> str:
    """Adds two integers."""
    return str(a + b)


@tools.tool()
def echo(text: str) -> str:
    """Returns the text."""
    return text


@tools.tool()
def shout(echo: str) -> str:
    """Returns the text in capitals (its argument is what the fake OpenAI upstream sends)."""
    return echo.upper()


@tools.tool()
async def slow(seconds: float) -> str:
    """Answers after the given number of seconds."""
    await asyncio.sleep(seconds)
    return "done"


@tools.tool()
def fail(message: str) -> str:
    """Always fails with the message."""
    raise ToolError(message)


@tools.tool()
def big(size: int) -> str:
    """Returns `size` characters."""
    return "x" * size


@tools.tool()
def leak() -> str:
    """Returns a text carrying an API key, as a compromised tool might."""
    return "the config says OPENAI_API_KEY=sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"


@tools.tool()
def crash() -> str:
    """Ends the server's process mid-call."""
    os._exit(3)


def serve_http() -> None:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    app = tools.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    if "--http" in sys.argv:
        serve_http()
    else:
        tools.run()
