"""The agent loop: a model turn through the chat pipeline (so routing, the
firewall, budgets and the request log apply to each), the tool calls it asks
for run at once, their results back to the model, until it answers or a
limit is reached. Every step is an event."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

from ..caller import Caller
from ..chat import ChatRequest, GenerationConfig, Message, Role, TextDelta, Tool, ToolCall, Usage
from ..errors import DomainError
from ..firewall.verdict import Action, Direction
from ..orchestrator import ChatEvent, CompletedAnswer, Orchestrator
from ..ports.tools import ToolCallLog, ToolCallRecord, ToolOutcome, ToolUnavailable
from .arguments import parse_arguments, schema_problem
from .definitions import AgentSpec
from .events import AgentEvent, RunFinished, RunStarted, StepText, StepUsed, StopReason, ToolFinished, ToolStarted
from .toolbox import Toolbox, split_name

log = logging.getLogger(__name__)

_END = object()  # a model turn's last queue item


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Totals:
    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.estimated = False

    def add(self, usage: Usage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost_usd += usage.cost_usd
        self.estimated = self.estimated or usage.estimated

    @property
    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.estimated, self.cost_usd)


class AgentLoop:
    def __init__(
        self,
        orchestrator: Orchestrator,
        toolbox: Toolbox,
        call_log: ToolCallLog | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.orchestrator = orchestrator
        self.firewall = orchestrator.firewall
        self.toolbox = toolbox
        self.call_log = call_log
        self.clock = clock
        self._background: set[asyncio.Task[None]] = set()

    async def run(
        self, agent: AgentSpec, prompt: str, history: Sequence[Message], caller: Caller
    ) -> AsyncIterator[AgentEvent]:
        yield RunStarted(caller.request_id, agent.name, agent.model)
        listing = await self.toolbox.listing(caller.organisation, agent=agent)
        tools = tuple(
            Tool(t.qualified_name, t.description, t.input_schema or {"type": "object"}) for t in listing.tools
        )
        messages: list[Message] = [Message(Role.SYSTEM, agent.system_prompt)] if agent.system_prompt else []
        messages.extend(history)
        messages.append(Message(Role.USER, prompt))
        totals = _Totals()
        calls_made = 0
        answer = ""

        def finish(reason: StopReason, steps: int, error: DomainError | None = None) -> RunFinished:
            return RunFinished(reason, answer, totals.usage, steps, calls_made, error)

        for step in range(1, agent.max_steps + 1):
            turn = CompletedAnswer()
            try:
                async for event in self._turn(agent, messages, tools, caller, turn, step):
                    yield event
            except TimeoutError:
                yield finish(StopReason.TIMEOUT, step)
                return
            except DomainError as error:
                yield finish(StopReason.ERROR, step, error)
                return
            usage = turn.usage or Usage(0, 0)
            totals.add(usage)
            yield StepUsed(step, usage, turn.start.deployment.name if turn.start else "")
            answer = turn.content
            if not turn.tool_calls:
                yield finish(StopReason.ANSWERED, step)
                return
            calls = [
                c if c.id else ToolCall(f"call_{step}_{i}", c.name, c.arguments_json)
                for i, c in enumerate(turn.tool_calls)
            ]
            messages.append(Message(Role.ASSISTANT, turn.content, tool_calls=tuple(calls)))
            if agent.token_budget and totals.usage.total_tokens >= agent.token_budget:
                yield finish(StopReason.TOKEN_BUDGET, step)
                return
            results: dict[str, str] = {}
            async for event in self._tools(agent, step, calls, caller):
                if isinstance(event, ToolFinished):
                    results[event.call_id] = event.result
                yield event
            calls_made += len(calls)
            messages.extend(Message(Role.TOOL, results[c.id], tool_call_id=c.id) for c in calls)
        yield finish(StopReason.MAX_STEPS, agent.max_steps)

    async def _turn(
        self,
        agent: AgentSpec,
        messages: list[Message],
        tools: tuple[Tool, ...],
        caller: Caller,
        turn: CompletedAnswer,
        step: int,
    ) -> AsyncIterator[AgentEvent]:
        """One model turn, bounded by the step timeout (TimeoutError). The
        answer streams from its own task, so the timeout can cut it anywhere."""
        request = ChatRequest(agent.model, list(messages), GenerationConfig(tools=tools))
        queue: asyncio.Queue[object] = asyncio.Queue()

        async def produce() -> None:
            try:
                async for event in self.orchestrator.chat(request, caller):
                    queue.put_nowait(event)
                queue.put_nowait(_END)
            except Exception as error:  # handed to the loop, which raises it
                queue.put_nowait(error)

        task = asyncio.create_task(produce())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + agent.step_timeout_seconds
        try:
            while True:
                item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                if item is _END:
                    return
                if isinstance(item, Exception):
                    raise item
                event: ChatEvent = item  # type: ignore[assignment]
                turn.add(event)
                if isinstance(event, TextDelta) and event.text:
                    yield StepText(step, event.text)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _tools(
        self, agent: AgentSpec, step: int, calls: list[ToolCall], caller: Caller
    ) -> AsyncIterator[AgentEvent]:
        """The turn's tool calls, all at once; each ends as it finishes. A
        cancel (the client went away) cancels every one still running."""
        for call in calls:
            yield ToolStarted(step, call.id, call.name, call.arguments_json)
        done: asyncio.Queue[asyncio.Task[ToolFinished]] = asyncio.Queue()
        tasks = [asyncio.create_task(self._one(agent, step, call, caller)) for call in calls]
        for task in tasks:
            task.add_done_callback(done.put_nowait)
        try:
            for _ in tasks:
                yield (await done.get()).result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, agent: AgentSpec, step: int, call: ToolCall, caller: Caller) -> ToolFinished:
        started = time.perf_counter()
        try:
            outcome, text, truncated = await self._execute(agent, call, caller)
        except asyncio.CancelledError:
            # Recorded off this task: it is being cancelled.
            self._record_later(agent, call, caller, ToolOutcome.CANCELLED, time.perf_counter() - started)
            raise
        except Exception:
            log.exception("tool call %s failed unexpectedly", call.name)
            outcome, text, truncated = ToolOutcome.UNAVAILABLE, "error: the tool call failed in the gateway", False
        duration = time.perf_counter() - started
        await self._record(agent, call, caller, outcome, duration)
        return ToolFinished(step, call.id, call.name, outcome, duration, text, truncated)

    async def _execute(self, agent: AgentSpec, call: ToolCall, caller: Caller) -> tuple[ToolOutcome, str, bool]:
        """How the call ended, and the text the model is given for it."""
        server_name, tool_name = split_name(call.name)
        server = self.toolbox.server(server_name)
        if server is None or not tool_name or not server.serves(caller.organisation) or not agent.allows(call.name):
            return (
                ToolOutcome.PERMISSION_DENIED,
                f"error: the tool {call.name} is not allowed here; do not call it",
                False,
            )
        try:
            listed = await self.toolbox.server_tools(server)
        except ToolUnavailable as error:
            self.toolbox.forget(server.name)
            return ToolOutcome.UNAVAILABLE, f"error: {error}", False
        spec = next((t for t in listed if t.name == tool_name), None)
        if spec is None:
            return ToolOutcome.PERMISSION_DENIED, f"error: there is no tool {call.name}", False
        arguments, problem = parse_arguments(call.arguments_json)
        if arguments is None:
            return ToolOutcome.INVALID_ARGUMENTS, f"error: {problem}", False
        problem = schema_problem(spec.input_schema, arguments)
        if problem:
            return ToolOutcome.INVALID_ARGUMENTS, f"error: invalid arguments: {problem}", False
        # The arguments leave the gateway, like an answer: the output scan.
        verdict = await self.firewall.scan(call.arguments_json, Direction.OUTPUT, caller)
        if verdict.action is Action.BLOCK:
            return ToolOutcome.BLOCKED, "error: the gateway's firewall blocked these arguments", False
        if verdict.action is Action.REDACT:
            arguments, _ = parse_arguments(verdict.redacted_text)
            if arguments is None:
                return ToolOutcome.BLOCKED, "error: the gateway's firewall blocked these arguments", False
        timeout = min(server.call_timeout_seconds, agent.step_timeout_seconds)
        try:
            async with asyncio.timeout(timeout):
                result = await self.toolbox.runner.call_tool(server, tool_name, arguments)
        except TimeoutError:
            return ToolOutcome.TIMEOUT, f"error: the tool did not answer within {timeout:g}s", False
        except ToolUnavailable as error:
            self.toolbox.forget(server.name)
            return ToolOutcome.UNAVAILABLE, f"error: {error}", False
        text, truncated = result.text, False
        if len(text) > server.max_result_chars:
            if server.oversize == "refuse":
                return (
                    ToolOutcome.TOO_LARGE,
                    f"error: the tool's result ({len(text)} characters) is over the limit of {server.max_result_chars}",
                    False,
                )
            text = text[: server.max_result_chars] + f"\n[cut by the gateway: {len(result.text)} characters in all]"
            truncated = True
        # The result goes to the model, like a prompt: the input scan. It is
        # the classic injection and leak path, so a block withholds it.
        verdict = await self.firewall.scan(text, Direction.INPUT, caller)
        if verdict.action is Action.BLOCK:
            categories = sorted({f.category.value for f in verdict.findings})
            return (
                ToolOutcome.BLOCKED,
                f"error: the gateway's firewall withheld the tool's result ({', '.join(categories)})",
                truncated,
            )
        if verdict.action is Action.REDACT:
            text = verdict.redacted_text
        if result.is_error:
            return ToolOutcome.TOOL_ERROR, f"error: {text}", truncated
        return ToolOutcome.OK, text, truncated

    def _entry(
        self, agent: AgentSpec, call: ToolCall, caller: Caller, outcome: ToolOutcome, duration: float
    ) -> ToolCallRecord | None:
        if self.call_log is None:
            return None
        return ToolCallRecord(
            id=self.call_log.new_id(),
            create_time=self.clock(),
            organisation=caller.organisation,
            request_id=caller.request_id,
            principal=caller.principal,
            agent=agent.name,
            tool=call.name,
            arguments_sha256=hashlib.sha256(call.arguments_json.encode()).hexdigest(),
            duration_ms=duration * 1000,
            outcome=outcome,
        )

    async def _record(
        self, agent: AgentSpec, call: ToolCall, caller: Caller, outcome: ToolOutcome, duration: float
    ) -> None:
        entry = self._entry(agent, call, caller, outcome, duration)
        if entry is None or self.call_log is None:
            return
        try:
            await self.call_log.record_many((entry,))
        except Exception:
            # The run goes on: a lost record must not fail the agent.
            log.exception("could not record a tool call of %s", call.name)

    def _record_later(
        self, agent: AgentSpec, call: ToolCall, caller: Caller, outcome: ToolOutcome, duration: float
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._record(agent, call, caller, outcome, duration))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
