"""The tools an organisation and an agent may use, listed from their servers
(cached for a short while) and looked up by their qualified name."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from ..ports.tools import SEPARATOR, ToolRunner, ToolServer, ToolSpec, ToolUnavailable
from .definitions import AgentSpec, DefinitionsHolder

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Listing:
    tools: list[ToolSpec]
    unavailable: list[str]


class Toolbox:
    def __init__(self, definitions: DefinitionsHolder, runner: ToolRunner, cache_seconds: float = 30.0) -> None:
        self.definitions = definitions
        self.runner = runner
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ToolServer, list[ToolSpec]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def server(self, name: str) -> ToolServer | None:
        return self.definitions.current.servers.get(name)

    async def server_tools(self, server: ToolServer) -> list[ToolSpec]:
        """The server's tools; raises ToolUnavailable. A changed definition is listed anew."""
        cached = self._cache.get(server.name)
        if cached is not None and cached[1] == server and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[2]
        lock = self._locks.setdefault(server.name, asyncio.Lock())
        async with lock:
            cached = self._cache.get(server.name)
            if cached is not None and cached[1] == server and time.monotonic() - cached[0] < self._cache_seconds:
                return cached[2]
            if cached is not None and cached[1] != server:
                await self.runner.forget(server.name)
            try:
                async with asyncio.timeout(server.connect_timeout_seconds):
                    tools = await self.runner.list_tools(server)
            except TimeoutError:
                raise ToolUnavailable(f"tool server {server.name} did not answer in time") from None
            tools.sort(key=lambda t: t.name)
            self._cache[server.name] = (time.monotonic(), server, tools)
            return tools

    def forget(self, server: str) -> None:
        """Lists the server anew next time (it failed: it may have restarted)."""
        self._cache.pop(server, None)

    async def listing(self, organisation: str, only_server: str = "", agent: AgentSpec | None = None) -> Listing:
        """The tools the organisation (and the agent, if given) may use, from
        every server at once; a server that does not answer is named."""
        servers = [
            s
            for name, s in sorted(self.definitions.current.servers.items())
            if s.serves(organisation) and (not only_server or name == only_server)
        ]
        results = await asyncio.gather(*(self.server_tools(s) for s in servers), return_exceptions=True)
        tools: list[ToolSpec] = []
        unavailable: list[str] = []
        for server, result in zip(servers, results, strict=True):
            if isinstance(result, ToolUnavailable):
                unavailable.append(server.name)
            elif isinstance(result, BaseException):
                log.warning("listing the tools of %s failed: %r", server.name, result)
                unavailable.append(server.name)
            else:
                tools.extend(t for t in result if agent is None or agent.allows(t.qualified_name))
        return Listing(tools, unavailable)


def split_name(qualified: str) -> tuple[str, str]:
    server, _, tool = qualified.partition(SEPARATOR)
    return server, tool
