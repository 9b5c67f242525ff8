"""Python clients for Pointsman, over the generated stubs: the typed API
(`client.orchestrator.Chat(request)`, ...) and a short path for the common
case (`client.chat_text("hello")`, `client.stream_text(...)`)."""

from .aio import AsyncClient
from .errors import FieldViolation, PointsmanError
from .options import tls_credentials
from .retry import DEFAULT_RETRY, RetryPolicy
from .sync import Client

__all__ = [
    "DEFAULT_RETRY",
    "AsyncClient",
    "Client",
    "FieldViolation",
    "PointsmanError",
    "RetryPolicy",
    "tls_credentials",
]
