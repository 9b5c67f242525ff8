"""Retention (POINTSMAN_RETENTION_DAYS): firewall decisions, tool calls and request-log
rows older than that are deleted, every organisation's, at start and then
every hour, a batch at a time so writers never wait long. Every replica
does it; deleting what another replica deleted already is harmless. 0 keeps
everything (the default)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ..backends.stores import Stores

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 3600.0
BATCH_ROWS = 5000


class Retention:
    def __init__(
        self,
        stores: Stores,
        days: int,
        *,
        interval_seconds: float = INTERVAL_SECONDS,
        batch_rows: int = BATCH_ROWS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._tables = (
            ("decisions", stores.decisions),
            ("request log", stores.requests),
            ("tool calls", stores.tool_calls),
        )
        self._keep = timedelta(days=days)
        self._interval = interval_seconds
        self._batch = batch_rows
        self._now = now
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> dict[str, int]:
        """Deletes what is older than the retention period; rows deleted per table."""
        cutoff = self._now() - self._keep
        deleted: dict[str, int] = {}
        for name, table in self._tables:
            total = 0
            while True:
                count = await table.delete_before(cutoff, self._batch)
                total += count
                if count < self._batch:
                    break
                await asyncio.sleep(0)  # let calls run between batches
            deleted[name] = total
            if total:
                log.info("retention: deleted %d %s rows older than %s", total, name, cutoff.isoformat())
        return deleted

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception as error:  # the database is down: try again next time
                log.warning("retention: could not delete old rows (%s)", type(error).__name__)
            await asyncio.sleep(self._interval)
