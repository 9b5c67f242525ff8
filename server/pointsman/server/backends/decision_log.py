"""Recorded firewall decisions. The embedded log keeps the newest ones in a
bounded ring, so memory stays flat however long the server runs."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..domain.firewall.verdict import Action, Category, Decision, Direction


@dataclass(frozen=True, slots=True)
class DecisionFilter:
    action: Action | None = None
    direction: Direction | None = None
    category: Category | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None

    def matches(self, decision: Decision) -> bool:
        if self.action is not None and decision.action is not self.action:
            return False
        if self.direction is not None and decision.direction is not self.direction:
            return False
        if self.category is not None and all(f.category is not self.category for f in decision.findings):
            return False
        if self.start_time is not None and decision.create_time < self.start_time:
            return False
        return not (self.end_time is not None and decision.create_time >= self.end_time)


class DecisionLog(Protocol):
    def new_id(self) -> str: ...
    async def record(self, decision: Decision) -> None: ...
    async def list_decisions(
        self, organisation: str, where: DecisionFilter, page_size: int, after_id: str | None
    ) -> tuple[list[Decision], str | None]: ...


class InMemoryDecisionLog:
    """Ids sort by time (nanosecond clock, then a sequence), so "newest first"
    paging is a walk down the ring from the cursor."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._decisions: deque[Decision] = deque(maxlen=capacity)
        self._sequence = itertools.count()

    def new_id(self) -> str:
        return f"{time.time_ns():016x}{next(self._sequence) % 0x10000:04x}"

    async def record(self, decision: Decision) -> None:
        self._decisions.append(decision)

    async def list_decisions(
        self, organisation: str, where: DecisionFilter, page_size: int, after_id: str | None
    ) -> tuple[list[Decision], str | None]:
        page: list[Decision] = []
        for decision in reversed(self._decisions):
            if after_id is not None and decision.id >= after_id:
                continue
            if decision.organisation != organisation or not where.matches(decision):
                continue
            if len(page) == page_size:
                return page, page[-1].id
            page.append(decision)
        return page, None
