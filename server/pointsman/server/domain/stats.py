"""One organisation's traffic over a recent window, summed by the database
from the request log and the firewall's decisions (so every replica answers
the same), and the request log's records themselves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .ports.conversations import Conversations
from .ports.stores import (
    CategoryCount,
    DecisionStore,
    RequestFilter,
    RequestLog,
    RequestRecord,
    RequestSummary,
    SpendGroups,
)


@dataclass(frozen=True, slots=True)
class Traffic:
    start_time: datetime
    end_time: datetime
    summary: RequestSummary
    categories: list[CategoryCount]  # in category order
    active_conversations: int
    # Spend per tag value, end user and route class, when asked.
    groups: SpendGroups = field(default_factory=SpendGroups)


class Stats:
    """`requests_flushed` lets this process's own buffered request-log rows
    land first, so a caller sees the calls it just made (the decision store
    given is expected to do the same for its decisions)."""

    def __init__(
        self,
        requests: RequestLog,
        requests_flushed: Callable[[], Awaitable[None]],
        decisions: DecisionStore,
        conversations: Conversations,
    ) -> None:
        self._requests = requests
        self._requests_flushed = requests_flushed
        self._decisions = decisions
        self._conversations = conversations

    async def traffic(
        self,
        organisation: str,
        window: timedelta,
        *,
        tag_keys: Sequence[str] = (),
        by_end_user: bool = False,
        by_route_class: bool = False,
        max_groups: int = 100,
    ) -> Traffic:
        await self._requests_flushed()
        end = datetime.now(UTC)
        start = end - window
        active = await self._conversations.count(organisation)
        summary = await self._requests.summarise(organisation, start, end)
        categories = await self._decisions.count_by_category(organisation, start, end)
        groups = SpendGroups()
        if tag_keys or by_end_user or by_route_class:
            groups = await self._requests.summarise_groups(
                organisation, start, end, tag_keys, by_end_user, max_groups, by_route_class
            )
        return Traffic(start, end, summary, categories, active, groups)

    async def calls(
        self, organisation: str, where: RequestFilter, page_size: int, after_id: str | None
    ) -> tuple[list[RequestRecord], str | None]:
        await self._requests_flushed()  # the caller's own calls, just made, are listed
        return await self._requests.list_requests(organisation, where, page_size, after_id)
