"""The `pointsman` command: runs the server, and talks to one through the
Python client. Exit status: 0 on success, the gRPC status code number on an
RPC error (5 NOT_FOUND, 14 UNAVAILABLE, ...), 1 when `health` is not SERVING."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from ..client import Client, PointsmanError, tls_credentials
from ..client.options import DEFAULT_ADDRESS
from . import agents


def _print_json(message: Any) -> None:
    print(json_format.MessageToJson(message, indent=None), flush=True)


def _print_error(error: PointsmanError) -> int:
    print(f"error: {error}", file=sys.stderr)
    for violation in error.field_violations:
        print(f"  {violation.field}: {violation.description}", file=sys.stderr)
    if error.request_id:
        print(f"  request id: {error.request_id}", file=sys.stderr)
    return int(error.code.value[0])


def _client(args: argparse.Namespace) -> Client:
    tls: bool | Any = False
    if args.tls or args.ca_file or args.client_cert:
        try:
            tls = tls_credentials(args.ca_file, args.client_cert, args.client_key)
        except (OSError, ValueError) as error:
            print(f"pointsman: TLS: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    return Client(
        args.address,
        api_key=args.api_key,
        token=args.token,
        timeout=args.timeout,
        tls=tls,
        tls_server_name=args.tls_server_name or None,
    )


def _auth_service(client: Client, args: argparse.Namespace) -> Any:
    from pointsman.auth.v1 import auth_pb2

    from ..client.options import CallDefaults
    from ..client.sync import Service

    defaults = CallDefaults(args.timeout, args.timeout, args.api_key, args.token)
    return Service(client.channel, auth_pb2.DESCRIPTOR.services_by_name["AuthService"], defaults)


# -- commands -----------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from pydantic import ValidationError

    from pointsman.server.app.agents_config import AgentsFileError
    from pointsman.server.app.routes import RoutesFileError
    from pointsman.server.app.server import serve
    from pointsman.server.app.tls import TlsConfigError
    from pointsman.server.auth import WeakSecret
    from pointsman.server.logs import configure_logging
    from pointsman.server.settings import Settings, describe_invalid

    overrides = {"POINTSMAN_ADDRESS": args.address} if args.address_given else {}
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        print(f"pointsman: invalid settings: {describe_invalid(error)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.processes > 1:
        from pointsman.server.app.processes import serve_processes

        try:
            return serve_processes(settings)
        except ValueError as error:
            print(f"pointsman: {error}", file=sys.stderr)
            return 2
    try:
        asyncio.run(serve(settings))
    except (RoutesFileError, AgentsFileError, WeakSecret, TlsConfigError, OSError) as error:  # OSError: port taken
        print(f"pointsman: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from pointsman.server.app.worker import main as worker_main

    return worker_main()


def cmd_token_create(args: argparse.Namespace) -> int:
    """Signs a token locally with JWT_SECRET: whoever holds the secret can
    speak for anyone, as an admin if they like."""
    import hashlib

    from pydantic import ValidationError

    from pointsman.server.auth import WeakSecret, issue_token
    from pointsman.server.domain.ports.stores import UserRole
    from pointsman.server.settings import Settings, describe_invalid

    try:
        settings = Settings()  # type: ignore[call-arg]  # every field comes from the environment
    except ValidationError as error:
        print(f"pointsman: invalid settings: {describe_invalid(error)}", file=sys.stderr)
        return 2
    if settings.jwt_secret is None:
        print("pointsman: JWT_SECRET is not set", file=sys.stderr)
        return 2
    if args.ttl is not None and args.ttl < 1:
        print("pointsman: --ttl must be at least 1 second", file=sys.stderr)
        return 2
    organisation = args.org or settings.org_id
    email = args.email.strip().lower()
    # The same email in the same organisation always gets the same user id.
    user_id = args.user_id or hashlib.sha256(f"{organisation}\0{email}".encode()).hexdigest()[:16]
    try:
        token, _ = issue_token(
            settings.jwt_secret.get_secret_value(),
            subject=user_id,
            organisation=organisation,
            role=UserRole(args.role),
            email=email,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=args.ttl or settings.jwt_ttl_seconds,
        )
    except WeakSecret as error:
        print(f"pointsman: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from pointsman.auth.v1 import auth_pb2 as pb

    revoked = (sys.stdin.read() if args.revoked == "-" else args.revoked).strip()
    with _client(args) as client:
        response = _auth_service(client, args).RevokeToken(pb.RevokeTokenRequest(token=revoked))
    if args.json:
        _print_json(response)
    else:
        until = response.expire_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        print(f"revoked a token of {response.principal.name}; refused until it expires at {until}Z")
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    from pointsman.auth.v1 import auth_pb2 as pb

    with _client(args) as client:
        response = _auth_service(client, args).Login(pb.LoginRequest(email=args.email))
    _print_json(response) if args.json else print(response.access_token)
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    from pointsman.auth.v1 import auth_pb2 as pb

    with _client(args) as client:
        principal = _auth_service(client, args).WhoAmI(pb.WhoAmIRequest()).principal
    if args.json:
        _print_json(principal)
    else:
        role = pb.Role.Name(principal.role).removeprefix("ROLE_").lower()
        print(f"{principal.name}\t{principal.organisation}\t{role}\t{principal.email}")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from pointsman.orchestrator.v1 import orchestrator_pb2 as pb
    from pointsman.type.v1 import chat_pb2

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    messages = []
    if args.system:
        messages.append(chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content=args.system))
    messages.append(chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=prompt))
    config = chat_pb2.GenerationConfig()
    if args.max_tokens is not None:
        config.max_tokens = args.max_tokens
    if args.temperature is not None:
        config.temperature = args.temperature
    request = pb.ChatRequest(model=args.model, messages=messages, config=config)
    with _client(args) as client:
        wrote_text = False
        for event in client.orchestrator.Chat(request):
            if args.json:
                _print_json(event)
            elif event.HasField("text_delta"):
                sys.stdout.write(event.text_delta.text)
                sys.stdout.flush()
                wrote_text = True
            elif event.HasField("finish") and event.finish.reason != pb.FINISH_REASON_STOP:
                reason = pb.FinishReason.Name(event.finish.reason).removeprefix("FINISH_REASON_").lower()
                print(f"\n[finished: {reason}]", file=sys.stderr)
        if wrote_text:
            print()
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

    with _client(args) as client:
        for model in _pages(
            lambda token: client.orchestrator.ListModels(pb.ListModelsRequest(page_token=token)), "models"
        ):
            if args.json:
                _print_json(model)
            else:
                strategy = pb.RoutingStrategy.Name(model.strategy).removeprefix("ROUTING_STRATEGY_").lower()
                where = ", ".join(
                    f"{d.name} ({pb.CircuitState.Name(d.state.circuit).removeprefix('CIRCUIT_STATE_').lower()})"
                    for d in model.deployments
                )
                label = "  [built-in deterministic model]" if model.builtin else ""
                down = "  [unavailable: every circuit open]" if not model.available else ""
                print(f"{model.alias}\t{strategy}\t{where}{label}{down}")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from pointsman.firewall.v1 import firewall_pb2 as pb
    from pointsman.type.v1 import firewall_pb2 as types

    text = sys.stdin.read() if args.text == "-" else args.text
    direction = types.DIRECTION_OUTPUT if args.direction == "output" else types.DIRECTION_INPUT
    with _client(args) as client:
        response = client.firewall.Scan(pb.ScanRequest(text=text, direction=direction))
    if args.json:
        _print_json(response)
    else:
        verdict = response.verdict
        print(types.Action.Name(verdict.action).removeprefix("ACTION_").lower())
        for finding in verdict.findings:
            category = types.Category.Name(finding.category).removeprefix("CATEGORY_").lower()
            print(f"  {category} {finding.type or finding.rule} [{finding.start}:{finding.end}]")
    return 0


def _rule_line(rule: Any) -> str:
    from pointsman.firewall.v1 import firewall_pb2 as pb

    kind = pb.RuleKind.Name(rule.kind).removeprefix("RULE_KIND_").lower()
    match = pb.MatchType.Name(rule.match_type).removeprefix("MATCH_TYPE_").lower()
    what = ", ".join(rule.keywords) if rule.keywords else rule.pattern
    state = "" if rule.enabled else "  (disabled)"
    return f"{rule.name}\t{kind}\t{match}\t{what}{state}"


def cmd_rules(args: argparse.Namespace) -> int:
    from pointsman.firewall.v1 import firewall_pb2 as pb

    with _client(args) as client:
        if args.rules_command == "add":
            rule = pb.Rule(
                kind=pb.RULE_KIND_ALLOW if args.allow else pb.RULE_KIND_BLOCK,
                description=args.description or "",
                enabled=True,
                scope={"input": pb.RULE_SCOPE_INPUT, "output": pb.RULE_SCOPE_OUTPUT, "both": pb.RULE_SCOPE_BOTH}[
                    args.scope
                ],
            )
            if args.regex is not None:
                rule.match_type, rule.pattern = pb.MATCH_TYPE_REGEX, args.regex
            elif args.topic is not None:
                rule.match_type = pb.MATCH_TYPE_TOPIC
                rule.keywords.extend(k.strip() for k in args.topic.split(",") if k.strip())
            else:
                rule.match_type, rule.pattern = pb.MATCH_TYPE_SUBSTRING, args.substring
            created = client.firewall.CreateRule(pb.CreateRuleRequest(rule=rule)).rule
            _print_json(created) if args.json else print(created.name)
        elif args.rules_command == "list":
            for rule in _pages(lambda token: client.firewall.ListRules(pb.ListRulesRequest(page_token=token)), "rules"):
                _print_json(rule) if args.json else print(_rule_line(rule))
        elif args.rules_command == "get":
            rule = client.firewall.GetRule(pb.GetRuleRequest(name=_name(args.name, "rules"))).rule
            _print_json(rule) if args.json else print(_rule_line(rule))
        elif args.rules_command == "rm":
            client.firewall.DeleteRule(pb.DeleteRuleRequest(name=_name(args.name, "rules")))
            if not args.json:
                print(f"deleted {_name(args.name, 'rules')}")
        elif args.rules_command == "watch":
            for event in client.firewall.WatchRules(pb.WatchRulesRequest(), timeout=args.watch_timeout):
                if args.json:
                    _print_json(event)
                elif event.HasField("snapshot"):
                    print(f"snapshot: {len(event.snapshot.rules)} rules", flush=True)
                    for rule in event.snapshot.rules:
                        print(f"  {_rule_line(rule)}", flush=True)
                else:
                    change = pb.ChangeType.Name(event.change.change_type).removeprefix("CHANGE_TYPE_").lower()
                    print(f"{change}: {_rule_line(event.change.rule)}", flush=True)
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from pointsman.registry.v1 import registry_pb2 as pb

    def line(instance: Any) -> str:
        expires = instance.lease_expire_time.ToDatetime().strftime("%H:%M:%S")
        return f"{instance.name}\t{instance.address}\t{instance.version}\tlease until {expires}Z"

    with _client(args) as client:
        if args.registry_command == "ls":
            pages = _pages(
                lambda token: client.registry.ListInstances(pb.ListInstancesRequest(page_token=token)), "instances"
            )
            for instance in pages:
                _print_json(instance) if args.json else print(line(instance))
        else:
            for event in client.registry.WatchInstances(pb.WatchInstancesRequest(), timeout=args.watch_timeout):
                if args.json:
                    _print_json(event)
                elif event.HasField("snapshot"):
                    print(f"snapshot: {len(event.snapshot.instances)} instances", flush=True)
                    for instance in event.snapshot.instances:
                        print(f"  {line(instance)}", flush=True)
                else:
                    change = pb.InstanceChangeType.Name(event.change.change_type)
                    print(
                        f"{change.removeprefix('INSTANCE_CHANGE_TYPE_').lower()}: {line(event.change.instance)}",
                        flush=True,
                    )
    return 0


class _BadBatchFile(ValueError):
    pass


def _batch_items(text: str) -> list[Any]:
    """BatchItems from JSON Lines: one object per line in the protobuf JSON
    mapping (`custom_id`, `model`, `messages`, `config`); a message's role may
    also be written plainly ("user", "system", "assistant", "tool")."""
    from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            for message in data.get("messages") or []:
                role = message.get("role") if isinstance(message, dict) else None
                if isinstance(role, str) and not role.upper().startswith("ROLE_"):
                    message["role"] = "ROLE_" + role.upper()
            items.append(json_format.ParseDict(data, pb.BatchItem()))
        except (ValueError, json_format.ParseError) as error:
            raise _BadBatchFile(f"line {number}: {error}") from None
    if not items:
        raise _BadBatchFile("no items")
    return items


def _batch_line(batch: Any) -> str:
    from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

    state = pb.BatchState.Name(batch.state).removeprefix("BATCH_STATE_").lower()
    return (
        f"{batch.name}\t{state}\t{batch.succeeded_items} succeeded, {batch.failed_items} failed, "
        f"{batch.cancelled_items} cancelled, of {batch.total_items}"
    )


def _result_line(result: Any) -> str:
    from grpc import StatusCode

    if result.HasField("error"):
        code = next((c.name for c in StatusCode if c.value[0] == result.error.code), str(result.error.code))
        return f"{result.custom_id}\terror {code} {result.error.reason}: {result.error.message}"
    return f"{result.custom_id}\tok\t{result.response.message.content!r}"


def cmd_batch(args: argparse.Namespace) -> int:
    from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

    with _client(args) as client:
        if args.batch_command == "submit":
            try:
                items = _batch_items(sys.stdin.read() if args.file == "-" else Path(args.file).read_text())
            except (OSError, _BadBatchFile) as error:
                print(f"pointsman: {args.file}: {error}", file=sys.stderr)
                return 2
            request = pb.CreateBatchRequest(items=items, max_concurrency=args.max_concurrency)
            batch = client.orchestrator.CreateBatch(request).batch
            _print_json(batch) if args.json else print(batch.name)
            return 0
        if args.batch_command == "ls":
            pages = _pages(
                lambda token: client.orchestrator.ListBatches(pb.ListBatchesRequest(page_token=token)), "batches"
            )
            for batch in pages:
                _print_json(batch) if args.json else print(_batch_line(batch))
            return 0
        name = _name(args.name, "batches")
        if args.batch_command == "watch":
            for event in client.orchestrator.WatchBatch(pb.WatchBatchRequest(name=name), timeout=args.watch_timeout):
                if args.json:
                    _print_json(event)
                elif event.HasField("result"):
                    print(_result_line(event.result), flush=True)
                else:
                    print(_batch_line(event.done), flush=True)
            return 0
        if args.batch_command == "cancel":
            batch = client.orchestrator.CancelBatch(pb.CancelBatchRequest(name=name)).batch
        else:
            batch = client.orchestrator.GetBatch(pb.GetBatchRequest(name=name)).batch
        _print_json(batch) if args.json else print(_batch_line(batch))
    return 0


def _when(stamp: Any) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ") if stamp.seconds or stamp.nanos else "-"


def cmd_keys(args: argparse.Namespace) -> int:
    from google.protobuf.timestamp_pb2 import Timestamp

    from pointsman.auth.v1 import auth_pb2 as pb

    def line(key: Any) -> str:
        state = f"revoked {_when(key.revoke_time)}" if key.HasField("revoke_time") else "active"
        expires = f"expires {_when(key.expire_time)}" if key.HasField("expire_time") else "no expiry"
        return f"{key.name}\t{key.user}\t{key.prefix}\t{key.display_name}\t{state}\t{expires}"

    with _client(args) as client:
        auth = _auth_service(client, args)
        if args.keys_command == "create":
            request = pb.CreateApiKeyRequest(display_name=args.display_name or "")
            if args.user:
                request.user = _name(args.user, "users")
            if args.expires_in is not None:
                expire = Timestamp()
                expire.FromSeconds(int(time.time()) + args.expires_in)
                request.expire_time.CopyFrom(expire)
            created = auth.CreateApiKey(request)
            if args.json:
                _print_json(created)
            else:  # the key goes to stdout alone, so it can be captured; the rest to stderr
                print(created.key)
                print(f"{created.api_key.name}: shown once, never stored; keep it secret", file=sys.stderr)
        elif args.keys_command == "ls":
            request = pb.ListApiKeysRequest(user=_name(args.user, "users") if args.user else "")
            for key in auth.ListApiKeys(request).api_keys:
                _print_json(key) if args.json else print(line(key))
        else:
            revoked = auth.RevokeApiKey(pb.RevokeApiKeyRequest(name=_name(args.name, "apiKeys"))).api_key
            _print_json(revoked) if args.json else print(line(revoked))
    return 0


def cmd_decisions(args: argparse.Namespace) -> int:
    from pointsman.firewall.v1 import firewall_pb2 as pb
    from pointsman.type.v1 import firewall_pb2 as types

    request = pb.ListDecisionsRequest(page_size=min(args.limit, 1000))
    if args.action:
        request.action = types.Action.Value(f"ACTION_{args.action.upper()}")
    if args.direction:
        request.direction = types.Direction.Value(f"DIRECTION_{args.direction.upper()}")
    if args.category:
        request.category = types.Category.Value(f"CATEGORY_{args.category.upper()}")
    with _client(args) as client:
        for decision in _first(args.limit, client.firewall.ListDecisions, request, "decisions"):
            if args.json:
                _print_json(decision)
                continue
            action = types.Action.Name(decision.action).removeprefix("ACTION_").lower()
            direction = types.Direction.Name(decision.direction).removeprefix("DIRECTION_").lower()
            found = ", ".join(
                f"{types.Category.Name(f.category).removeprefix('CATEGORY_').lower()}:{f.type or f.rule}"
                for f in decision.findings
            )
            print(f"{_when(decision.create_time)}\t{direction}\t{action}\t{decision.request_id}\t{found}")
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

    request = pb.ListCallsRequest(
        page_size=min(args.limit, 1000),
        model=args.model or "",
        principal=_name(args.principal, "users") if args.principal else "",
        status_code=(args.status or "").upper(),
    )
    with _client(args) as client:
        for call in _first(args.limit, client.orchestrator.ListCalls, request, "calls"):
            if args.json:
                _print_json(call)
                continue
            cached = " (cached)" if call.cache_hit else ""
            print(
                f"{_when(call.create_time)}\t{call.principal}\t{call.model}\t{call.deployment or '-'}"
                f"\t{call.status_code}{cached}\t{call.input_tokens}+{call.output_tokens} tokens"
                f"\t{call.latency_ms:.1f} ms\t${call.cost_usd:.6f}"
            )
    return 0


def cmd_conversation(args: argparse.Namespace) -> int:
    from pointsman.orchestrator.v1 import orchestrator_pb2 as pb
    from pointsman.type.v1 import chat_pb2

    name = _name(args.name, "conversations")
    with _client(args) as client:
        if args.conversation_command == "rm":
            client.orchestrator.DeleteConversation(pb.DeleteConversationRequest(name=name))
            if not args.json:
                print(f"deleted {name}")
            return 0
        conversation = client.orchestrator.GetConversation(pb.GetConversationRequest(name=name))
    if args.json:
        _print_json(conversation)
        return 0
    for message in conversation.messages:
        role = chat_pb2.Role.Name(message.role).removeprefix("ROLE_").lower()
        print(f"{role}: {message.content}")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from grpc_health.v1 import health_pb2

    with _client(args) as client:
        status = client.health(args.service)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    if args.json:
        print(f'{{"status": "{name}"}}')
    else:
        print(name)
    return 0 if status == health_pb2.HealthCheckResponse.SERVING else 1


def cmd_stats(args: argparse.Namespace) -> int:
    from google.protobuf.duration_pb2 import Duration

    from pointsman.orchestrator.v1 import orchestrator_pb2 as pb
    from pointsman.type.v1 import firewall_pb2 as types

    window = Duration()
    window.FromNanoseconds(int(args.window * 1e9))
    with _client(args) as client:
        stats = client.orchestrator.GetStats(pb.GetStatsRequest(window=window))
    if args.json:
        _print_json(stats)
        return 0
    print(f"{stats.start_time.ToJsonString()} to {stats.end_time.ToJsonString()}")
    print(f"requests\t{stats.requests}\tfailed {stats.failed_requests}")
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
        category = types.Category.Name(f.category).removeprefix("CATEGORY_").lower()
        print(f"firewall {category}\tblocked {f.blocked}\tredacted {f.redacted}\tlogged {f.logged}")
    return 0


# -- plumbing -----------------------------------------------------------------


def _name(value: str, collection: str) -> str:
    return value if value.startswith(collection + "/") else f"{collection}/{value}"


def _pages(fetch: Any, field: str) -> Iterator[Any]:
    token = ""
    while True:
        response = fetch(token)
        yield from getattr(response, field)
        token = response.next_page_token
        if not token:
            return


def _first(limit: int, rpc: Any, request: Any, field: str) -> Iterator[Any]:
    """At most `limit` items of a paged list RPC, fetching pages only as needed."""

    def fetch(token: str) -> Any:
        request.page_token = token
        return rpc(request)

    return itertools.islice(_pages(fetch, field), limit)


class _AddressAction(argparse.Action):
    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        namespace.address = values
        namespace.address_given = True


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pointsman")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--address",
        action=_AddressAction,
        default=os.environ.get("POINTSMAN_ADDRESS", DEFAULT_ADDRESS),
        help="server host:port (env POINTSMAN_ADDRESS; default %(default)s)",
    )
    common.add_argument(
        "--json", action="store_true", help="print responses in the protobuf JSON mapping, one per line"
    )
    common.add_argument("--timeout", type=float, default=30.0, help="deadline of each call in seconds")
    common.add_argument(
        "--api-key", default=os.environ.get("POINTSMAN_API_KEY"), help="API key (env POINTSMAN_API_KEY)"
    )
    common.add_argument(
        "--token", default=os.environ.get("POINTSMAN_TOKEN"), help="bearer token, a JWT (env POINTSMAN_TOKEN)"
    )
    common.add_argument(
        "--tls",
        action="store_true",
        default=os.environ.get("POINTSMAN_TLS", "").lower() in ("1", "true", "yes"),
        help="connect over TLS, trusting the system's roots (env POINTSMAN_TLS=true)",
    )
    for flag, env, text in (
        ("--ca-file", "POINTSMAN_CA_FILE", "connect over TLS, trusting this CA certificate, PEM"),
        ("--tls-server-name", "POINTSMAN_TLS_SERVER_NAME", "check the server's certificate against this name"),
        ("--client-cert", "POINTSMAN_CLIENT_CERT_FILE", "client certificate, PEM, for a server that requires one"),
        ("--client-key", "POINTSMAN_CLIENT_KEY_FILE", "the client certificate's private key, PEM"),
    ):
        common.add_argument(flag, default=os.environ.get(env), help=f"{text} (env {env})")

    parser = argparse.ArgumentParser(prog="pointsman", description="Pointsman LLM gateway")
    parser.add_argument("--version", action="version", version=f"pointsman {_version()}")
    parser.set_defaults(address_given=False)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", parents=[common], help="run the server (configured from the environment)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run batch items from Redis (configured like serve; needs REDIS_URL)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("chat", parents=[common], help="stream an answer; '-' reads the prompt from stdin")
    p.add_argument("prompt")
    p.add_argument(
        "-m", "--model", default=os.environ.get("POINTSMAN_MODEL", "builtin"), help="model alias (env POINTSMAN_MODEL)"
    )
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("models", parents=[common], help="list model aliases")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("scan", parents=[common], help="scan text with the firewall; '-' reads stdin")
    p.add_argument("text")
    p.add_argument("--direction", choices=["input", "output"], default="input")
    p.set_defaults(func=cmd_scan)

    rules = sub.add_parser("rules", help="firewall rules").add_subparsers(dest="rules_command", required=True)
    p = rules.add_parser("add", parents=[common], help="add a rule")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--block", action="store_true", help="block matching content")
    kind.add_argument("--allow", action="store_true", help="allow matching content (turns on allowlist mode)")
    match = p.add_mutually_exclusive_group(required=True)
    match.add_argument("--substring", help="case-insensitive substring")
    match.add_argument("--regex", help="regular expression (case-insensitive)")
    match.add_argument("--topic", help="comma-separated keywords, matched as whole words")
    p.add_argument("--description")
    p.add_argument("--scope", choices=["input", "output", "both"], default="input")
    p.set_defaults(func=cmd_rules)
    for verb, text in (("list", "list rules"), ("watch", "print the rules, then every change")):
        p = rules.add_parser(verb, parents=[common], help=text)
        p.add_argument(
            "--watch-timeout",
            type=float,
            default=None,
            help=argparse.SUPPRESS if verb == "list" else "stop watching after this many seconds",
        )
        p.set_defaults(func=cmd_rules)
    for verb, text in (("get", "show a rule"), ("rm", "delete a rule")):
        p = rules.add_parser(verb, parents=[common], help=text)
        p.add_argument("name", help="rules/{id} or {id}")
        p.set_defaults(func=cmd_rules)

    registry = sub.add_parser("registry", help="orchestrator instances").add_subparsers(
        dest="registry_command", required=True
    )
    for verb, text in (("ls", "list live instances"), ("watch", "print instances, then every change")):
        p = registry.add_parser(verb, parents=[common], help=text)
        p.add_argument(
            "--watch-timeout",
            type=float,
            default=None,
            help=argparse.SUPPRESS if verb == "ls" else "stop watching after this many seconds",
        )
        p.set_defaults(func=cmd_registry)

    batch = sub.add_parser("batch", help="batch jobs").add_subparsers(dest="batch_command", required=True)
    p = batch.add_parser(
        "submit", parents=[common], help="submit a JSON Lines file of items ('-' reads stdin); prints the name"
    )
    p.add_argument("file", help='one item per line: {"custom_id", "model", "messages": [{"role", "content"}]}')
    p.add_argument("--max-concurrency", type=int, default=0, help="items at once, 1 to 64 (default 4)")
    p.set_defaults(func=cmd_batch)
    p = batch.add_parser("ls", parents=[common], help="list batches, newest first")
    p.set_defaults(func=cmd_batch)
    for verb, text in (
        ("get", "show a batch's progress"),
        ("watch", "print each result as it completes, then the final state"),
        ("cancel", "cancel: items not yet started never run"),
    ):
        p = batch.add_parser(verb, parents=[common], help=text)
        p.add_argument("name", help="batches/{id} or {id}")
        if verb == "watch":
            p.add_argument("--watch-timeout", type=float, default=None, help="stop watching after this many seconds")
        p.set_defaults(func=cmd_batch)

    token = sub.add_parser("token", help="bearer tokens").add_subparsers(dest="token_command", required=True)
    p = token.add_parser("create", help="sign a token locally with JWT_SECRET (env) and print it")
    p.add_argument("--email", required=True)
    p.add_argument("--org", help="organisation (default: ORG_ID, else 'default')")
    p.add_argument("--role", choices=["admin", "developer", "viewer"], default="developer")
    p.add_argument("--ttl", type=int, help="lifetime in seconds (default: JWT_TTL_SECONDS, else 3600)")
    p.add_argument("--user-id", help="the token's user id (default: derived from organisation and email)")
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser(
        "revoke", parents=[common], help="refuse a token until it expires: your own, or as an admin any of your org's"
    )
    p.add_argument("revoked", metavar="TOKEN", help="the token; '-' reads it from stdin (keeps it out of ps)")
    p.set_defaults(func=cmd_token_revoke)

    keys = sub.add_parser("keys", help="API keys (admins)").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("create", parents=[common], help="create an API key and print it (shown once)")
    p.add_argument("--user", help="users/{id} the key acts as (default: yourself)")
    p.add_argument("--display-name", help="a label for people")
    p.add_argument("--expires-in", type=int, help="seconds until the key stops working (default: never)")
    p.set_defaults(func=cmd_keys)
    p = keys.add_parser("ls", parents=[common], help="list the organisation's keys, newest first")
    p.add_argument("--user", help="only this user's keys")
    p.set_defaults(func=cmd_keys)
    p = keys.add_parser("revoke", parents=[common], help="revoke a key at once, on every replica")
    p.add_argument("name", help="apiKeys/{id} or {id}")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("decisions", parents=[common], help="the firewall's decisions, newest first")
    p.add_argument("--action", choices=["allow", "log", "redact", "block"])
    p.add_argument("--direction", choices=["input", "output"])
    p.add_argument("--category", choices=["pii", "secret", "toxicity", "block_rule", "not_allowed"])
    p.add_argument("--limit", type=int, default=50, help="at most this many (default %(default)s)")
    p.set_defaults(func=cmd_decisions)

    p = sub.add_parser("calls", parents=[common], help="the request log (admins): chat calls, newest first")
    p.add_argument("--model", help="only this model alias")
    p.add_argument("--principal", help="only this principal (users/{id} or {id})")
    p.add_argument("--status", help="only calls that ended so: OK, UNAVAILABLE, PERMISSION_DENIED, ...")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default %(default)s)")
    p.set_defaults(func=cmd_calls)

    conversation = sub.add_parser("conversation", help="Converse histories").add_subparsers(
        dest="conversation_command", required=True
    )
    for verb, text in (("show", "print a conversation's history"), ("rm", "forget a conversation")):
        p = conversation.add_parser(verb, parents=[common], help=text)
        p.add_argument("name", help="conversations/{id} or {id}")
        p.set_defaults(func=cmd_conversation)

    p = sub.add_parser("login", parents=[common], help="development mode: get a token for a seeded user")
    p.add_argument("--email", required=True, help="e.g. admin@pointsman.dev, developer@..., viewer@...")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("whoami", parents=[common], help="the principal the credential names")
    p.set_defaults(func=cmd_whoami)

    p = sub.add_parser("stats", parents=[common], help="traffic, cache, latency and firewall figures")
    p.add_argument("--window", type=float, default=3600.0, help="seconds back from now (default %(default)s)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("health", parents=[common], help="exit 0 only if the server reports SERVING")
    p.add_argument("--service", default="", help="service name; empty means the whole server")
    p.set_defaults(func=cmd_health)
    agents.add_parser(sub, common)
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    try:
        code: int = args.func(args)
    except PointsmanError as error:
        if error.code.name == "DEADLINE_EXCEEDED" and getattr(args, "watch_timeout", None):
            return 0  # a watch that ran for the time asked for ended normally
        return _print_error(error)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
