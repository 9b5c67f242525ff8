"""GetStats and ListCalls on the wire: the window and filters checked, the
domain's figures (domain/stats.py) and request-log records as messages."""

from __future__ import annotations

from datetime import timedelta

from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

from ..domain.errors import InvalidArgument, ViolationCollector
from ..domain.ports.stores import RequestFilter, RequestRecord, SpendGroup
from ..domain.request_metadata import check_end_user_id, check_tag_key, check_tags
from ..domain.stats import Stats
from ..domain.validation import check_text
from . import convert
from .resources import decode_record_cursor, encode_token, page_size

DEFAULT_WINDOW = timedelta(hours=1)
MAX_FILTER_CHARS = 256
MAX_WINDOW = timedelta(days=30)


def stats_window(request: pb.GetStatsRequest) -> timedelta:
    if not request.HasField("window"):
        return DEFAULT_WINDOW
    # Compared as numbers first: a huge Duration does not fit a timedelta.
    seconds = request.window.seconds + request.window.nanos / 1e9
    if not 0 < seconds <= MAX_WINDOW.total_seconds():
        raise InvalidArgument.one("window", f"must be more than 0 and at most {MAX_WINDOW.days} days")
    return request.window.ToTimedelta()


MAX_TAG_KEYS = 8
MAX_GROUPS = 1000
DEFAULT_GROUPS = 100
MAX_TAG_FILTERS = 4


def _group_request(request: pb.GetStatsRequest) -> tuple[list[str], int]:
    errors = ViolationCollector()
    keys = list(request.tag_keys)
    if len(keys) > MAX_TAG_KEYS:
        errors.add("tag_keys", f"at most {MAX_TAG_KEYS} keys are allowed")
    for index, key in enumerate(keys[:MAX_TAG_KEYS]):
        check_tag_key(key, errors, f"tag_keys[{index}]")
    if not 0 <= request.max_groups <= MAX_GROUPS:
        errors.add("max_groups", f"must be from 1 to {MAX_GROUPS}, or 0 for {DEFAULT_GROUPS}")
    errors.raise_if_any()
    return list(dict.fromkeys(keys)), request.max_groups or DEFAULT_GROUPS


def _spend(group: SpendGroup) -> pb.SpendStats:
    return pb.SpendStats(
        tag_key=group.tag_key,
        value=group.value,
        router=group.router,
        requests=group.requests,
        failed_requests=group.failed_requests,
        input_tokens=group.input_tokens,
        output_tokens=group.output_tokens,
        cache_hits=group.cache_hits,
        cost_usd=group.cost_usd,
    )


async def get_stats(stats: Stats, request: pb.GetStatsRequest, organisation: str) -> pb.GetStatsResponse:
    window = stats_window(request)
    tag_keys, max_groups = _group_request(request)
    traffic = await stats.traffic(
        organisation,
        window,
        tag_keys=tag_keys,
        by_end_user=request.by_end_user,
        by_route_class=request.by_route_class,
        max_groups=max_groups,
    )
    summary = traffic.summary
    groups = traffic.groups
    return pb.GetStatsResponse(
        start_time=convert.timestamp(traffic.start_time),
        end_time=convert.timestamp(traffic.end_time),
        requests=summary.requests,
        failed_requests=summary.failed_requests,
        input_tokens=summary.input_tokens,
        output_tokens=summary.output_tokens,
        cache_hits=summary.cache_hits,
        cache_hit_ratio=summary.cache_hits / summary.requests if summary.requests else 0.0,
        tokens_saved=summary.tokens_saved,
        semantic_cache_hits=summary.semantic_cache_hits,
        semantic_tokens_saved=summary.semantic_tokens_saved,
        semantic_cost_saved_usd=summary.semantic_cost_saved_usd,
        cost_usd=summary.cost_usd,
        cost_saved_usd=summary.cost_saved_usd,
        deployments=[
            pb.DeploymentStats(
                deployment=d.deployment,
                requests=d.requests,
                failed_requests=d.failed_requests,
                latency_p50_ms=d.latency_p50_ms,
                latency_p99_ms=d.latency_p99_ms,
                time_to_first_token_p50_ms=d.time_to_first_token_p50_ms,
                cost_usd=d.cost_usd,
            )
            for d in summary.deployments
        ],
        firewall=[
            pb.FirewallCategoryStats(
                category=convert.CATEGORIES_TO_PROTO[c.category],
                blocked=c.blocked,
                redacted=c.redacted,
                logged=c.logged,
            )
            for c in traffic.categories
        ],
        active_conversations=traffic.active_conversations,
        messages_processed=summary.requests,
        llm_calls=summary.llm_calls,
        llm_calls_skipped=summary.cache_hits,
        average_response_time_ms=summary.average_latency_ms,
        tags=[_spend(g) for g in groups.tags],
        end_users=[_spend(g) for g in groups.end_users],
        route_classes=[_spend(g) for g in groups.route_classes],
        groups_truncated=groups.truncated,
    )


async def list_calls(stats: Stats, request: pb.ListCallsRequest, organisation: str) -> pb.ListCallsResponse:
    errors = ViolationCollector()
    for field in ("model", "principal", "status_code", "route_class"):
        check_text(getattr(request, field), errors, field, max_chars=MAX_FILTER_CHARS)
    check_end_user_id(request.end_user_id, errors, "end_user_id")
    tags = dict(request.tags)
    check_tags(tags, errors, "tags", max_tags=MAX_TAG_FILTERS)
    where = RequestFilter(
        model=request.model or None,
        principal=request.principal or None,
        status_code=request.status_code or None,
        start_time=convert.time_field(request, "start_time", errors),
        end_time=convert.time_field(request, "end_time", errors),
        end_user_id=request.end_user_id or None,
        tags=tags,
        route_class=request.route_class or None,
    )
    errors.raise_if_any()
    after_id = decode_record_cursor(request.page_token)
    page, after = await stats.calls(organisation, where, page_size(request.page_size), after_id)
    return pb.ListCallsResponse(
        calls=[_call(record) for record in page], next_page_token=encode_token(after) if after else ""
    )


def _call(record: RequestRecord) -> pb.Call:
    return pb.Call(
        name=f"calls/{record.id}",
        create_time=convert.timestamp(record.create_time),
        request_id=record.request_id,
        principal=record.principal,
        model=record.model,
        deployment=record.deployment,
        status_code=record.status_code,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        latency_ms=record.latency_ms,
        time_to_first_token_ms=record.time_to_first_token_ms or 0.0,
        cache_hit=record.cache_hit,
        cost_usd=record.cost_usd,
        end_user_id=record.end_user_id,
        tags=record.tags,
        route_class=record.route_class,
        routed_model=record.routed_model,
        route_decision=convert.ROUTE_DECISIONS[record.route_decision],
    )
