"""The chat pipeline: validate, guard the prompt, route, stream, time."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, aclosing, nullcontext
from dataclasses import dataclass, field, replace

from .cache_key import cache_key
from .caller import Caller
from .catalog import ModelCatalog, ModelRoute
from .chat import (
    ChatRequest,
    Deployment,
    Finish,
    FinishReason,
    ProviderEvent,
    ReasoningDelta,
    RequestMetadata,
    ResponseFormat,
    Start,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from .classifier_model import classifier_request, read_label
from .classify import Choice, ClassRouters, Routing
from .embedding import ModelKind
from .errors import DomainError, Unavailable, ViolationCollector
from .firewall.engine import FirewallEngine
from .firewall.output_guard import GuardStep, OutputGuard
from .firewall.verdict import Action, Direction, Verdict
from .ports.cache import CachedAnswer
from .provider_options import check_options_served, check_provider_options
from .request_metadata import check_metadata
from .router import Router
from .semantic.cache import SemanticCache
from .single_flight import SingleFlight
from .structured_output import answer_is_valid
from .validation import ChatLimits, check_config, check_messages, check_model
from .vision import has_images, route_for_images

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FirewallNotice:
    direction: Direction
    verdict: Verdict
    # An OUTPUT notice about the model's reasoning text, guarded apart from its answer.
    reasoning: bool = False


ChatEvent = Start | TextDelta | ToolCallDelta | ReasoningDelta | FirewallNotice | Usage | Finish


@dataclass(slots=True)
class CallOutcome:
    """How one chat call went, for the request log: what the model and
    caller saw, and the error that ended it (None if it finished)."""

    model: str
    metadata: RequestMetadata | None = None  # who the call was for, its tags
    start: Start | None = None
    usage: Usage | None = None
    finish: Finish | None = None
    error: BaseException | None = None
    latency_seconds: float = 0.0
    # Through a router alias: its choice, known before any Start (a call that
    # fails before one still says where it was routed).
    route: Choice | None = None

    def note(self, event: ChatEvent) -> None:
        if isinstance(event, Start):
            self.start = event
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Finish):
            self.finish = event


CallObserver = Callable[[Caller, CallOutcome], None]


class _Observed:
    """Ends a call's outcome (its error, if any, and latency) and tells the
    observer, however the call ends: a failure, a cancellation, or the reader
    closing the stream early (GeneratorExit)."""

    __slots__ = ("_caller", "_observer", "_outcome", "_received")

    def __init__(self, observer: CallObserver, caller: Caller, outcome: CallOutcome, received: float) -> None:
        self._observer = observer
        self._caller = caller
        self._outcome = outcome
        self._received = received

    def __enter__(self) -> CallOutcome:
        return self._outcome

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        self._outcome.error = error
        self._outcome.latency_seconds = time.perf_counter() - self._received
        self._observer(self._caller, self._outcome)


@dataclass(slots=True)
class CompletedAnswer:
    """A whole answer, gathered from its events."""

    start: Start | None = None
    text: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish: Finish | None = None
    notices: list[FirewallNotice] = field(default_factory=list)

    @property
    def content(self) -> str:
        return "".join(self.text)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def flagged_by_output_firewall(self) -> bool:
        return any(n.direction is Direction.OUTPUT for n in self.notices)

    def add(self, event: ChatEvent) -> None:
        match event:
            case TextDelta(text=text):
                self.text.append(text)
            case ToolCallDelta():
                self._add_tool_delta(event)
            case ReasoningDelta(text=text):
                self.reasoning.append(text)
            case Start():
                self.start = event
            case Usage():
                self.usage = event
            case Finish():
                self.finish = event
            case FirewallNotice():
                self.notices.append(event)

    def _add_tool_delta(self, delta: ToolCallDelta) -> None:
        while len(self.tool_calls) <= delta.index:
            self.tool_calls.append(ToolCall("", "", ""))
        call = self.tool_calls[delta.index]
        self.tool_calls[delta.index] = ToolCall(
            delta.id or call.id, delta.name or call.name, call.arguments_json + delta.arguments_delta
        )


class Orchestrator:
    def __init__(
        self,
        catalog: ModelCatalog,
        router: Router,
        firewall: FirewallEngine,
        limits: ChatLimits,
        *,
        output_holdback: int = 1024,
        flights: SingleFlight | None = None,
        on_call_end: CallObserver | None = None,
        admit: Callable[[Caller], Awaitable[None]] | None = None,
        semantic: SemanticCache | None = None,
        default_model: str = "",
        classes: ClassRouters | None = None,
    ) -> None:
        self.catalog = catalog
        # The alias used where a request names no model; "": a model is required.
        self.default_model = default_model
        self.router = router
        self.firewall = firewall
        self.limits = limits
        # The most characters of an answer held back while they may be part of a finding.
        self.output_holdback = output_holdback
        # The response cache, behind single flight; None: no caching.
        self.flights = flights
        # Told of every chat call when it ends (the request log); must not block.
        self.on_call_end = on_call_end
        # Raises when the caller may not make another call now (rate limits).
        self.admit = admit
        # Answers reused by meaning, for routes that turn it on; None: off.
        self.semantic = semantic
        # Router aliases that pick a model by what the question is about; None: none.
        self.classes = classes

    def check(self, request: ChatRequest, errors: ViolationCollector) -> None:
        """Adds a violation for everything wrong with the request."""
        check_model(request.model, errors)
        check_messages(request.messages, self.limits, errors)
        check_config(request.config, errors)
        check_metadata(request.metadata, errors)
        check_provider_options(request.provider_options, errors)

    def chat_routes(self, alias: str, path: str = "model") -> list[ModelRoute]:
        """The routes a chat call to `alias` may take: its own, or each one a
        router alias may send it to. Raises as `catalog.resolve` does, naming
        `path`, for an alias that is neither a chat model nor a router."""
        spec = self.classes.spec(alias) if self.classes is not None else None
        if spec is None:
            return [self.catalog.resolve(alias, ModelKind.CHAT, path)]
        return [self.catalog.resolve(target, ModelKind.CHAT) for target in spec.targets]

    def validate(self, request: ChatRequest, errors: ViolationCollector | None = None) -> None:
        errors = errors or ViolationCollector()
        self.check(request, errors)
        errors.raise_if_any()

    async def chat(
        self,
        request: ChatRequest,
        caller: Caller,
        *,
        incremental: bool = True,
        errors: ViolationCollector | None = None,
    ) -> AsyncIterator[ChatEvent]:
        """Streams one answer. Raises before the first event for anything that
        can be known up front (invalid, unknown model, blocked, every
        deployment down); a failure after it raises `Unavailable` with
        metadata incomplete=true. `errors` may hold problems the caller already
        found (converting the request), reported together with these."""
        received = time.perf_counter()
        with self._observed(request, caller, received) as outcome:
            answer = await self._open(request, caller, incremental, errors, received, outcome=outcome)
            response_format = _json_format(request)
            text: list[str] = []
            async with aclosing(answer):
                async for event in answer:
                    if response_format is not None:
                        if type(event) is TextDelta:
                            text.append(event.text)
                        elif type(event) is Finish:
                            event = _schema_checked(response_format, "".join(text), event)
                    if outcome is not None:
                        outcome.note(event)
                    yield event

    def _observed(
        self, request: ChatRequest, caller: Caller, received: float
    ) -> AbstractContextManager[CallOutcome | None]:
        """The call's outcome, told to `on_call_end` however the call ends."""
        if self.on_call_end is None:
            return nullcontext()
        return _Observed(self.on_call_end, caller, CallOutcome(request.model, request.metadata), received)

    async def _open(
        self,
        request: ChatRequest,
        caller: Caller,
        incremental: bool,
        errors: ViolationCollector | None,
        received: float,
        *,
        admitted: bool = False,
        outcome: CallOutcome | None = None,
    ) -> AsyncGenerator[ChatEvent, None]:
        """Everything that can fail the call up front, then the answer's
        events, not yet started (it holds nothing until iterated). `admitted`:
        the call already passed the rate limits and budgets; `outcome` is told
        a router's choice."""
        if self.admit is not None and not admitted:
            await self.admit(caller)
        routing = self.classes.route(request) if self.classes is not None else None
        if routing is not None:  # a router alias: the chosen model's answer, labelled
            choice = routing.choice
            if choice.ask:
                self.validate(request, errors)  # nothing is sent anywhere for a request that will be refused
                choice = routing.router.settle(choice, await self._ask_classifier(routing, caller))
            if outcome is not None:
                outcome.route = choice
            routed = replace(request, model=choice.alias)
            answer = await self._open(routed, caller, incremental, errors, received, admitted=True)
            return _labelled(answer, request.model, choice)
        self.validate(request, errors)
        route = self.catalog.resolve(request.model, ModelKind.CHAT)
        if has_images(request):
            route = route_for_images(route)
        if request.provider_options is not None:
            served = ViolationCollector()
            check_options_served(
                request.provider_options, (d.provider for d in route.deployments), request.model, served
            )
            served.raise_if_any()
        verdict = await self.firewall.guard_prompt(request.messages, caller)
        if verdict.messages:  # the firewall redacted: the model gets the redacted prompt
            request = replace(request, messages=list(verdict.messages))
        ttl = route.cache_ttl_seconds if request.cache_ttl_seconds is None else request.cache_ttl_seconds
        if self.flights is None or request.cache_bypass or ttl <= 0:
            return self._fresh(route, request, caller, verdict, received, incremental, None)
        return self._through_cache(route, request, caller, verdict, received, incremental, ttl)

    async def _through_cache(
        self,
        route: ModelRoute,
        request: ChatRequest,
        caller: Caller,
        verdict: Verdict,
        received: float,
        incremental: bool,
        ttl: float,
    ) -> AsyncGenerator[ChatEvent, None]:
        """The cached answer replayed, or this request leads: it calls the
        model, and identical requests arriving meanwhile share its answer.
        Only complete answers the output firewall left alone are kept."""
        assert self.flights is not None
        async with self.flights.join(caller.organisation, cache_key(request)) as flight:
            if flight.answer is not None:
                async for event in self._replay_cached(
                    route, request, caller, verdict, received, incremental, flight.answer
                ):
                    yield event
                return
            collected = CompletedAnswer()
            async for event in self._fresh(route, request, caller, verdict, received, incremental, collected):
                yield event
            kept = _keepable(collected, route)
            if kept is not None:
                await flight.deliver(kept, ttl)

    async def _replay_cached(
        self,
        route: ModelRoute,
        request: ChatRequest,
        caller: Caller,
        verdict: Verdict,
        received: float,
        incremental: bool,
        cached: CachedAnswer,
        *,
        semantic: bool = False,
    ) -> AsyncGenerator[ChatEvent, None]:
        """A cached answer (exact, or `semantic`) replayed as a fresh one."""
        # The cache key holds the alias, so the entry was answered through this
        # route: its own copy of the deployment carries the price this alias was
        # charged at (the catalog's copy is whichever alias listed it last). An
        # entry from a replica with other routes is credited to this alias's
        # first deployment.
        deployment = route.deployment(cached.deployment) or route.deployments[0]
        yield Start(caller.request_id, request.model, deployment, cached=True, semantic=semantic)
        if verdict.action is not Action.ALLOW:
            yield FirewallNotice(Direction.INPUT, verdict)
        # The output firewall decides again (its rules may have changed since),
        # on the reasoning as on the answer.
        cleared = await self.firewall.clear_replayed_answer(cached.text, caller) is not None
        if cleared and cached.reasoning:
            cleared = await self.firewall.clear_replayed_answer(cached.reasoning, caller) is not None
        if not cleared:
            async for event in self._relay(None, _replay(cached), caller, received, whole=not incremental):
                yield event
        else:
            for event in _replayed(cached, received):
                yield event

    def _fresh(
        self,
        route: ModelRoute,
        request: ChatRequest,
        caller: Caller,
        verdict: Verdict,
        received: float,
        incremental: bool,
        collected: CompletedAnswer | None,
    ) -> AsyncGenerator[ChatEvent, None]:
        """The answer from the model, or, for routes with the semantic cache,
        the answer to a question that means the same (domain/semantic/)."""
        if self.semantic is None or route.semantic_ttl_seconds <= 0 or request.cache_bypass:
            return self._answer(route, request, caller, verdict, received, incremental, collected)
        return self._by_meaning(self.semantic, route, request, caller, verdict, received, incremental, collected)

    async def _by_meaning(
        self,
        semantic: SemanticCache,
        route: ModelRoute,
        request: ChatRequest,
        caller: Caller,
        verdict: Verdict,
        received: float,
        incremental: bool,
        collected: CompletedAnswer | None,
    ) -> AsyncGenerator[ChatEvent, None]:
        hit = semantic.lookup(caller.organisation, request)
        if hit is not None:
            replay = self._replay_cached(
                route, request, caller, verdict, received, incremental, hit.answer, semantic=True
            )
            async for event in replay:
                yield event
            return
        collected = collected if collected is not None else CompletedAnswer()
        async for event in self._answer(route, request, caller, verdict, received, incremental, collected):
            yield event
        kept = _keepable(collected, route)
        if kept is not None:
            usage = collected.usage
            await semantic.remember(
                caller.organisation,
                request,
                kept,
                route.semantic_ttl_seconds,
                saved_tokens=usage.input_tokens + usage.output_tokens if usage else 0,
                saved_cost_usd=usage.cost_usd if usage else 0.0,
            )

    async def _answer(
        self,
        route: ModelRoute,
        request: ChatRequest,
        caller: Caller,
        verdict: Verdict,
        received: float,
        incremental: bool,
        collected: CompletedAnswer | None,
    ) -> AsyncGenerator[ChatEvent, None]:
        """The answer from the model: routed, framed, through the output firewall."""
        opened = await self.router.open(route, request, caller, incremental=incremental)
        start = Start(caller.request_id, request.model, opened.deployment)
        if collected is not None:
            collected.add(start)
        yield start
        if verdict.action is not Action.ALLOW:
            yield FirewallNotice(Direction.INPUT, verdict)
        price = opened.deployment.price
        try:
            async with aclosing(opened.rest) as rest:
                async for event in self._relay(opened.first, rest, caller, received, whole=not incremental):
                    if price is not None and isinstance(event, Usage):
                        event = replace(event, cost_usd=price.cost(event.input_tokens, event.output_tokens))
                    if collected is not None:
                        collected.add(event)
                    yield event
        except DomainError as error:
            if isinstance(error, Unavailable):
                opened.monitor.breaker.record_failure()
            raise _incomplete(error, opened.deployment) from error

    async def _relay(
        self,
        first: ProviderEvent | None,
        rest: AsyncIterator[ProviderEvent],
        caller: Caller,
        received: float,
        *,
        whole: bool = False,
    ) -> AsyncIterator[ChatEvent]:
        """Provider events to the client, through the output firewall, with
        the gateway's timings on Finish. A failure (or an end without Finish)
        is raised after the text the firewall still held has been sent. When
        the caller takes the answer `whole` (`Complete`), the firewall holds
        all of it and scans it once at the end: nothing could leave earlier."""
        hold = WHOLE_ANSWER if whole else self.output_holdback
        guard = await self.firewall.output_guard(caller, hold)
        # The reasoning has a guard of its own: its findings are its own, and
        # a tail held in one text never holds the other back.
        thinking: OutputGuard | None = None
        usage: Usage | None = None  # held with the text while the output firewall holds some
        first_token_at: float | None = None
        event = first if first is not None else await anext(rest, None)
        try:
            while event is not None:
                reasoning_step: GuardStep | None = None
                if guard is not None and type(event) is ReasoningDelta:
                    thinking = thinking or await self.firewall.output_guard(caller, hold)
                    reasoning_step = await _guard_step(thinking, event) if thinking else GuardStep(event.text)
                elif thinking is not None and thinking.held_chars and not isinstance(event, Usage):
                    # The reasoning gave way to the answer: what its guard holds leaves first.
                    reasoning_step = await _guard_step(thinking, None)
                if reasoning_step is not None:
                    if reasoning_step.release:
                        yield ReasoningDelta(reasoning_step.release)
                    if reasoning_step.stop:  # the reasoning held what must not leave: the answer ends
                        for ending in await self._guarded_end(guard, thinking, usage, caller):
                            yield ending
                        yield _finish(FinishReason.CONTENT_FILTER, received, first_token_at)
                        return
                    if type(event) is ReasoningDelta:
                        event = await anext(rest, None)
                        continue
                if guard is not None and isinstance(event, (TextDelta, Finish)):
                    # The answer's text passes the output firewall first.
                    step = await _guard_step(guard, event)
                    if step.release:
                        first_token_at = first_token_at or time.perf_counter()
                        yield TextDelta(step.release)
                    if step.stop or isinstance(event, Finish):
                        for ending in await self._guarded_end(guard, thinking, usage, caller):
                            yield ending
                        reason = FinishReason.CONTENT_FILTER if step.stop else event.reason  # type: ignore[union-attr]
                        yield _finish(reason, received, first_token_at)
                        return
                elif guard is not None and isinstance(event, Usage):
                    usage = event
                elif isinstance(event, Finish):
                    yield _finish(event.reason, received, first_token_at)
                    return
                else:
                    if first_token_at is None and isinstance(event, (TextDelta, ToolCallDelta)):
                        first_token_at = time.perf_counter()
                    yield event
                event = await anext(rest, None)
        except DomainError as error:
            failure: DomainError = error
        else:
            failure = Unavailable("the upstream model ended the answer early", reason="UPSTREAM_INCOMPLETE")
        if guard is not None:
            # The client gets what arrived before the failure, scanned like the rest.
            if thinking is not None:
                step = thinking.finish()
                if step.release:
                    yield ReasoningDelta(step.release)
                await self.firewall.record_output(thinking, caller)
            step = guard.finish()
            if step.release:
                yield TextDelta(step.release)
            await self.firewall.record_output(guard, caller)
        raise failure

    async def _ask_classifier(self, routing: Routing, caller: Caller) -> str | None:
        """The class the router's classifier model puts the turn in (or
        NO_CLASS); None when it timed out, failed or named no class. Never
        raises for the model's sake: the user's call goes on either way. The
        call is a call like any other (logged, costed, firewalled), under the
        user's own admission: it does not take another rate-limit slot."""
        spec = routing.router.spec.classifier
        assert spec is not None
        request = classifier_request(spec, routing.choice.ask, routing.text)
        try:
            async with asyncio.timeout(spec.timeout_seconds):
                answer = await self._complete(request, caller, None, admitted=True)
        except TimeoutError:
            log.info("classifier model %s took over %ss; the embeddings decide", spec.model, spec.timeout_seconds)
            return None
        except DomainError as error:
            log.info("classifier model %s failed (%s); the embeddings decide", spec.model, error.reason)
            return None
        except Exception:
            log.exception("classifier model %s failed; the embeddings decide", spec.model)
            return None
        label = read_label(answer.content, routing.choice.ask)
        if label is None:
            log.info("classifier model %s named no class; the embeddings decide", spec.model)
        return label

    async def _guarded_end(
        self, guard: OutputGuard | None, thinking: OutputGuard | None, usage: Usage | None, caller: Caller
    ) -> list[ChatEvent]:
        """What goes before a guarded answer's Finish: the usage held back,
        and a notice for the answer and for the reasoning if the firewall
        acted on them (the decisions are recorded either way)."""
        events: list[ChatEvent] = [usage] if usage is not None else []
        if guard is not None:
            verdict = await self.firewall.record_output(guard, caller)
            if verdict.action is not Action.ALLOW:
                events.append(FirewallNotice(Direction.OUTPUT, verdict))
        if thinking is not None:
            verdict = await self.firewall.record_output(thinking, caller)
            if verdict.action is not Action.ALLOW:
                events.append(FirewallNotice(Direction.OUTPUT, verdict, reasoning=True))
        return events

    async def complete(
        self, request: ChatRequest, caller: Caller, errors: ViolationCollector | None = None
    ) -> CompletedAnswer:
        """The whole answer: `chat`'s steps, gathered here rather than through
        `chat`'s stream, one async layer fewer per event."""
        return await self._complete(request, caller, errors)

    async def _complete(
        self, request: ChatRequest, caller: Caller, errors: ViolationCollector | None, *, admitted: bool = False
    ) -> CompletedAnswer:
        received = time.perf_counter()
        answer = CompletedAnswer()
        with self._observed(request, caller, received) as outcome:
            events = await self._open(request, caller, False, errors, received, admitted=admitted, outcome=outcome)
            response_format = _json_format(request)
            async with aclosing(events):
                async for event in events:
                    if response_format is not None and type(event) is Finish:
                        event = _schema_checked(response_format, answer.content, event)
                    answer.add(event)
                    if outcome is not None:
                        outcome.note(event)
        return answer

    async def compare(
        self, requests: Sequence[ChatRequest], caller: Caller
    ) -> AsyncIterator[tuple[str, ChatEvent | DomainError]]:
        """Runs every request at once and yields (model, event) as events
        arrive; a model's failure is yielded as its DomainError and the rest go
        on. Bounded: each model's stream waits when the reader is behind."""
        queue: asyncio.Queue[tuple[str, ChatEvent | DomainError] | None] = asyncio.Queue(64)

        async def run(request: ChatRequest) -> None:
            try:
                async for event in self.chat(request, caller):
                    await queue.put((request.model, event))
            except DomainError as error:
                await queue.put((request.model, error))
            except Exception:
                log.exception("model %s failed in a comparison", request.model)
                await queue.put((request.model, DomainError("internal error")))
            finally:
                await queue.put(None)

        tasks = [asyncio.create_task(run(r)) for r in requests]
        try:
            remaining = len(tasks)
            while remaining:
                item = await queue.get()
                if item is None:
                    remaining -= 1
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _labelled(
    answer: AsyncGenerator[ChatEvent, None], asked: str, choice: Choice
) -> AsyncGenerator[ChatEvent, None]:
    """The routed answer, its start naming the router alias asked for, the class and the model chosen."""
    async with aclosing(answer):
        async for event in answer:
            if isinstance(event, Start):
                event = replace(
                    event,
                    model=asked,
                    route_class=choice.route_class,
                    routed_model=choice.alias,
                    route_decision=choice.decision,
                )
            yield event


def _keepable(collected: CompletedAnswer, route: ModelRoute) -> CachedAnswer | None:
    """The answer as a cache keeps it: only complete answers the output
    firewall left alone."""
    finish = collected.finish
    if finish is None or finish.reason is FinishReason.CONTENT_FILTER or collected.flagged_by_output_firewall:
        return None
    return CachedAnswer(
        collected.start.deployment.name if collected.start else route.deployments[0].name,
        collected.content,
        tuple(collected.tool_calls),
        # A replay costs nothing: whoever gets it was not charged.
        replace(collected.usage, cost_usd=0.0) if collected.usage else None,
        finish.reason,
        collected.reasoning_text,
    )


async def _replay(answer: CachedAnswer) -> AsyncIterator[ProviderEvent]:
    for event in answer.replay():
        yield event


def _replayed(answer: CachedAnswer, received: float) -> Iterator[ChatEvent]:
    """A cached answer the output firewall cleared whole, as `_relay` would
    pass it on unguarded (the gateway's timings on Finish), without an async
    layer per event: this is the cache hit's hot path."""
    first_token_at: float | None = None
    for event in answer.replay():
        if isinstance(event, Finish):
            yield _finish(event.reason, received, first_token_at)
            return
        if first_token_at is None and isinstance(event, (TextDelta, ToolCallDelta)):
            first_token_at = time.perf_counter()
        yield event


def _json_format(request: ChatRequest) -> ResponseFormat | None:
    """The request's response format when it asks for JSON: the answer is checked."""
    response_format = request.config.response_format
    return response_format if response_format is not None and response_format.wants_json else None


def _schema_checked(response_format: ResponseFormat, text: str, finish: Finish) -> Finish:
    """The Finish saying whether the answer the client got is the JSON asked
    for; an answer that called tools instead has no JSON to check."""
    if finish.reason is FinishReason.TOOL_CALLS:
        return finish
    return replace(finish, schema_valid=answer_is_valid(response_format, text))


def _finish(reason: FinishReason, received: float, first_token_at: float | None) -> Finish:
    """The answer's Finish with the gateway's timings."""
    ttft = None if first_token_at is None else first_token_at - received
    return Finish(reason, ttft, time.perf_counter() - received)


# Above this many characters, the output scan of a piece leaves the event loop.
_OFFLOAD_OUTPUT_CHARS = 2048
# A hold-back no answer reaches: the output firewall holds the whole answer.
WHOLE_ANSWER = 1 << 62


async def _guard_step(guard: OutputGuard, event: TextDelta | ReasoningDelta | Finish | None) -> GuardStep:
    """The guard fed the event's text, or (Finish, None: the text ended) finished."""
    if event is None or isinstance(event, Finish):
        if guard.held_chars > _OFFLOAD_OUTPUT_CHARS:
            return await asyncio.to_thread(guard.finish)
        return guard.finish()
    if len(event.text) > _OFFLOAD_OUTPUT_CHARS:
        return await asyncio.to_thread(guard.feed, event.text)
    return guard.feed(event.text)


def _incomplete(error: DomainError, deployment: Deployment) -> Unavailable:
    """A failure after the answer began: never retried or rerouted (the client
    has part of one model's answer), reported as UNAVAILABLE and marked."""
    metadata = {**error.metadata, "incomplete": "true", "deployment": deployment.name}
    return Unavailable(error.message, reason=error.reason, metadata=metadata)
