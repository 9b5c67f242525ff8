"""Agents wired: the definitions from the tools and agents files, the MCP
tool runner, the toolbox, the loop on the chat pipeline, and the reloader."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.agents.definitions import DefinitionsHolder
from ..domain.agents.loop import AgentLoop
from ..domain.agents.toolbox import Toolbox
from ..domain.agents.workflow import WorkflowRunner
from ..domain.catalog import ModelCatalog
from ..domain.embedding import ModelKind
from ..domain.orchestrator import Orchestrator
from ..domain.ports.tools import ToolCallLog
from ..providers.mcp_tools import McpToolRunner
from ..settings import Settings
from .agents_config import AgentsFileError, AgentsReloader, load_definitions


@dataclass
class AgentsStack:
    definitions: DefinitionsHolder
    toolbox: Toolbox
    loop: AgentLoop
    reloader: AgentsReloader
    runner: McpToolRunner
    workflows: WorkflowRunner
    default_workflow: str

    def start(self) -> None:
        self.reloader.start()

    async def aclose(self) -> None:
        await self.reloader.aclose()
        await self.loop.aclose()
        await self.runner.aclose()


def build_agents(
    settings: Settings, orchestrator: Orchestrator, catalog: ModelCatalog, call_log: ToolCallLog
) -> AgentsStack:
    """Raises AgentsFileError (naming the file, the entry and the field) for a mistake in either file."""

    def models() -> list[str]:
        return [route.alias for route in catalog.routes()]

    holder = DefinitionsHolder(load_definitions(settings.tools_file, settings.agents_file, models()))
    runner = McpToolRunner()
    toolbox = Toolbox(holder, runner)
    loop = AgentLoop(orchestrator, toolbox, call_log)
    reloader = AgentsReloader(holder, settings.tools_file, settings.agents_file, models, settings.agents_reload_seconds)

    def chat_models() -> list[str]:
        return [route.alias for route in catalog.routes() if route.kind is ModelKind.CHAT]

    workflows = WorkflowRunner(orchestrator, loop, holder, chat_models)
    default = settings.default_analysis
    if default not in workflows.all():
        raise AgentsFileError(
            f"ORCHESTRATOR_DEFAULT_ANALYSIS: {default!r} is not a workflow ({', '.join(sorted(workflows.all()))})"
        )
    return AgentsStack(holder, toolbox, loop, reloader, runner, workflows, default)
