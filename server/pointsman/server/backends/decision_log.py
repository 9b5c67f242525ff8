"""Firewall decisions in memory: the decision store for tests and benchmarks
that need no database. The newest ones are kept in a bounded ring, so memory
stays flat however long it runs."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime

from ..domain.firewall.verdict import Action, Category, Decision
from ..domain.ports.stores import CategoryCount, DecisionFilter

# The actions `count_by_category` counts, by the CategoryCount field they add to.
_COUNTED = {Action.BLOCK: "blocked", Action.REDACT: "redacted", Action.LOG: "logged"}


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

    async def record_many(self, decisions: Sequence[Decision]) -> None:
        self._decisions.extend(decisions)

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

    async def count_by_category(
        self, organisation: str, start_time: datetime, end_time: datetime
    ) -> list[CategoryCount]:
        counts: dict[Category, dict[str, int]] = {}
        for decision in self._decisions:
            field = _COUNTED.get(decision.action)
            if field is None or decision.organisation != organisation:
                continue
            if not start_time <= decision.create_time < end_time:
                continue
            for category in {finding.category for finding in decision.findings}:
                row = counts.setdefault(category, {})
                row[field] = row.get(field, 0) + 1
        return [CategoryCount(category, **counts[category]) for category in Category if category in counts]

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        kept: deque[Decision] = deque(maxlen=self._decisions.maxlen)
        deleted = 0
        for decision in self._decisions:  # oldest first
            if decision.create_time < cutoff and deleted < limit:
                deleted += 1
            else:
                kept.append(decision)
        self._decisions = kept
        return deleted
