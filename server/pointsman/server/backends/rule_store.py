"""Rule storage. The embedded store keeps rules in memory, per organisation,
and announces every change."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ..domain.broadcast import Broadcaster
from ..domain.errors import NotFound
from ..domain.firewall.rules import Rule


class RuleChangeType:
    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class RuleChange:
    change_type: str
    rule: Rule


class RuleStore(Protocol):
    changes: Broadcaster[RuleChange]

    def version(self, organisation: str) -> int: ...
    async def create_rule(self, rule: Rule) -> Rule: ...
    async def get_rule(self, organisation: str, rule_id: str) -> Rule: ...
    async def list_rules(self, organisation: str) -> list[Rule]: ...
    async def update_rule(self, rule: Rule) -> Rule: ...
    async def delete_rule(self, organisation: str, rule_id: str) -> Rule: ...


def new_rule_id() -> str:
    return secrets.token_hex(8)


class InMemoryRuleStore:
    """Rules in a dict; `version` lets the firewall recompile only after a change."""

    def __init__(self) -> None:
        self._rules: dict[str, dict[str, Rule]] = {}
        self._versions: dict[str, int] = {}
        self.changes: Broadcaster[RuleChange] = Broadcaster()

    def version(self, organisation: str) -> int:
        return self._versions.get(organisation, 0)

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
            raise NotFound(f"rule 'rules/{rule_id}' does not exist", reason="RULE_NOT_FOUND")
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
