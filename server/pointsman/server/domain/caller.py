"""Who a request comes from, as the domain sees it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    request_id: str
    organisation: str
    principal: str = ""
    # When the client stops waiting, on the time.monotonic() clock; None if never.
    deadline: float | None = None
