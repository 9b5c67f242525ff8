"""The decision store the firewall records through: decisions go to a write
buffer (a scan never waits on the database) and are counted in the metrics;
reads let this process's own buffered decisions land first, then ask the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..domain.firewall.verdict import Decision
from ..domain.ports.stores import CategoryCount, DecisionFilter, DecisionStore
from ..metrics import Metrics
from .write_buffer import WriteBuffer


class BufferedDecisionLog:
    def __init__(self, store: DecisionStore, buffer: WriteBuffer[Decision], metrics: Metrics | None = None) -> None:
        self._store = store
        self.buffer = buffer
        self._metrics = metrics

    def new_id(self) -> str:
        return self._store.new_id()

    async def record(self, decision: Decision) -> None:
        self.buffer.add(decision)
        if self._metrics is not None:
            categories = (finding.category.value for finding in decision.findings)
            self._metrics.decision(decision.direction.value, decision.action.value, categories)

    async def record_many(self, decisions: Sequence[Decision]) -> None:
        for decision in decisions:
            await self.record(decision)

    async def list_decisions(
        self, organisation: str, where: DecisionFilter, page_size: int, after_id: str | None
    ) -> tuple[list[Decision], str | None]:
        await self.buffer.flushed()
        return await self._store.list_decisions(organisation, where, page_size, after_id)

    async def count_by_category(
        self, organisation: str, start_time: datetime, end_time: datetime
    ) -> list[CategoryCount]:
        await self.buffer.flushed()
        return await self._store.count_by_category(organisation, start_time, end_time)

    async def delete_before(self, cutoff: datetime, limit: int) -> int:
        return await self._store.delete_before(cutoff, limit)
