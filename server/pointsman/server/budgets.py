"""Daily spending budgets: once an organisation's calls have cost
POINTSMAN_BUDGET_ORG_USD_PER_DAY today (UTC, at the routes file's prices),
its chat calls are refused with RESOURCE_EXHAUSTED (BUDGET_EXHAUSTED) until
the day ends.

What was spent is read from the request log, which every replica writes, so
no other shared state is needed and a restart forgets nothing. Each replica
reads an organisation's spending at most every `refresh_seconds` and adds its
own calls' costs as they end, so it sees its own spending at once and the
others' within the refresh period plus the write buffer's delay; the budget
can be overshot by what the calls already running and that period's calls
cost. If the database cannot be read, calls are let through (fail open) on
the last figure known."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .backends.stores import RequestLog
from .domain.caller import Caller
from .domain.errors import BudgetExhausted

log = logging.getLogger(__name__)

MAX_ORGANISATIONS = 10_000


@dataclass(slots=True)
class _Spent:
    day: datetime  # midnight UTC that starts the day
    usd: float
    read_at: float  # monotonic


class DailyBudget:
    def __init__(
        self,
        requests: RequestLog,
        limit_usd: float,
        *,
        refresh_seconds: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._requests = requests
        self.limit_usd = limit_usd
        self._refresh_seconds = refresh_seconds
        self._now = now
        self._spent: OrderedDict[str, _Spent] = OrderedDict()

    async def admit(self, caller: Caller) -> None:
        """Raises BudgetExhausted once the organisation's day is spent."""
        now = self._now()
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        spent = self._spent.get(caller.organisation)
        if spent is None or spent.day != day or time.monotonic() - spent.read_at >= self._refresh_seconds:
            spent = await self._read(caller.organisation, day, spent)
        if spent.usd >= self.limit_usd:
            renews = day + timedelta(days=1)
            raise BudgetExhausted(
                f"the organisation's budget of ${self.limit_usd:.2f} for today is spent; it renews at 00:00 UTC",
                retry_after_seconds=max(1.0, (renews - now).total_seconds()),
                metadata={"budget_usd": f"{self.limit_usd:g}", "renew_time": renews.isoformat()},
            )

    def record(self, organisation: str, cost_usd: float) -> None:
        """A call of this replica ended: its cost counts at once."""
        spent = self._spent.get(organisation)
        if spent is not None and cost_usd:
            spent.usd += cost_usd

    async def _read(self, organisation: str, day: datetime, known: _Spent | None) -> _Spent:
        try:
            usd = await self._requests.cost_since(organisation, day)
        except Exception as error:
            log.warning("could not read today's spending (%s); using the last figure known", type(error).__name__)
            usd = known.usd if known is not None and known.day == day else 0.0
        spent = _Spent(day, usd, time.monotonic())
        self._spent[organisation] = spent
        self._spent.move_to_end(organisation)
        while len(self._spent) > MAX_ORGANISATIONS:
            self._spent.popitem(last=False)
        return spent
