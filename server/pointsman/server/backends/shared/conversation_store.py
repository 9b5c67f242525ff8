"""Converse history in this process: an LRU bounded in count and age, so idle
conversations do not hold memory forever."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable

from ...domain.chat import Message
from ...domain.ports.conversations import conversation_not_found


class ConversationStore:
    def __init__(
        self,
        max_conversations: int = 10_000,
        ttl_seconds: float = 24 * 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._items: OrderedDict[tuple[str, str], tuple[float, list[Message]]] = OrderedDict()
        self._max = max_conversations
        self._ttl = ttl_seconds
        self._clock = clock

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(12)

    def load(self, organisation: str, conversation_id: str) -> list[Message]:
        key = (organisation, conversation_id)
        item = self._items.get(key)
        if item is None or item[0] < self._clock():
            self._items.pop(key, None)
            raise conversation_not_found(conversation_id)
        self._items.move_to_end(key)
        return list(item[1])

    def save(self, organisation: str, conversation_id: str, history: list[Message]) -> None:
        key = (organisation, conversation_id)
        self._items[key] = (self._clock() + self._ttl, list(history))
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def delete(self, organisation: str, conversation_id: str) -> None:
        """Raises NotFound for an unknown or expired conversation."""
        self.load(organisation, conversation_id)  # NotFound, as a load would say
        del self._items[(organisation, conversation_id)]

    def count(self, organisation: str) -> int:
        """The organisation's conversations still kept. Walks every entry (at
        most `max_conversations`), dropping the expired ones on the way."""
        now = self._clock()
        expired = [key for key, (expiry, _) in self._items.items() if expiry < now]
        for key in expired:
            del self._items[key]
        return sum(1 for org, _ in self._items if org == organisation)

    def __len__(self) -> int:
        return len(self._items)
