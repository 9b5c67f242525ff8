"""Who a request comes from, as the domain sees it."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

# The request id of the call under way in this task, "" outside one: set by
# the transport as each call starts, read by every log record (logs.py).
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


@dataclass(frozen=True, slots=True)
class Caller:
    request_id: str
    organisation: str
    principal: str = ""
    # When the client stops waiting, on the time.monotonic() clock; None if never.
    deadline: float | None = None
