"""The firewall: `scan`, `rules ...`, `decisions`."""

from __future__ import annotations

import argparse
from typing import Any

from pointsman.firewall.v1 import firewall_pb2 as pb
from pointsman.type.v1 import firewall_pb2 as types

from .arguments import command, group, read_text
from .connection import connect
from .output import first, label, name, pages, print_items, print_json, when

DETECTORS = {
    "pii": pb.SCAN_DETECTOR_PII,
    "secrets": pb.SCAN_DETECTOR_SECRETS,
    "toxicity": pb.SCAN_DETECTOR_TOXICITY,
    "rules": pb.SCAN_DETECTOR_RULES,
}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = command(sub, "scan", cmd_scan, "scan text with the firewall; '-' reads stdin", [common])
    p.add_argument("text")
    p.add_argument("--direction", choices=["input", "output"], default="input")
    p.add_argument(
        "--detector",
        action="append",
        choices=sorted(DETECTORS),
        help="run only this check (repeatable); default: all of them",
    )

    rules = group(sub, "rules", "firewall rules", "rules_command")
    p = command(rules, "add", cmd_rules, "add a rule", [common])
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--block", action="store_true", help="block matching content")
    kind.add_argument("--allow", action="store_true", help="allow matching content (turns on allowlist mode)")
    match = p.add_mutually_exclusive_group(required=True)
    match.add_argument("--substring", help="case-insensitive substring")
    match.add_argument("--regex", help="regular expression (case-insensitive)")
    match.add_argument("--topic", help="comma-separated keywords, matched as whole words")
    p.add_argument("--description")
    p.add_argument("--scope", choices=["input", "output", "both"], default="input")
    for verb, text in (("list", "list rules"), ("watch", "print the rules, then every change")):
        p = command(rules, verb, cmd_rules, text, [common])
        p.add_argument(
            "--watch-timeout",
            type=float,
            default=None,
            help=argparse.SUPPRESS if verb == "list" else "stop watching after this many seconds",
        )
    for verb, text in (("get", "show a rule"), ("rm", "delete a rule")):
        p = command(rules, verb, cmd_rules, text, [common])
        p.add_argument("name", help="rules/{id} or {id}")

    p = command(sub, "decisions", cmd_decisions, "the firewall's decisions, newest first", [common])
    p.add_argument("--action", choices=["allow", "log", "redact", "block"])
    p.add_argument("--direction", choices=["input", "output"])
    p.add_argument("--category", choices=["pii", "secret", "toxicity", "block_rule", "not_allowed"])
    p.add_argument("--limit", type=int, default=50, help="at most this many (default %(default)s)")


def cmd_scan(args: argparse.Namespace) -> int:
    text = read_text(args.text)
    direction = types.DIRECTION_OUTPUT if args.direction == "output" else types.DIRECTION_INPUT
    with connect(args) as client:
        detectors = [DETECTORS[d] for d in args.detector or ()]
        response = client.firewall.Scan(pb.ScanRequest(text=text, direction=direction, detectors=detectors))
    if args.json:
        print_json(response)
        return 0
    verdict = response.verdict
    print(label(types.Action, verdict.action, "ACTION_"))
    for finding in verdict.findings:
        category = label(types.Category, finding.category, "CATEGORY_")
        print(f"  {category} {finding.type or finding.rule} [{finding.start}:{finding.end}]")
    return 0


def rule_line(rule: Any) -> str:
    kind = label(pb.RuleKind, rule.kind, "RULE_KIND_")
    match = label(pb.MatchType, rule.match_type, "MATCH_TYPE_")
    what = ", ".join(rule.keywords) if rule.keywords else rule.pattern
    state = "" if rule.enabled else "  (disabled)"
    return f"{rule.name}\t{kind}\t{match}\t{what}{state}"


def _new_rule(args: argparse.Namespace) -> pb.Rule:
    rule = pb.Rule(
        kind=pb.RULE_KIND_ALLOW if args.allow else pb.RULE_KIND_BLOCK,
        description=args.description or "",
        enabled=True,
        scope={"input": pb.RULE_SCOPE_INPUT, "output": pb.RULE_SCOPE_OUTPUT, "both": pb.RULE_SCOPE_BOTH}[args.scope],
    )
    if args.regex is not None:
        rule.match_type, rule.pattern = pb.MATCH_TYPE_REGEX, args.regex
    elif args.topic is not None:
        rule.match_type = pb.MATCH_TYPE_TOPIC
        rule.keywords.extend(k.strip() for k in args.topic.split(",") if k.strip())
    else:
        rule.match_type, rule.pattern = pb.MATCH_TYPE_SUBSTRING, args.substring
    return rule


def cmd_rules(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.rules_command == "add":
            created = client.firewall.CreateRule(pb.CreateRuleRequest(rule=_new_rule(args))).rule
            print_json(created) if args.json else print(created.name)
        elif args.rules_command == "list":
            rules = pages(lambda token: client.firewall.ListRules(pb.ListRulesRequest(page_token=token)), "rules")
            print_items(rules, rule_line, args.json, "no rules")
        elif args.rules_command == "get":
            rule = client.firewall.GetRule(pb.GetRuleRequest(name=name(args.name, "rules"))).rule
            print_json(rule) if args.json else print(rule_line(rule))
        elif args.rules_command == "rm":
            client.firewall.DeleteRule(pb.DeleteRuleRequest(name=name(args.name, "rules")))
            if not args.json:
                print(f"deleted {name(args.name, 'rules')}")
        elif args.rules_command == "watch":
            for event in client.firewall.WatchRules(pb.WatchRulesRequest(), timeout=args.watch_timeout):
                if args.json:
                    print_json(event)
                elif event.HasField("snapshot"):
                    more = " (a large snapshot: more parts follow)" if event.snapshot.has_more else ""
                    print(f"snapshot: {len(event.snapshot.rules)} rules{more}", flush=True)
                    for rule in event.snapshot.rules:
                        print(f"  {rule_line(rule)}", flush=True)
                else:
                    change = label(pb.ChangeType, event.change.change_type, "CHANGE_TYPE_")
                    print(f"{change}: {rule_line(event.change.rule)}", flush=True)
    return 0


def cmd_decisions(args: argparse.Namespace) -> int:
    # Enum filters by their proto names (ACTION_BLOCK, ...), set only when given.
    filters: dict[str, Any] = {
        field: f"{field.upper()}_{value.upper()}"
        for field, value in (("action", args.action), ("direction", args.direction), ("category", args.category))
        if value
    }
    request = pb.ListDecisionsRequest(page_size=min(args.limit, 1000), **filters)

    def line(decision: Any) -> str:
        action = label(types.Action, decision.action, "ACTION_")
        direction = label(types.Direction, decision.direction, "DIRECTION_")
        found = ", ".join(
            f"{label(types.Category, f.category, 'CATEGORY_')}:{f.type or f.rule}" for f in decision.findings
        )
        return f"{when(decision.create_time)}\t{direction}\t{action}\t{decision.request_id}\t{found}"

    with connect(args) as client:
        decisions = first(args.limit, client.firewall.ListDecisions, request, "decisions")
        print_items(decisions, line, args.json, "no decisions")
    return 0
