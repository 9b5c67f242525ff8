"""What both SQL stores share on the way to and from rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...domain.firewall.verdict import Category
from ...domain.ports.stores import CategoryCount, DeploymentSummary, RequestSummary

# last_used_time is a hint for people, not an audit trail: writing it on
# every call would turn each authenticated read into a write.


def check_page_size(page_size: int) -> int:
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    return page_size


def normalise_email(email: str) -> str:
    return email.strip().lower()


def category_counts(rows: Iterable[Any]) -> list[CategoryCount]:
    """Rows of (category, blocked, redacted, logged) in category order;
    categories this version does not know (a newer one wrote them) are left out."""
    known = {c.value: c for c in Category}
    counts = [
        CategoryCount(known[row["category"]], row["blocked"], row["redacted"], row["logged"])
        for row in rows
        if row["category"] in known
    ]
    order = list(Category)
    return sorted(counts, key=lambda count: order.index(count.category))


def request_summary(totals: Any, deployments: Iterable[Any]) -> RequestSummary:
    return RequestSummary(
        requests=totals["requests"],
        failed_requests=totals["failed_requests"],
        input_tokens=totals["input_tokens"],
        output_tokens=totals["output_tokens"],
        cache_hits=totals["cache_hits"],
        tokens_saved=totals["tokens_saved"],
        cost_usd=float(totals["cost_usd"]),
        cost_saved_usd=float(totals["cost_saved_usd"]),
        semantic_cache_hits=totals["semantic_cache_hits"],
        semantic_tokens_saved=totals["semantic_tokens_saved"],
        semantic_cost_saved_usd=float(totals["semantic_cost_saved_usd"]),
        llm_calls=totals["llm_calls"],
        average_latency_ms=float(totals["average_latency_ms"]),
        deployments=tuple(
            DeploymentSummary(
                deployment=row["deployment"],
                requests=row["requests"],
                failed_requests=row["failed_requests"],
                latency_p50_ms=row["latency_p50_ms"],
                latency_p99_ms=row["latency_p99_ms"],
                time_to_first_token_p50_ms=row["time_to_first_token_p50_ms"] or 0.0,
                cost_usd=float(row["cost_usd"]),
            )
            for row in deployments
        ),
    )
