"""A workflow run: its steps one after another (classify, a templated chat,
an agent, a fan-out to several models with a judge's synthesis, a branch by
the classify label), each through the chat pipeline, every step an event."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from ..caller import Caller
from ..chat import ChatRequest, GenerationConfig, Message, Role, TextDelta, Usage
from ..errors import DomainError
from ..orchestrator import CompletedAnswer, Orchestrator
from .definitions import END, DefinitionsHolder, StepSpec, WorkflowSpec
from .events import RunFinished, StepText, StopReason
from .loop import AgentLoop, _Totals

_REFERENCE = re.compile(r"\{(input|steps\.([a-z0-9][a-z0-9-]*))\}")

JUDGE_SYSTEM_PROMPT = (
    "You compare answers from several models. Say where they agree and differ, "
    "which is most accurate and why, then write the best combined answer."
)


@dataclass(frozen=True, slots=True)
class WorkflowStarted:
    request_id: str
    workflow: str


@dataclass(frozen=True, slots=True)
class StepStarted:
    step: str
    kind: str


@dataclass(frozen=True, slots=True)
class StepDelta:
    step: str
    source: str
    text: str
    synthesis: bool = False


@dataclass(frozen=True, slots=True)
class StepFinished:
    step: str
    output: str
    duration_seconds: float
    usage: Usage


@dataclass(frozen=True, slots=True)
class WorkflowFinished:
    reason: StopReason
    answer: str
    usage: Usage
    steps: int
    error: DomainError | None = None


WorkflowEvent = WorkflowStarted | StepStarted | StepDelta | StepFinished | WorkflowFinished


def render(template: str, user_input: str, outputs: dict[str, str]) -> str:
    """`{input}` and `{steps.NAME}` replaced; nothing else in the text is read
    (not str.format: a user's braces stay braces)."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) == "input":
            return user_input
        return outputs.get(match.group(2) or "", "")

    return _REFERENCE.sub(value, template)


def references(template: str) -> list[str]:
    """The step names a template reads."""
    return [m.group(2) for m in _REFERENCE.finditer(template) if m.group(2)]


def classify(step: StepSpec, text: str) -> str:
    lowered = text.lower()
    for label, keywords in step.rules:
        if any(k.lower() in lowered for k in keywords):
            return label
    return step.default_label


def judge_messages(question: str, answers: dict[str, str]) -> list[Message]:
    parts = [f"### {model}\n{text or '(no answer)'}" for model, text in answers.items()]
    return [
        Message(Role.SYSTEM, JUDGE_SYSTEM_PROMPT),
        Message(Role.USER, f"Question:\n{question}\n\nAnswers:\n" + "\n\n".join(parts)),
    ]


# Seed 000's default analysis: every chat model answers, the first (or a
# file's own `comparative`, which replaces this one) writes the synthesis.
COMPARATIVE = WorkflowSpec(
    name="comparative",
    description="Asks every chat model, then a judge compares the answers and writes the best combined one",
    steps=(StepSpec(name="compare", kind="compare"),),
    max_steps=1,
    builtin=True,
)
BUILTIN_WORKFLOWS = {COMPARATIVE.name: COMPARATIVE}


class _StepFailed(Exception):
    def __init__(self, error: DomainError) -> None:
        self.error = error


class WorkflowRunner:
    def __init__(
        self,
        orchestrator: Orchestrator,
        agents: AgentLoop,
        definitions: DefinitionsHolder,
        chat_models: Callable[[], Sequence[str]],
    ) -> None:
        self.orchestrator = orchestrator
        self.agents = agents
        self.definitions = definitions
        self.chat_models = chat_models

    def all(self) -> dict[str, WorkflowSpec]:
        """The built-in workflows, and the file's (which win on a name)."""
        return {**BUILTIN_WORKFLOWS, **self.definitions.current.workflows}

    async def run(self, workflow: WorkflowSpec, user_input: str, caller: Caller) -> AsyncIterator[WorkflowEvent]:
        """The run's events; the total timeout cuts it anywhere (TIMEOUT)."""
        yield WorkflowStarted(caller.request_id, workflow.name)
        totals = _Totals()
        outputs: dict[str, str] = {}
        answer = ""
        count = 0
        current: StepSpec | None = workflow.steps[0] if workflow.steps else None
        deadline = time.monotonic() + workflow.timeout_seconds

        def finish(reason: StopReason, error: DomainError | None = None) -> WorkflowFinished:
            return WorkflowFinished(reason, answer, totals.usage, count, error)

        while current is not None:
            if count >= workflow.max_steps:
                yield finish(StopReason.MAX_STEPS)
                return
            count += 1
            step = current
            yield StepStarted(step.name, step.kind)
            started = time.perf_counter()
            usage = _Totals()
            output = ""
            steps = self._step(step, workflow, user_input, outputs, caller, usage)
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError
                    try:
                        async with asyncio.timeout(remaining):
                            event = await anext(steps)
                    except StopAsyncIteration:
                        break
                    if isinstance(event, str):
                        output = event
                    else:
                        yield event
            except TimeoutError:
                totals.add(usage.usage)
                yield finish(StopReason.TIMEOUT)
                return
            except _StepFailed as failed:
                totals.add(usage.usage)
                yield finish(StopReason.ERROR, failed.error)
                return
            finally:
                await steps.aclose()
            totals.add(usage.usage)
            outputs[step.name] = output
            yield StepFinished(step.name, output, time.perf_counter() - started, usage.usage)
            if step.kind == "branch":
                target = output
            else:
                answer = output
                target = step.next or _following(workflow, step)
            current = workflow.step(target) if target and target != END else None
        yield finish(StopReason.ANSWERED)

    async def _step(
        self,
        step: StepSpec,
        workflow: WorkflowSpec,
        user_input: str,
        outputs: dict[str, str],
        caller: Caller,
        usage: _Totals,
    ) -> AsyncGenerator[StepDelta | str, None]:
        """The step's text deltas, then its output as a plain str."""
        prompt = render(step.prompt, user_input, outputs)
        if step.kind == "classify":
            yield classify(step, prompt)
        elif step.kind == "branch":
            label = outputs.get(step.source, "")
            yield dict(step.branches).get(label, step.default_branch or END)
        elif step.kind == "chat":
            messages = [Message(Role.SYSTEM, step.system_prompt)] if step.system_prompt else []
            messages.append(Message(Role.USER, prompt))
            text: list[str] = []
            async for delta in self._chat(step, step.model, messages, caller, usage):
                text.append(delta.text)
                yield delta
            yield "".join(text)
        elif step.kind == "agent":
            agent = self.definitions.current.agents.get(step.agent)
            if agent is None:
                raise _StepFailed(DomainError(f"step {step.name}: the agent {step.agent} no longer exists"))
            async for event in self.agents.run(agent, prompt, [], caller):
                if isinstance(event, StepText):
                    yield StepDelta(step.name, f"agents/{agent.name}", event.text)
                elif isinstance(event, RunFinished):
                    usage.add(event.usage)
                    if event.error is not None:
                        raise _StepFailed(event.error)
                    yield event.answer
        elif step.kind == "compare":
            async for item in self._compare(step, prompt, caller, usage):
                yield item

    async def _chat(
        self,
        step: StepSpec,
        model: str,
        messages: list[Message],
        caller: Caller,
        usage: _Totals,
        synthesis: bool = False,
    ) -> AsyncIterator[StepDelta]:
        answer = CompletedAnswer()
        try:
            async for event in self.orchestrator.chat(ChatRequest(model, messages, GenerationConfig()), caller):
                answer.add(event)
                if isinstance(event, TextDelta) and event.text:
                    yield StepDelta(step.name, model, event.text, synthesis)
        except DomainError as error:
            raise _StepFailed(error) from error
        usage.add(answer.usage or Usage(0, 0))

    async def _compare(
        self, step: StepSpec, prompt: str, caller: Caller, usage: _Totals
    ) -> AsyncIterator[StepDelta | str]:
        models = list(step.models) or list(self.chat_models())
        requests = [ChatRequest(m, [Message(Role.USER, prompt)], GenerationConfig()) for m in models]
        answers: dict[str, list[str]] = {m: [] for m in models}
        collected = {m: CompletedAnswer() for m in models}
        async for model, item in self.orchestrator.compare(requests, caller):
            if isinstance(item, DomainError):
                answers[model] = [f"(failed: {item.message})"]  # the judge is told; the others go on
                continue
            collected[model].add(item)
            if isinstance(item, TextDelta) and item.text:
                answers[model].append(item.text)
                yield StepDelta(step.name, model, item.text)
        for answer in collected.values():
            usage.add(answer.usage or Usage(0, 0))
        judge = step.judge or models[0]
        text: list[str] = []
        messages = judge_messages(prompt, {m: "".join(t) for m, t in answers.items()})
        async for delta in self._chat(step, judge, messages, caller, usage, synthesis=True):
            text.append(delta.text)
            yield delta
        yield "".join(text)


def _following(workflow: WorkflowSpec, step: StepSpec) -> str:
    index = workflow.steps.index(step)
    return workflow.steps[index + 1].name if index + 1 < len(workflow.steps) else END
