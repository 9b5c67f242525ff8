"""Rules in memory, per organisation, announcing every change: the rule store
for tests and benchmarks that need no database."""

from __future__ import annotations

from datetime import UTC, datetime

from ..domain.broadcast import Broadcaster
from ..domain.firewall.rules import Rule
from ..domain.ports.stores import RuleChange, RuleChangeType, new_rule_id, rule_not_found


class InMemoryRuleStore:
    """Rules in a dict; `version` lets the firewall recompile only after a change."""

    def __init__(self) -> None:
        self._rules: dict[str, dict[str, Rule]] = {}
        self._versions: dict[str, int] = {}
        self.changes: Broadcaster[RuleChange] = Broadcaster()

    def version(self, organisation: str) -> int:
        return self._versions.get(organisation, 0)

    async def rules_version(self, organisation: str) -> int:
        return self.version(organisation)  # one process: what it wrote is all there is

    def _changed(self, change_type: str, rule: Rule) -> None:
        self._versions[rule.organisation] = self.version(rule.organisation) + 1
        self.changes.publish(RuleChange(change_type, rule))

    async def create_rule(self, rule: Rule) -> Rule:
        now = datetime.now(UTC)
        rule = rule.with_changes(id=rule.id or new_rule_id(), create_time=now, update_time=now)
        self._rules.setdefault(rule.organisation, {})[rule.id] = rule
        self._changed(RuleChangeType.CREATED, rule)
        return rule

    async def get_rule(self, organisation: str, rule_id: str) -> Rule:
        rule = self._rules.get(organisation, {}).get(rule_id)
        if rule is None:
            raise rule_not_found(rule_id)
        return rule

    async def list_rules(self, organisation: str) -> list[Rule]:
        # Insertion order is creation order.
        return list(self._rules.get(organisation, {}).values())

    async def update_rule(self, rule: Rule) -> Rule:
        await self.get_rule(rule.organisation, rule.id)
        rule = rule.with_changes(update_time=datetime.now(UTC))
        self._rules[rule.organisation][rule.id] = rule
        self._changed(RuleChangeType.UPDATED, rule)
        return rule

    async def delete_rule(self, organisation: str, rule_id: str) -> Rule:
        rule = await self.get_rule(organisation, rule_id)
        del self._rules[organisation][rule_id]
        self._changed(RuleChangeType.DELETED, rule)
        return rule
