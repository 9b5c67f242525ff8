"""The conversation history window: system messages kept, whole turns dropped
oldest first, within messages, tokens and characters; the newest turn always."""

from __future__ import annotations

from pointsman.server.domain.chat import Message, Role, ToolCall
from pointsman.server.domain.history import HistoryWindow, estimated_tokens

SYSTEM = Message(Role.SYSTEM, "be brief")


def conversation(turns: int, size: int = 10) -> list[Message]:
    messages = [SYSTEM]
    for n in range(turns):
        messages += [Message(Role.USER, f"q{n}".ljust(size)), Message(Role.ASSISTANT, f"a{n}".ljust(size))]
    return messages


def test_a_short_conversation_is_kept_whole() -> None:
    messages = conversation(3)
    assert HistoryWindow(max_messages=100, max_tokens=10_000).apply(messages) == messages


def test_the_oldest_turns_go_first_and_the_system_message_stays() -> None:
    kept = HistoryWindow(max_messages=6, max_tokens=10_000).apply(conversation(10))
    assert kept[0] == SYSTEM
    assert [m.content.strip() for m in kept[1:]] == ["q8", "a8", "q9", "a9"]  # whole turns only: 5 messages


def test_the_token_window_counts_estimated_tokens() -> None:
    messages = conversation(10, size=400)  # about 104 tokens a message
    window = HistoryWindow(max_messages=1000, max_tokens=1000)
    kept = window.apply(messages)
    assert sum(estimated_tokens(m) for m in kept) <= 1000
    assert kept[0] == SYSTEM and kept[-1] == messages[-1] and len(kept) < len(messages)
    assert len(HistoryWindow(1000, 1000, max_chars=900).apply(messages)) == 3  # system + the newest turn


def test_the_newest_turn_is_kept_even_when_it_alone_is_over() -> None:
    huge = [SYSTEM, Message(Role.USER, "x" * 10_000)]
    assert HistoryWindow(max_messages=2, max_tokens=10).apply(huge) == huge


def test_a_turn_keeps_its_tool_calls_and_results_together() -> None:
    call = ToolCall("c1", "lookup", '{"q": 1}')
    messages = [
        SYSTEM,
        Message(Role.USER, "old"),
        Message(Role.ASSISTANT, "old answer"),
        Message(Role.USER, "look it up"),
        Message(Role.ASSISTANT, "", tool_calls=(call,)),
        Message(Role.TOOL, "found", tool_call_id="c1"),
        Message(Role.ASSISTANT, "here"),
    ]
    assert HistoryWindow(max_messages=5, max_tokens=10_000).apply(messages) == [SYSTEM, *messages[3:]]
