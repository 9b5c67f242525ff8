"""The tools file (POINTSMAN_TOOLS_FILE: MCP servers) and the agents file
(POINTSMAN_AGENTS_FILE), read and checked: a mistake names the file, the
entry and the field. `AgentsReloader` rereads them when they change (or on
SIGHUP); a reload with a mistake keeps the definitions in force and logs why."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..domain.agents.definitions import AgentSpec, Definitions, DefinitionsHolder
from ..domain.ports.tools import SEPARATOR, ToolServer

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1 << 20
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")  # no "_": "__" separates server and tool


class AgentsFileError(ValueError):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ServerConfig(_Strict):
    command: str = ""
    args: list[str] = []
    env: dict[str, str] = {}
    url: str = ""
    headers: dict[str, str] = {}
    connect_timeout_seconds: float = Field(10.0, gt=0, le=300)
    call_timeout_seconds: float = Field(30.0, gt=0, le=3600)
    organisations: list[str] = []
    max_result_chars: int = Field(65_536, ge=1, le=10_000_000)
    oversize: Literal["truncate", "refuse"] = "truncate"

    @model_validator(mode="after")
    def _one_transport(self) -> _ServerConfig:
        if bool(self.command) == bool(self.url):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return self


class _ToolsFile(_Strict):
    servers: dict[str, _ServerConfig] = {}

    @field_validator("servers")
    @classmethod
    def _names(cls, servers: dict[str, _ServerConfig]) -> dict[str, _ServerConfig]:
        for name in servers:
            if not _NAME.fullmatch(name):
                raise ValueError(f"server name {name!r} must be 1-40 lower-case letters, digits or dashes")
        return servers


class _AgentConfig(_Strict):
    model: str = Field(min_length=1)
    system_prompt: str = ""
    tools: list[str] = []
    max_steps: int = Field(8, ge=1, le=100)
    step_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    token_budget: int = Field(0, ge=0)
    description: str = ""


class _AgentsFile(_Strict):
    agents: dict[str, _AgentConfig] = {}


def _read(path: Path, what: str) -> Any:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise AgentsFileError(f"{what} file {path} is larger than {MAX_FILE_BYTES} bytes")
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise AgentsFileError(f"cannot read {what} file {path}: {error.strerror}") from error
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise AgentsFileError(f"{what} file {path} is not valid YAML: {error}") from error


def _problems(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in error.errors())


def load_tools_file(path: Path) -> dict[str, ToolServer]:
    try:
        config = _ToolsFile.model_validate(_read(path, "tools"))
    except ValidationError as error:
        raise AgentsFileError(f"tools file {path} is invalid: {_problems(error)}") from error
    return {
        name: ToolServer(
            name=name,
            command=s.command,
            args=tuple(s.args),
            env=tuple(sorted(s.env.items())),
            url=s.url,
            headers=tuple(sorted(s.headers.items())),
            connect_timeout_seconds=s.connect_timeout_seconds,
            call_timeout_seconds=s.call_timeout_seconds,
            organisations=tuple(s.organisations),
            max_result_chars=s.max_result_chars,
            oversize=s.oversize,
        )
        for name, s in config.servers.items()
    }


def load_agents_file(path: Path, servers: Collection[str], models: Collection[str]) -> dict[str, AgentSpec]:
    """The agents, each checked against the tool servers and model aliases there are."""
    try:
        config = _AgentsFile.model_validate(_read(path, "agents"))
    except ValidationError as error:
        raise AgentsFileError(f"agents file {path} is invalid: {_problems(error)}") from error
    problems: list[str] = []
    for name, agent in config.agents.items():
        if not _NAME.fullmatch(name):
            problems.append(f"agents.{name}: the name must be 1-40 lower-case letters, digits or dashes")
        if agent.model not in models:
            problems.append(f"agents.{name}.model: {agent.model!r} is not a model alias ({', '.join(sorted(models))})")
        for index, tool in enumerate(agent.tools):
            server, _, rest = tool.partition(SEPARATOR)
            if not rest or server not in servers:
                problems.append(
                    f"agents.{name}.tools[{index}]: {tool!r} must be {{server}}{SEPARATOR}{{tool}} or"
                    f" {{server}}{SEPARATOR}* with a server of the tools file"
                )
    if problems:
        raise AgentsFileError(f"agents file {path} is invalid: {'; '.join(problems)}")
    return {
        name: AgentSpec(
            name=name,
            model=a.model,
            system_prompt=a.system_prompt,
            tools=tuple(a.tools),
            max_steps=a.max_steps,
            step_timeout_seconds=a.step_timeout_seconds,
            token_budget=a.token_budget,
            description=a.description,
        )
        for name, a in config.agents.items()
    }


def load_definitions(tools_file: Path | None, agents_file: Path | None, models: Collection[str]) -> Definitions:
    servers = load_tools_file(tools_file) if tools_file is not None else {}
    agents = load_agents_file(agents_file, servers, models) if agents_file is not None else {}
    return Definitions(servers, agents)


def _mtime(path: Path | None) -> float | None:
    try:
        return path.stat().st_mtime_ns if path is not None else None
    except OSError:
        return None


class AgentsReloader:
    """Rereads the two files when either changes (polled) or on `reload()`."""

    def __init__(
        self,
        holder: DefinitionsHolder,
        tools_file: Path | None,
        agents_file: Path | None,
        models: Callable[[], Collection[str]],
        poll_seconds: float,
    ) -> None:
        self.holder = holder
        self.tools_file = tools_file
        self.agents_file = agents_file
        self._models = models
        self._poll_seconds = poll_seconds
        self._seen = (_mtime(tools_file), _mtime(agents_file))
        self._task: asyncio.Task[None] | None = None
        self.last_error = ""

    def reload(self) -> bool:
        """True if the new definitions are in force; else the old ones stay."""
        self._seen = (_mtime(self.tools_file), _mtime(self.agents_file))
        try:
            definitions = load_definitions(self.tools_file, self.agents_file, self._models())
        except AgentsFileError as error:
            self.last_error = str(error)
            log.error("agents reload failed, the definitions in force stay: %s", error)
            return False
        self.last_error = ""
        self.holder.replace(definitions)
        log.info("agents reloaded: %d agent(s), %d tool server(s)", len(definitions.agents), len(definitions.servers))
        return True

    def start(self) -> None:
        if self._poll_seconds > 0 and (self.tools_file or self.agents_file):
            self._task = asyncio.create_task(self._poll(), name="agents reload")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_seconds)
            if (_mtime(self.tools_file), _mtime(self.agents_file)) != self._seen:
                self.reload()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
