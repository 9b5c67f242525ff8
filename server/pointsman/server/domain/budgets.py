"""Daily spending budgets: once an organisation's calls (or one principal's)
have cost POINTSMAN_BUDGET_ORG_USD_PER_DAY (or
POINTSMAN_BUDGET_PRINCIPAL_USD_PER_DAY) today, UTC, at the routes file's
prices, its chat calls are refused with RESOURCE_EXHAUSTED (BUDGET_EXHAUSTED)
until the day ends.

What was spent is read from the request log, which every replica writes, so
no other shared state is needed and a restart forgets nothing. Each replica
reads a spender's day at most every `refresh_seconds` and adds its own calls'
costs as they end, so it sees its own spending at once and the others' within
the refresh period plus the write buffer's delay; the budget can be overshot
by what the calls already running and that period's calls cost. If the
database cannot be read, calls are let through (fail open) on the last figure
known."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .caller import Caller
from .errors import BudgetExhausted
from .ports.stores import RequestLog

log = logging.getLogger(__name__)

# Spenders remembered per replica; the least recently seen are read again.
MAX_SPENDERS = 100_000


@dataclass(slots=True)
class _Spent:
    day: datetime  # midnight UTC that starts the day
    usd: float
    read_at: float  # monotonic


class DailyBudget:
    """One limit, per organisation or (`per_principal`) per principal of an organisation."""

    def __init__(
        self,
        requests: RequestLog,
        limit_usd: float,
        *,
        per_principal: bool = False,
        refresh_seconds: float = 5.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._requests = requests
        self.limit_usd = limit_usd
        self._per_principal = per_principal
        self._refresh_seconds = refresh_seconds
        self._now = now
        self._spent: OrderedDict[tuple[str, str], _Spent] = OrderedDict()

    async def admit(self, caller: Caller) -> None:
        """Raises BudgetExhausted once the spender's day is spent."""
        now = self._now()
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        key = self._key(caller.organisation, caller.principal)
        spent = self._spent.get(key)
        if spent is None or spent.day != day or time.monotonic() - spent.read_at >= self._refresh_seconds:
            spent = await self._read(key, day, spent)
        if spent.usd >= self.limit_usd:
            renews = day + timedelta(days=1)
            whose = "this principal's" if self._per_principal else "the organisation's"
            raise BudgetExhausted(
                f"{whose} budget of ${self.limit_usd:.2f} for today is spent; it renews at 00:00 UTC",
                retry_after_seconds=max(1.0, (renews - now).total_seconds()),
                metadata={
                    "budget_usd": f"{self.limit_usd:g}",
                    "budget_scope": "principal" if self._per_principal else "organisation",
                    "renew_time": renews.isoformat(),
                },
            )

    def record(self, organisation: str, principal: str, cost_usd: float) -> None:
        """A call of this replica ended: its cost counts at once."""
        spent = self._spent.get(self._key(organisation, principal))
        if spent is not None and cost_usd:
            spent.usd += cost_usd

    def _key(self, organisation: str, principal: str) -> tuple[str, str]:
        return (organisation, principal if self._per_principal else "")

    async def _read(self, key: tuple[str, str], day: datetime, known: _Spent | None) -> _Spent:
        organisation, principal = key
        try:
            usd = await self._requests.cost_since(organisation, day, principal if self._per_principal else None)
        except Exception as error:
            log.warning("could not read today's spending (%s); using the last figure known", type(error).__name__)
            usd = known.usd if known is not None and known.day == day else 0.0
        spent = _Spent(day, usd, time.monotonic())
        self._spent[key] = spent
        self._spent.move_to_end(key)
        while len(self._spent) > MAX_SPENDERS:
            self._spent.popitem(last=False)
        return spent
