"""The OpenAI-compatible HTTP door (docs/http.md): OpenAI's JSON to domain
calls and back, as transport/ is for gRPC. Translation only: every call goes
through the same orchestrator, authenticator and limits as a gRPC call."""

from .door import HttpDoor

__all__ = ["HttpDoor"]
