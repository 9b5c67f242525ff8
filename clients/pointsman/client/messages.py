"""The short path's inputs: a prompt as a plain string, or messages as dicts
({"role": "user", "content": "..."}) or ChatMessage, turned into requests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pointsman.orchestrator.v1 import orchestrator_pb2
from pointsman.type.v1 import chat_pb2

Messages = str | Iterable[Mapping[str, Any] | chat_pb2.ChatMessage]

ROLES = {
    "system": chat_pb2.ROLE_SYSTEM,
    "user": chat_pb2.ROLE_USER,
    "assistant": chat_pb2.ROLE_ASSISTANT,
    "tool": chat_pb2.ROLE_TOOL,
}


def chat_messages(messages: Messages, system: str | None = None) -> list[chat_pb2.ChatMessage]:
    out: list[chat_pb2.ChatMessage] = []
    if system:
        out.append(chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content=system))
    if isinstance(messages, str):
        out.append(chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=messages))
        return out
    for index, message in enumerate(messages):
        if isinstance(message, chat_pb2.ChatMessage):
            out.append(message)
            continue
        role = str(message.get("role", "user")).lower()
        if role not in ROLES:
            raise ValueError(f"messages[{index}].role: expected one of {', '.join(ROLES)}, got {role!r}")
        content = message.get("content", "")
        if not isinstance(content, str):
            raise ValueError(f"messages[{index}].content: expected a string")
        out.append(chat_pb2.ChatMessage(role=ROLES[role], content=content))
    return out


def chat_request(
    messages: Messages,
    model: str,
    *,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> orchestrator_pb2.ChatRequest:
    config = chat_pb2.GenerationConfig()
    if max_tokens is not None:
        config.max_tokens = max_tokens
    if temperature is not None:
        config.temperature = temperature
    return orchestrator_pb2.ChatRequest(model=model, messages=chat_messages(messages, system), config=config)
