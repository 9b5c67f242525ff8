"""One Converse conversation's history across turns: loaded (or started with
its system prompt), extended by each turn that is answered and saved after it.
A turn that fails or is cancelled leaves the history as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from .caller import Caller
from .chat import ChatRequest, Finish, GenerationConfig, Message, ProviderOptions, RequestMetadata, Role
from .errors import Unavailable, ViolationCollector
from .history import HistoryWindow
from .orchestrator import ChatEvent, CompletedAnswer, Orchestrator
from .ports.conversations import Conversations


class HistoryNotKept(Unavailable):
    """A turn was answered but its history could not be saved."""


class Conversation:
    def __init__(
        self,
        orchestrator: Orchestrator,
        conversations: Conversations,
        window: HistoryWindow,
        caller: Caller,
        model: str,
        config: GenerationConfig,
        conversation_id: str,
        history: list[Message],
    ) -> None:
        self._orchestrator = orchestrator
        self._conversations = conversations
        self._window = window
        self._caller = caller
        self._model = model
        self._config = config
        self.id = conversation_id
        self._history = history
        # Every turn's call carries these (ConversationSetup's).
        self.metadata: RequestMetadata | None = None
        self.provider_options: ProviderOptions | None = None

    @classmethod
    async def open(
        cls,
        orchestrator: Orchestrator,
        conversations: Conversations,
        window: HistoryWindow,
        caller: Caller,
        model: str,
        config: GenerationConfig,
        *,
        conversation_id: str | None = None,
        system_prompt: str = "",
    ) -> Conversation:
        """Continues `conversation_id` (NotFound when unknown or expired), or
        starts and saves a new conversation. The model is the caller's to check."""
        organisation = caller.organisation
        if conversation_id:
            history = await conversations.load(organisation, conversation_id)
        else:
            conversation_id = conversations.new_id()
            history = [Message(Role.SYSTEM, system_prompt)] if system_prompt else []
            await conversations.save(organisation, conversation_id, history)
        return cls(orchestrator, conversations, window, caller, model, config, conversation_id, history)

    @property
    def history_length(self) -> int:
        return len(self._history)

    def check_tool_results(self, results: Sequence[tuple[str, str]], errors: ViolationCollector, path: str) -> None:
        """Each result must answer a call of the last answer, once."""
        last = self._history[-1] if self._history else None
        pending = {c.id for c in last.tool_calls} if last is not None and last.role is Role.ASSISTANT else set()
        seen: set[str] = set()
        for index, (call_id, _) in enumerate(results):
            if not call_id:
                errors.add(f"{path}[{index}].tool_call_id", "is required")
            elif call_id not in pending:
                errors.add(f"{path}[{index}].tool_call_id", "is not a tool call of the last answer")
            elif call_id in seen:
                errors.add(f"{path}[{index}].tool_call_id", "must not repeat")
            seen.add(call_id)
        missing = sorted(pending - seen)
        if results and missing and not errors.violations:
            # A provider refuses a history with a call left unanswered.
            errors.add(path, f"answer every tool call of the last answer (missing: {', '.join(missing)})")

    async def turn(
        self, content: str, turn_id: str = "", tool_results: Sequence[tuple[str, str]] = ()
    ) -> AsyncIterator[ChatEvent]:
        """The answer's events; once it is complete, the user's turn and the
        answer join the history, which is cut to the window and saved. The
        model sees the window too, so a conversation goes on past the request
        limits. Unavailable when the history cannot be saved: the answer was
        streamed but is not kept (and its finish event is not sent), and the
        client resumes from the last kept turn."""
        # Tool results answer the last answer's calls: they come first, so
        # the model sees each call followed by its result.
        errors = ViolationCollector()
        self.check_tool_results(tool_results, errors, "turn.tool_results")
        errors.raise_if_any()
        added = [Message(Role.TOOL, text, tool_call_id=call_id) for call_id, text in tool_results]
        if content:
            added.append(Message(Role.USER, content))
        request = ChatRequest(
            self._model,
            self._window.apply([*self._history, *added]),
            self._config,
            metadata=self.metadata,
            provider_options=self.provider_options,
        )
        answer = CompletedAnswer()
        finish: Finish | None = None
        async for event in self._orchestrator.chat(request, self._caller):
            answer.add(event)
            if isinstance(event, Finish):
                finish = event  # sent once the turn is kept: a finished turn is a saved one
            else:
                yield event
        assistant = Message(Role.ASSISTANT, answer.content, tool_calls=tuple(answer.tool_calls))
        history = self._window.apply([*self._history, *added, assistant])
        try:
            await self._conversations.save(self._caller.organisation, self.id, history)
        except Unavailable as error:
            raise HistoryNotKept(
                f"the answer to turn '{turn_id}' was not kept: {error}; resume the conversation"
                " to continue from its last kept turn",
                reason=error.reason,
                retry_after_seconds=error.retry_after_seconds,
            ) from error
        self._history = history
        if finish is not None:
            yield finish
