"""The history policy of a conversation: a window by messages and tokens.

Each Converse turn sends the whole kept history to the model, so without a
window a conversation would one day exceed the request limits and could
never continue. The window keeps the leading system messages, then as many
of the latest turns as fit, dropping whole turns (a user message and what
answered it), oldest first; the newest turn is always kept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .chat import Message, Role


def estimated_tokens(message: Message) -> int:
    """About four characters a token, plus four for the chat template's
    markers: the same rough count as a usage estimate."""
    chars = len(message.content) + sum(len(c.arguments_json) + len(c.name) for c in message.tool_calls)
    return -(-chars // 4) + 4


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    max_messages: int
    max_tokens: int
    # The request limit on characters: a window never builds a request over it.
    max_chars: int | None = None

    def apply(self, messages: Sequence[Message]) -> list[Message]:
        """The messages to send (and keep): within the window, or as close to
        it as keeping the system messages and the newest turn allows."""
        system = 0
        while system < len(messages) and messages[system].role is Role.SYSTEM:
            system += 1
        kept_messages = system
        kept_tokens = sum(estimated_tokens(m) for m in messages[:system])
        kept_chars = sum(len(m.content) for m in messages[:system])
        start = len(messages)
        for turn_start in reversed(self._turn_starts(messages, system)):
            turn = messages[turn_start:start]
            messages_after = kept_messages + len(turn)
            tokens_after = kept_tokens + sum(estimated_tokens(m) for m in turn)
            chars_after = kept_chars + sum(len(m.content) for m in turn)
            newest = start == len(messages)
            fits = messages_after <= self.max_messages and tokens_after <= self.max_tokens
            if self.max_chars is not None:
                fits = fits and chars_after <= self.max_chars
            if not (fits or newest):
                break
            kept_messages, kept_tokens, kept_chars, start = messages_after, tokens_after, chars_after, turn_start
        return [*messages[:system], *messages[start:]]

    @staticmethod
    def _turn_starts(messages: Sequence[Message], system: int) -> list[int]:
        """Where each turn begins: at each user message after the system
        messages (and at the first message, whatever it is)."""
        starts = [i for i in range(system, len(messages)) if messages[i].role is Role.USER]
        if len(messages) > system and (not starts or starts[0] != system):
            starts.insert(0, system)
        return starts
