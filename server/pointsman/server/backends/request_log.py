"""One request-log row per chat call, built from how the call went and handed
to the write buffer (the call never waits on the database). The row names the
call's status code as the wire does ("OK", "UNAVAILABLE", ...): `status_name`
is the transport's mapping, handed in by the composition root."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from ..domain.budgets import DailyBudget
from ..domain.caller import Caller
from ..domain.orchestrator import CallOutcome
from ..domain.ports.stores import RequestLog, RequestRecord
from ..domain.validation import loggable
from ..metrics import Metrics
from .write_buffer import WriteBuffer


class RequestLogger:
    def __init__(
        self,
        store: RequestLog,
        buffer: WriteBuffer[RequestRecord],
        metrics: Metrics | None = None,
        budgets: Sequence[DailyBudget] = (),
        serves: Callable[[str], bool] = lambda alias: True,
        *,
        status_name: Callable[[BaseException | None], str],
    ) -> None:
        self._store = store
        self._buffer = buffer
        self._metrics = metrics
        self._budgets = budgets
        self._status_name = status_name
        self._serves = serves  # metric labels name only aliases that exist: callers choose the rest

    def __call__(self, caller: Caller, outcome: CallOutcome) -> None:
        error = outcome.error
        if error is None and outcome.finish is None:
            error = GeneratorExit()  # ended before its Finish: the reader stopped
        finish = outcome.finish
        ttft = finish.time_to_first_token if finish is not None else None
        usage = outcome.usage
        price = outcome.start.deployment.price if outcome.start is not None else None
        cost = price.cost(usage.input_tokens, usage.output_tokens) if price is not None and usage is not None else 0.0
        route = outcome.route
        record = RequestRecord(
            id=self._store.new_id(),
            create_time=datetime.now(UTC),
            organisation=caller.organisation,
            request_id=caller.request_id,
            principal=caller.principal,
            model=loggable(outcome.model),  # the caller's words, logged even when refused for them
            deployment=outcome.start.deployment.name if outcome.start is not None else "",
            status_code=self._status_name(error),
            input_tokens=outcome.usage.input_tokens if outcome.usage is not None else 0,
            output_tokens=outcome.usage.output_tokens if outcome.usage is not None else 0,
            latency_ms=outcome.latency_seconds * 1000,
            time_to_first_token_ms=ttft * 1000 if ttft is not None else None,
            cache_hit=outcome.start is not None and outcome.start.cached,
            cost_usd=cost,
            semantic_cache_hit=outcome.start is not None and outcome.start.semantic,
            end_user_id=loggable(outcome.metadata.end_user_id) if outcome.metadata is not None else "",
            tags=_loggable_tags(outcome.metadata.tags) if outcome.metadata is not None else {},
            route_class=route.route_class if route is not None else "",
            routed_model=route.alias if route is not None else "",
            route_decision=route.decision if route is not None else None,
        )
        self._buffer.add(record)
        if cost and not record.cache_hit:
            for budget in self._budgets:
                budget.record(record.organisation, record.principal, cost)
        if self._metrics is not None:
            self._metrics.chat_call(
                record.model if self._serves(record.model) else "unknown",
                record.deployment,
                record.status_code,
                record.cache_hit,
                record.input_tokens,
                record.output_tokens,
                ttft,
                0.0 if record.cache_hit else cost,
                outcome.latency_seconds,
            )


def _loggable_tags(tags: dict[str, str]) -> dict[str, str]:
    # A refused request is logged too: its tags, bounded, as a record may hold them.
    return {loggable(key, 64): loggable(value, 512) for key, value in list(tags.items())[:16]}
