"""The tools file (POINTSMAN_TOOLS_FILE: MCP servers) and the agents file
(POINTSMAN_AGENTS_FILE: agents, and workflows of steps), read and checked: a mistake names the file, the
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

from ..domain.agents.definitions import END, AgentSpec, Definitions, DefinitionsHolder, StepSpec, WorkflowSpec
from ..domain.agents.workflow import references
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


class _StepConfig(_Strict):
    name: str
    kind: Literal["classify", "chat", "agent", "compare", "branch"]
    model: str = ""
    agent: str = ""
    models: list[str] = []
    judge: str = ""
    prompt: str = Field("{input}", min_length=1)
    system_prompt: str = ""
    rules: dict[str, list[str]] = {}
    default: str = ""
    source: str = ""
    branches: dict[str, str] = {}
    next: str = ""


class _WorkflowConfig(_Strict):
    description: str = ""
    max_steps: int = Field(20, ge=1, le=200)
    timeout_seconds: float = Field(300.0, gt=0, le=86_400)
    steps: list[_StepConfig] = Field(min_length=1, max_length=100)


class _AgentsFile(_Strict):
    agents: dict[str, _AgentConfig] = {}
    workflows: dict[str, _WorkflowConfig] = {}


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


def load_agents_file(
    path: Path, servers: Collection[str], models: Collection[str]
) -> tuple[dict[str, AgentSpec], dict[str, WorkflowSpec]]:
    """The agents and workflows, checked against the tool servers and model aliases there are."""
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
    for name, workflow in config.workflows.items():
        problems.extend(workflow_problems(name, workflow, set(config.agents), models))
    if problems:
        raise AgentsFileError(f"agents file {path} is invalid: {'; '.join(problems)}")
    workflows = {name: _workflow(name, w) for name, w in config.workflows.items()}
    agents = {
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
    return agents, workflows


def workflow_problems(
    name: str, workflow: _WorkflowConfig, agents: Collection[str], models: Collection[str]
) -> list[str]:
    """What is wrong with a workflow, each naming its place."""
    where = f"workflows.{name}"
    problems: list[str] = []
    if not _NAME.fullmatch(name):
        problems.append(f"{where}: the name must be 1-40 lower-case letters, digits or dashes")
    names = [step.name for step in workflow.steps]
    kinds = {step.name: step.kind for step in workflow.steps}

    def model(place: str, alias: str) -> None:
        if alias not in models:
            problems.append(f"{place}: {alias!r} is not a model alias ({', '.join(sorted(models))})")

    def target(place: str, step_name: str) -> None:
        if step_name != END and step_name not in kinds:
            problems.append(f"{place}: {step_name!r} is not a step of this workflow (or {END!r})")

    for index, step in enumerate(workflow.steps):
        place = f"{where}.steps[{index}]"
        if not _NAME.fullmatch(step.name) or step.name == END:
            problems.append(
                f"{place}.name: {step.name!r} must be 1-40 lower-case letters, digits or dashes, not {END!r}"
            )
        elif names.count(step.name) > 1:
            problems.append(f"{place}.name: {step.name!r} is used by more than one step")
        for ref in references(step.prompt):
            if ref not in kinds:
                problems.append(f"{place}.prompt: {{steps.{ref}}} is not a step of this workflow")
        if step.next:
            target(f"{place}.next", step.next)
        if step.kind == "chat":
            if not step.model:
                problems.append(f"{place}.model: is required for a chat step")
            else:
                model(f"{place}.model", step.model)
        elif step.kind == "agent":
            if step.agent not in agents:
                problems.append(f"{place}.agent: {step.agent!r} is not an agent of this file")
        elif step.kind == "compare":
            for m_index, alias in enumerate(step.models):
                model(f"{place}.models[{m_index}]", alias)
            if step.judge:
                model(f"{place}.judge", step.judge)
        elif step.kind == "classify":
            if not step.rules:
                problems.append(f"{place}.rules: a classify step needs at least one label with keywords")
            for label, keywords in step.rules.items():
                if not keywords or not all(k.strip() for k in keywords):
                    problems.append(f"{place}.rules.{label}: give one or more non-empty keywords")
        elif step.kind == "branch":
            if kinds.get(step.source) != "classify":
                problems.append(f"{place}.source: {step.source!r} must name a classify step of this workflow")
            if not step.branches:
                problems.append(f"{place}.branches: a branch step needs at least one label")
            for label, step_name in step.branches.items():
                target(f"{place}.branches.{label}", step_name)
            if step.default:
                target(f"{place}.default", step.default)
            if step.next:
                problems.append(f"{place}.next: a branch step goes where its branches say; use default")
    return problems


def _workflow(name: str, workflow: _WorkflowConfig) -> WorkflowSpec:
    return WorkflowSpec(
        name=name,
        description=workflow.description,
        max_steps=workflow.max_steps,
        timeout_seconds=workflow.timeout_seconds,
        steps=tuple(
            StepSpec(
                name=s.name,
                kind=s.kind,
                model=s.model,
                agent=s.agent,
                models=tuple(s.models),
                judge=s.judge,
                prompt=s.prompt,
                system_prompt=s.system_prompt,
                rules=tuple((label, tuple(k)) for label, k in s.rules.items()),
                default_label=s.default if s.kind == "classify" else "",
                source=s.source,
                branches=tuple(s.branches.items()),
                default_branch=s.default if s.kind == "branch" else "",
                next=s.next,
            )
            for s in workflow.steps
        ),
    )


def load_definitions(tools_file: Path | None, agents_file: Path | None, models: Collection[str]) -> Definitions:
    servers = load_tools_file(tools_file) if tools_file is not None else {}
    agents, workflows = load_agents_file(agents_file, servers, models) if agents_file is not None else ({}, {})
    return Definitions(servers, agents, workflows)


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
        log.info(
            "agents reloaded: %d agent(s), %d workflow(s), %d tool server(s)",
            len(definitions.agents),
            len(definitions.workflows),
            len(definitions.servers),
        )
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
