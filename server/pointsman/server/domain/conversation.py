"""One Converse conversation's history across turns: loaded (or started with
its system prompt), extended by each turn that is answered and saved after it.
A turn that fails or is cancelled leaves the history as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator

from .caller import Caller
from .chat import ChatRequest, GenerationConfig, Message, Role
from .orchestrator import ChatEvent, CompletedAnswer, Orchestrator
from .ports.conversations import Conversations


class Conversation:
    def __init__(
        self,
        orchestrator: Orchestrator,
        conversations: Conversations,
        caller: Caller,
        model: str,
        config: GenerationConfig,
        conversation_id: str,
        history: list[Message],
    ) -> None:
        self._orchestrator = orchestrator
        self._conversations = conversations
        self._caller = caller
        self._model = model
        self._config = config
        self.id = conversation_id
        self._history = history

    @classmethod
    async def open(
        cls,
        orchestrator: Orchestrator,
        conversations: Conversations,
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
        return cls(orchestrator, conversations, caller, model, config, conversation_id, history)

    @property
    def history_length(self) -> int:
        return len(self._history)

    async def turn(self, content: str) -> AsyncIterator[ChatEvent]:
        """The answer's events; once it is complete, the user's turn and the
        answer join the history and the history is saved."""
        user = Message(Role.USER, content)
        request = ChatRequest(self._model, [*self._history, user], self._config)
        answer = CompletedAnswer()
        async for event in self._orchestrator.chat(request, self._caller):
            answer.add(event)
            yield event
        assistant = Message(Role.ASSISTANT, answer.content, tool_calls=tuple(answer.tool_calls))
        self._history += [user, assistant]
        await self._conversations.save(self._caller.organisation, self.id, self._history)
