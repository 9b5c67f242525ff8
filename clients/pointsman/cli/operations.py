"""Running the gateway: `health`, `stats`, `calls`."""

from __future__ import annotations

import argparse
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2

from pointsman.orchestrator.v1 import orchestrator_pb2 as pb
from pointsman.type.v1 import firewall_pb2 as types

from ..client import PointsmanError
from .arguments import command
from .chat import metadata_flags
from .connection import connect
from .output import first, label, name, print_items, print_json, when


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = command(sub, "stats", cmd_stats, "traffic, cache, latency and firewall figures", [common])
    p.add_argument("--window", type=float, default=3600.0, help="seconds back from now (default %(default)s)")
    p.add_argument(
        "--tag-key", action="append", default=[], help="also sum spend per value of this tag key; repeatable"
    )
    p.add_argument("--by-end-user", action="store_true", help="also sum spend per end user")
    p.add_argument("--by-route-class", action="store_true", help="also sum spend per router alias and class")

    p = command(sub, "calls", cmd_calls, "the request log (admins): chat calls, newest first", [common])
    p.add_argument("--model", help="only this model alias")
    p.add_argument("--principal", help="only this principal (users/{id} or {id})")
    p.add_argument("--status", help="only calls that ended so: OK, UNAVAILABLE, PERMISSION_DENIED, ...")
    p.add_argument("--route-class", help="only calls a router alias put in this class (default: its fallback)")
    metadata_flags(p, filters=True)
    p.add_argument("--limit", type=int, default=50, help="at most this many (default %(default)s)")

    p = command(sub, "health", cmd_health, "exit 0 only if the server reports SERVING", [common])
    p.add_argument("--service", default="", help="service name; empty means the whole server")


def cmd_health(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            status = client.health(args.service)
        except PointsmanError as error:
            if error.code != grpc.StatusCode.NOT_FOUND:
                raise
            # Health/Check's NOT_FOUND names nothing: say which service, and those the server knows.
            try:
                known = ", ".join(name for name in client.health_services() if name) or "none"
            except PointsmanError:
                known = "unknown (the server does not list them)"
            error.message = f"the server has no service named {args.service!r}; it knows: {known}"
            raise
    status_name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    if args.json:
        print(f'{{"status": "{status_name}"}}')
    else:
        print(status_name)
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


def cmd_stats(args: argparse.Namespace) -> int:
    window = Duration()
    window.FromNanoseconds(int(args.window * 1e9))
    with connect(args) as client:
        request = pb.GetStatsRequest(
            window=window, tag_keys=args.tag_key, by_end_user=args.by_end_user, by_route_class=args.by_route_class
        )
        stats = client.orchestrator.GetStats(request)
    if args.json:
        print_json(stats)
        return 0
    print(f"{stats.start_time.ToJsonString()} to {stats.end_time.ToJsonString()}")
    print(f"requests\t{stats.requests}\tfailed {stats.failed_requests}")
    print(
        f"messages processed\t{stats.messages_processed}\tLLM calls {stats.llm_calls}"
        f"\tskipped (cache) {stats.llm_calls_skipped}\taverage {stats.average_response_time_ms:.1f} ms"
    )
    print(f"tokens\tin {stats.input_tokens}\tout {stats.output_tokens}\tsaved by the cache {stats.tokens_saved}")
    print(f"cache hits\t{stats.cache_hits}\t{stats.cache_hit_ratio:.1%}")
    print(f"cost\t${stats.cost_usd:.4f}\tsaved by the cache ${stats.cost_saved_usd:.4f}")
    print(f"active conversations\t{stats.active_conversations}")
    for d in stats.deployments:
        print(
            f"{d.deployment}\t{d.requests} requests\t{d.failed_requests} failed\tp50 {d.latency_p50_ms:.1f} ms"
            f"\tp99 {d.latency_p99_ms:.1f} ms\tfirst token p50 {d.time_to_first_token_p50_ms:.1f} ms"
            f"\t${d.cost_usd:.4f}"
        )
    for f in stats.firewall:
        category = label(types.Category, f.category, "CATEGORY_")
        print(f"firewall {category}\tblocked {f.blocked}\tredacted {f.redacted}\tlogged {f.logged}")
    for g in [*stats.tags, *stats.end_users, *stats.route_classes]:
        if g.router:
            group = f"route {g.router}/{g.value}"
        else:
            group = f"tag {g.tag_key}={g.value}" if g.tag_key else f"end user {g.value}"
        print(
            f"{group}\t{g.requests} requests\t{g.failed_requests} failed"
            f"\ttokens in {g.input_tokens} out {g.output_tokens}\tcache hits {g.cache_hits}\t${g.cost_usd:.4f}"
        )
    if stats.groups_truncated:
        print("(more groups than shown)")
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    request = pb.ListCallsRequest(
        page_size=min(args.limit, 1000),
        model=args.model or "",
        principal=name(args.principal, "users") if args.principal else "",
        status_code=(args.status or "").upper(),
        end_user_id=args.user or "",
        tags=dict(args.tags or []),
        route_class=args.route_class or "",
    )

    def line(call: Any) -> str:
        cached = " (cached)" if call.cache_hit else ""
        # A router alias: the class and the model it chose, and how ("auto -> code: coder (keyword)").
        model = call.model
        if call.routed_model:
            decided = label(pb.RouteDecision, call.route_decision, "ROUTE_DECISION_")
            model += f" -> {call.route_class}: {call.routed_model} ({decided})"
        return (
            f"{when(call.create_time)}\t{call.principal}\t{model}\t{call.deployment or '-'}"
            f"\t{call.status_code}{cached}\t{call.input_tokens}+{call.output_tokens} tokens"
            f"\t{call.latency_ms:.1f} ms\t${call.cost_usd:.6f}"
            + (f"\tuser {call.end_user_id}" if call.end_user_id else "")
            + "".join(f"\t{key}={value}" for key, value in sorted(call.tags.items()))
        )

    with connect(args) as client:
        print_items(first(args.limit, client.orchestrator.ListCalls, request, "calls"), line, args.json, "no calls")
    return 0
