"""Server-side conversation history for Converse. The embedded store is an LRU
bounded in count and age, so idle conversations do not hold memory forever."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict

from .chat import Message
from .errors import NotFound


class ConversationStore:
    def __init__(self, max_conversations: int = 10_000, ttl_seconds: float = 24 * 3600) -> None:
        self._items: OrderedDict[tuple[str, str], tuple[float, list[Message]]] = OrderedDict()
        self._max = max_conversations
        self._ttl = ttl_seconds

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(12)

    def load(self, organisation: str, conversation_id: str) -> list[Message]:
        key = (organisation, conversation_id)
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self._items.pop(key, None)
            raise NotFound(
                f"conversation 'conversations/{conversation_id}' does not exist or has expired",
                reason="CONVERSATION_NOT_FOUND",
            )
        self._items.move_to_end(key)
        return list(item[1])

    def save(self, organisation: str, conversation_id: str, history: list[Message]) -> None:
        key = (organisation, conversation_id)
        self._items[key] = (time.monotonic() + self._ttl, list(history))
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
