"""The firewall engine: scans text against the organisation's rules, decides,
and records every decision."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from ...backends.decision_log import DecisionLog
from ...backends.rule_store import RuleStore
from ..caller import Caller
from ..chat import Message
from ..errors import ContentBlocked
from .rules import RuleSet
from .verdict import ALLOWED, Action, Decision, Direction, Verdict

# Above this size, rule matching leaves the event loop thread: a regex over a
# large text can take milliseconds and would stall every other stream.
_OFFLOAD_CHARS = 32_768


class FirewallEngine:
    def __init__(
        self,
        rules: RuleStore,
        decisions: DecisionLog,
        *,
        enabled: bool = True,
        block_on_violation: bool = True,
    ) -> None:
        self._rules = rules
        self._decisions = decisions
        self.enabled = enabled
        self._violation_action = Action.BLOCK if block_on_violation else Action.LOG
        self._compiled: dict[str, tuple[int, RuleSet]] = {}

    async def scan(self, text: str, direction: Direction, caller: Caller) -> Verdict:
        """Decides on one text and records the decision."""
        if not self.enabled:
            return ALLOWED
        ruleset = await self._ruleset(caller.organisation)
        if not ruleset:
            findings = []
        elif len(text) > _OFFLOAD_CHARS:
            findings = await asyncio.to_thread(ruleset.evaluate, text, direction)
        else:
            findings = ruleset.evaluate(text, direction)
        action = self._violation_action if findings else Action.ALLOW
        decision = Decision(
            id=self._decisions.new_id(),
            create_time=datetime.now(UTC),
            organisation=caller.organisation,
            principal=caller.principal,
            direction=direction,
            action=action,
            findings=tuple(findings),
            content_sha256=hashlib.sha256(text.encode()).hexdigest(),
            request_id=caller.request_id,
        )
        await self._decisions.record(decision)
        return Verdict(action, tuple(findings), decision=decision.name)

    async def guard_prompt(self, messages: Sequence[Message], caller: Caller) -> Verdict:
        """Scans a chat prompt; raises ContentBlocked when it must not reach a model."""
        text = "\n".join(m.content for m in messages if m.content)
        verdict = await self.scan(text, Direction.INPUT, caller)
        if verdict.action is Action.BLOCK:
            raise blocked_error(verdict)
        return verdict

    async def _ruleset(self, organisation: str) -> RuleSet:
        version = self._rules.version(organisation)
        cached = self._compiled.get(organisation)
        if cached is not None and cached[0] == version:
            return cached[1]
        ruleset = RuleSet(await self._rules.list_rules(organisation))
        self._compiled[organisation] = (version, ruleset)
        return ruleset


def blocked_error(verdict: Verdict) -> ContentBlocked:
    return ContentBlocked(
        "the firewall blocked this content",
        metadata={
            "categories": ",".join(verdict.categories),
            "rules": ",".join(verdict.rules),
            "decision": verdict.decision,
        },
    )
