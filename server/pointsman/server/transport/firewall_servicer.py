"""FirewallService: scans, rule CRUD and watch, decision listing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from pointsman.firewall.v1 import firewall_pb2 as pb
from pointsman.firewall.v1 import firewall_pb2_grpc
from pointsman.type.v1 import firewall_pb2 as type_pb

from ..domain.errors import InvalidArgument, ViolationCollector
from ..domain.firewall.engine import FirewallEngine, check_content
from ..domain.firewall.rules import Rule, RuleLimits, check_room_for_rule, check_rule
from ..domain.firewall.verdict import Category, Direction
from ..domain.ports.stores import DecisionFilter, DecisionStore, RuleChange, RuleStore
from ..domain.validation import check_text
from . import convert
from .calls import CallContext
from .resources import decode_offset, decode_record_cursor, encode_token, page_size, resource_id
from .watch import snapshot_then_changes

UPDATABLE_FIELDS = {
    "kind",
    "match_type",
    "pattern",
    "keywords",
    "description",
    "enabled",
    "scope",
    "examples",
    "threshold",
}
# The most bytes of rules one WatchRules snapshot message carries: 10,000
# rules are several messages, never one over the message size limit.
SNAPSHOT_PART_BYTES = 1024 * 1024

# ScanRequest.detectors: the detector category each names, or None for the rules.
SCAN_DETECTORS: dict[int, Category | None] = {
    pb.SCAN_DETECTOR_PII: Category.PII,
    pb.SCAN_DETECTOR_SECRETS: Category.SECRET,
    pb.SCAN_DETECTOR_TOXICITY: Category.TOXICITY,
    pb.SCAN_DETECTOR_RULES: None,
}
# (detector categories to run, None for all; whether the rules run)
ScanChoice = tuple[frozenset[Category] | None, bool]


def scan_choice(detectors: Sequence[int], errors: ViolationCollector, path: str) -> ScanChoice:
    """What a scan runs: everything when `detectors` is empty, else only the named checks."""
    if not detectors:
        return None, True
    categories: set[Category] = set()
    rules = False
    for index, value in enumerate(detectors):
        if value not in SCAN_DETECTORS:
            errors.add(
                f"{path}[{index}]",
                f"unknown detector {value}; one of SCAN_DETECTOR_PII, SCAN_DETECTOR_SECRETS, "
                "SCAN_DETECTOR_TOXICITY, SCAN_DETECTOR_RULES",
            )
            continue
        category = SCAN_DETECTORS[value]
        if category is None:
            rules = True
        else:
            categories.add(category)
    return frozenset(categories), rules


class FirewallServicer(firewall_pb2_grpc.FirewallServiceServicer):
    def __init__(
        self,
        engine: FirewallEngine,
        rules: RuleStore,
        decisions: DecisionStore,
        calls: CallContext,
        max_scan_chars: int,
        limits: RuleLimits | None = None,
        *,
        snapshot_bytes: int = SNAPSHOT_PART_BYTES,
    ) -> None:
        self._engine = engine
        self._limits = limits or RuleLimits()
        self._snapshot_bytes = snapshot_bytes
        self._rules = rules
        self._decisions = decisions
        self._calls = calls
        self._max_scan_chars = max_scan_chars

    def _scan_input(
        self, text: str, direction: type_pb.Direction, detectors: Sequence[int] = (), path: str = ""
    ) -> tuple[Direction, ScanChoice]:
        errors = ViolationCollector()
        choice = scan_choice(detectors, errors, f"{path}detectors")
        if not text:
            errors.add(f"{path}text", "must not be empty")
        elif len(text) > self._max_scan_chars:
            errors.add(f"{path}text", f"must be at most {self._max_scan_chars} characters")
        else:
            check_content(text, errors, f"{path}text")
        found = convert.optional_enum(convert.DIRECTIONS, direction, f"{path}direction", errors)
        errors.raise_if_any()
        return found or Direction.INPUT, choice

    async def Scan(self, request: pb.ScanRequest, context: grpc.aio.ServicerContext) -> pb.ScanResponse:
        direction, (categories, rules) = self._scan_input(request.text, request.direction, request.detectors)
        verdict = await self._engine.scan(
            request.text, direction, self._calls.caller(), categories=categories, rules=rules
        )
        return pb.ScanResponse(verdict=convert.verdict_to_proto(verdict))

    async def ScanStream(
        self, request_iterator: AsyncIterator[pb.ScanStreamRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ScanStreamResponse]:
        caller = self._calls.caller()
        async for request in request_iterator:
            direction, (categories, rules) = self._scan_input(request.text, request.direction, request.detectors)
            verdict = await self._engine.scan(request.text, direction, caller, categories=categories, rules=rules)
            yield pb.ScanStreamResponse(item_id=request.item_id, verdict=convert.verdict_to_proto(verdict))

    def _rule_from_proto(self, rule: pb.Rule, rule_id: str = "") -> Rule:
        errors = ViolationCollector()
        domain_rule = Rule(
            id=rule_id,
            organisation=self._calls.caller().organisation,
            kind=convert.enum_value(convert.RULE_KINDS, rule.kind, "rule.kind", errors),
            match_type=convert.enum_value(convert.MATCH_TYPES, rule.match_type, "rule.match_type", errors),
            pattern=rule.pattern,
            keywords=tuple(rule.keywords),
            description=rule.description,
            enabled=rule.enabled,
            scope=convert.enum_value(convert.RULE_SCOPES, rule.scope, "rule.scope", errors, required=False),
            examples=tuple(rule.examples),
            # A float32 on the wire: 0.45 arrives as 0.44999998.
            threshold=round(rule.threshold, 6),
        )
        if domain_rule.match_type is not None:
            check_rule(domain_rule, errors, max_chars=self._limits.max_rule_chars)
        check_text(rule.pattern, errors, "rule.pattern", multiline=True)
        check_text(rule.description, errors, "rule.description", multiline=True)
        for index, keyword in enumerate(rule.keywords):
            check_text(keyword, errors, f"rule.keywords[{index}]")
        for index, example in enumerate(rule.examples):
            check_text(example, errors, f"rule.examples[{index}]")
        errors.raise_if_any()
        return domain_rule

    async def CreateRule(
        self, request: pb.CreateRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateRuleResponse:
        if not request.HasField("rule"):
            raise InvalidArgument.one("rule", "is required")
        rule = self._rule_from_proto(request.rule)
        # Checked before each create: concurrent creates may pass it together,
        # which overshoots by at most their number.
        check_room_for_rule(len(await self._rules.list_rules(rule.organisation)), self._limits.max_rules)
        created = await self._rules.create_rule(rule)
        return pb.CreateRuleResponse(rule=convert.rule_to_proto(created))

    async def GetRule(self, request: pb.GetRuleRequest, context: grpc.aio.ServicerContext) -> pb.GetRuleResponse:
        rule = await self._rules.get_rule(self._calls.caller().organisation, resource_id(request.name, "rules"))
        return pb.GetRuleResponse(rule=convert.rule_to_proto(rule))

    async def ListRules(self, request: pb.ListRulesRequest, context: grpc.aio.ServicerContext) -> pb.ListRulesResponse:
        size = page_size(request.page_size)
        offset = decode_offset(request.page_token)
        rules = await self._rules.list_rules(self._calls.caller().organisation)
        return pb.ListRulesResponse(
            rules=[convert.rule_to_proto(r) for r in rules[offset : offset + size]],
            next_page_token=encode_token(str(offset + size)) if offset + size < len(rules) else "",
        )

    async def UpdateRule(
        self, request: pb.UpdateRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateRuleResponse:
        paths = list(request.update_mask.paths)
        errors = ViolationCollector()
        if not paths:
            errors.add("update_mask", "name at least one field to change")
        for path in paths:
            if path not in UPDATABLE_FIELDS:
                errors.add("update_mask", f"'{path}' cannot be changed; allowed: {', '.join(sorted(UPDATABLE_FIELDS))}")
        errors.raise_if_any()
        organisation = self._calls.caller().organisation
        current = await self._rules.get_rule(organisation, resource_id(request.rule.name, "rules", "rule.name"))
        merged = convert.rule_to_proto(current)
        for path in paths:
            if path in ("keywords", "examples"):
                field = getattr(merged, path)
                del field[:]
                field.extend(getattr(request.rule, path))
            else:
                setattr(merged, path, getattr(request.rule, path))
        updated = self._rule_from_proto(merged, current.id).with_changes(create_time=current.create_time)
        saved = await self._rules.update_rule(updated)
        return pb.UpdateRuleResponse(rule=convert.rule_to_proto(saved))

    async def DeleteRule(
        self, request: pb.DeleteRuleRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteRuleResponse:
        await self._rules.delete_rule(self._calls.caller().organisation, resource_id(request.name, "rules"))
        return pb.DeleteRuleResponse()

    async def WatchRules(
        self, request: pb.WatchRulesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchRulesResponse]:
        organisation = self._calls.caller().organisation

        async def snapshot() -> list[pb.WatchRulesResponse]:
            rules = [convert.rule_to_proto(r) for r in await self._rules.list_rules(organisation)]
            return [
                pb.WatchRulesResponse(snapshot=pb.RuleSnapshot(rules=part, has_more=more))
                for part, more in snapshot_parts(rules, self._snapshot_bytes)
            ]

        def change(event: RuleChange) -> pb.WatchRulesResponse | None:
            if event.rule.organisation != organisation:
                return None
            return pb.WatchRulesResponse(
                change=pb.RuleChange(
                    change_type=convert.RULE_CHANGES[event.change_type], rule=convert.rule_to_proto(event.rule)
                )
            )

        async for response in snapshot_then_changes(self._rules.changes, snapshot, change):
            yield response

    async def ListDecisions(
        self, request: pb.ListDecisionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDecisionsResponse:
        errors = ViolationCollector()
        where = DecisionFilter(
            action=convert.optional_enum(convert.ACTIONS, request.action, "action", errors),
            direction=convert.optional_enum(convert.DIRECTIONS, request.direction, "direction", errors),
            category=convert.optional_enum(convert.CATEGORIES, request.category, "category", errors),
            start_time=convert.time_field(request, "start_time", errors),
            end_time=convert.time_field(request, "end_time", errors),
        )
        errors.raise_if_any()
        decisions, next_cursor = await self._decisions.list_decisions(
            self._calls.caller().organisation,
            where,
            page_size(request.page_size),
            decode_record_cursor(request.page_token),
        )
        return pb.ListDecisionsResponse(
            decisions=[convert.decision_to_proto(d) for d in decisions],
            next_page_token=encode_token(next_cursor) if next_cursor else "",
        )


def snapshot_parts(rules: list[pb.Rule], budget: int) -> list[tuple[list[pb.Rule], bool]]:
    """The rules in order, cut into parts of at most `budget` bytes each (a
    rule larger than that alone in its part), each with whether more follow.
    No rules is one empty part: the snapshot is always sent."""
    parts: list[list[pb.Rule]] = [[]]
    size = 0
    for rule in rules:
        # The rule's bytes, and a few for its tag and length in the repeated field.
        cost = rule.ByteSize() + 6
        if parts[-1] and size + cost > budget:
            parts.append([])
            size = 0
        parts[-1].append(rule)
        size += cost
    return [(part, index < len(parts) - 1) for index, part in enumerate(parts)]
