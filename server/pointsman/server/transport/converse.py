"""One Converse session on the wire: a reader takes turns and cancels off the
request stream while a worker answers turns in order (the history is the
domain's, domain/conversation.py); both feed one bounded event queue that the
RPC streams back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

from ..domain.caller import Caller
from ..domain.conversation import Conversation, HistoryNotKept
from ..domain.errors import DomainError, InvalidArgument, ViolationCollector
from ..domain.history import HistoryWindow
from ..domain.orchestrator import Orchestrator
from ..domain.ports.conversations import Conversations
from ..domain.provider_options import check_provider_options
from ..domain.request_metadata import check_metadata
from ..domain.validation import check_config
from . import convert
from .errors import turn_error
from .resources import resource_id

MAX_QUEUED_TURNS = 16
_END = object()


class ConverseSession:
    def __init__(
        self, orchestrator: Orchestrator, conversations: Conversations, caller: Caller, window: HistoryWindow
    ) -> None:
        self._orchestrator = orchestrator
        self._window = window
        self._conversations = conversations
        self._caller = caller
        self._events: asyncio.Queue[object] = asyncio.Queue(64)
        self._turns: asyncio.Queue[pb.UserTurn | None] = asyncio.Queue(MAX_QUEUED_TURNS)
        self._cancelled: set[str] = set()
        self._seen: set[str] = set()
        self._current: tuple[str, asyncio.Task[None]] | None = None

    async def run(self, requests: AsyncIterator[pb.ConverseRequest]) -> AsyncIterator[pb.ConverseResponse]:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("action") != "setup":
            raise InvalidArgument.one("setup", "the first message of a session must be a setup")
        started = await self._open(first.setup)
        yield started
        reader = asyncio.create_task(self._read(requests))
        worker = asyncio.create_task(self._work())
        try:
            while True:
                item = await self._events.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            for task in (reader, worker):
                task.cancel()
            await asyncio.gather(reader, worker, return_exceptions=True)

    async def _open(self, setup: pb.ConversationSetup) -> pb.ConverseResponse:
        errors = ViolationCollector()
        model = setup.model or self._orchestrator.default_model
        if not model:
            errors.add("setup.model", "is required")
        config = convert.config_from_proto(setup.config, errors, "setup.config")
        check_config(config, errors, "setup.config")
        metadata = convert.metadata_from_proto(setup.metadata) if setup.HasField("metadata") else None
        check_metadata(metadata, errors, "setup.metadata")
        options = None
        if setup.HasField("provider_options"):
            options = convert.provider_options_from_proto(setup.provider_options, errors, "setup.provider_options")
            check_provider_options(options, errors, "setup.provider_options")
        errors.raise_if_any()
        # NotFound before a malformed conversation name; a router alias routes
        # each turn by its own text. Options for a provider the model lacks fail
        # each turn (the orchestrator checks the routed model).
        self._orchestrator.chat_routes(model, "setup.model")
        conversation_id = None
        if setup.conversation:
            conversation_id = resource_id(setup.conversation, "conversations", "setup.conversation")
        self._conversation = await Conversation.open(
            self._orchestrator,
            self._conversations,
            self._window,
            self._caller,
            model,
            config,
            conversation_id=conversation_id,
            system_prompt=setup.system_prompt,
        )
        self._conversation.metadata = metadata
        self._conversation.provider_options = options
        started = pb.ConversationStarted(
            conversation=f"conversations/{self._conversation.id}", history_length=self._conversation.history_length
        )
        return pb.ConverseResponse(started=started)

    async def _read(self, requests: AsyncIterator[pb.ConverseRequest]) -> None:
        try:
            async for request in requests:
                action = request.WhichOneof("action")
                if action == "turn":
                    await self._turns.put(request.turn)
                elif action == "cancel":
                    self._cancel(request.cancel.turn_id)
                else:
                    raise InvalidArgument.one("setup", "a session takes exactly one setup, first")
            await self._turns.put(None)  # the client half-closed: finish queued turns
        except Exception as error:  # a bad message, the client gone, a bug: the call ends with it
            await self._events.put(error)

    def _cancel(self, turn_id: str) -> None:
        if self._current is not None and self._current[0] == turn_id:
            self._current[1].cancel()
        else:
            self._cancelled.add(turn_id)

    async def _work(self) -> None:
        try:
            await self._answer_turns()
        except Exception as error:  # history not saved, or a bug: the call ends with it, never hangs
            await self._events.put(error)

    async def _answer_turns(self) -> None:
        while (turn := await self._turns.get()) is not None:
            problem = self._check_turn(turn)
            if problem is not None:
                await self._events.put(self._error(turn.turn_id, problem))
                continue
            self._seen.add(turn.turn_id)
            if turn.turn_id in self._cancelled:
                await self._events.put(self._cancelled_error(turn.turn_id))
                continue
            task = asyncio.create_task(self._answer(turn))
            self._current = (turn.turn_id, task)
            try:
                await task
            except asyncio.CancelledError:
                # The session itself is ending (cancelling this worker cancels
                # the answer it awaits too): not the client's cancel of a turn.
                worker = asyncio.current_task()
                if not task.cancelled() or (worker is not None and worker.cancelling()):
                    raise
                await self._events.put(self._cancelled_error(turn.turn_id))
            finally:
                self._current = None
        await self._events.put(_END)

    def _check_turn(self, turn: pb.UserTurn) -> DomainError | None:
        if not turn.turn_id or len(turn.turn_id) > 128:
            return InvalidArgument.one("turn.turn_id", "must be 1 to 128 characters")
        if turn.turn_id in self._seen:
            return InvalidArgument.one("turn.turn_id", "must be unique within the session")
        if not turn.content and not turn.tool_results:
            return InvalidArgument.one("turn.content", "must not be empty (unless the turn carries tool_results)")
        return None

    async def _answer(self, turn: pb.UserTurn) -> None:
        try:
            async for event in self._conversation.turn(
                turn.content, turn.turn_id, [(r.tool_call_id, r.content) for r in turn.tool_results]
            ):
                await self._events.put(pb.ConverseResponse(turn_id=turn.turn_id, **convert.event_fields(event)))
        except HistoryNotKept:
            raise  # the answer was streamed but not kept: the call ends, it cannot go on
        except DomainError as error:
            await self._events.put(self._error(turn.turn_id, error))

    @staticmethod
    def _error(turn_id: str, error: DomainError) -> pb.ConverseResponse:
        return pb.ConverseResponse(turn_id=turn_id, error=turn_error(error))

    @staticmethod
    def _cancelled_error(turn_id: str) -> pb.ConverseResponse:
        return pb.ConverseResponse(
            turn_id=turn_id,
            error=pb.TurnError(
                code=grpc.StatusCode.CANCELLED.value[0], reason="TURN_CANCELLED", message="the turn was cancelled"
            ),
        )
