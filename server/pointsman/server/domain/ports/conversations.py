"""Server-side conversation history for Converse: what the session needs from
a store (backends/shared/conversations.py: in-process, or Redis so that any
replica can continue any conversation)."""

from __future__ import annotations

from typing import Protocol

from ..chat import Message
from ..errors import NotFound


class Conversations(Protocol):
    @property
    def healthy(self) -> bool: ...

    def new_id(self) -> str: ...

    async def load(self, organisation: str, conversation_id: str) -> list[Message]:
        """Raises NotFound (CONVERSATION_NOT_FOUND) for an unknown or expired id,
        or one that belongs to another organisation."""
        ...

    async def save(self, organisation: str, conversation_id: str, history: list[Message]) -> None:
        """Replaces the history and restarts its time to live."""
        ...

    async def delete(self, organisation: str, conversation_id: str) -> None:
        """Forgets the history; NotFound (CONVERSATION_NOT_FOUND) as `load`."""
        ...

    async def count(self, organisation: str) -> int:
        """How many of the organisation's conversations are still kept."""
        ...


def conversation_not_found(conversation_id: str) -> NotFound:
    # The same words as the embedded store's.
    return NotFound(
        f"conversation 'conversations/{conversation_id}' does not exist or has expired",
        reason="CONVERSATION_NOT_FOUND",
    )
