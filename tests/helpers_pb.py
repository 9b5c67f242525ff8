"""Small builders for request protos used across tests."""

from __future__ import annotations

from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.type.v1 import chat_pb2


def user(text: str) -> chat_pb2.ChatMessage:
    return chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=text)


def chat_request(text: str, model: str = "builtin", **config: object) -> orch.ChatRequest:
    return orch.ChatRequest(model=model, messages=[user(text)], config=chat_pb2.GenerationConfig(**config))


def event_kinds(events: list[orch.ChatResponse]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def text_of(events: list[object]) -> str:
    return "".join(e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta")  # type: ignore[attr-defined]
