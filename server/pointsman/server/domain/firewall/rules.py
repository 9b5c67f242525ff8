"""Allow/block rules and their evaluation in the smart mode: blocklist-only
until an enabled allow rule exists, then content must also match one."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from datetime import datetime

from ..errors import ViolationCollector
from .verdict import Category, Direction, Finding

MAX_PATTERN_CHARS = 1000
MAX_KEYWORDS = 100
MAX_DESCRIPTION_CHARS = 2000


class RuleKind(enum.Enum):
    BLOCK = "block"
    ALLOW = "allow"


class MatchType(enum.Enum):
    SUBSTRING = "substring"
    REGEX = "regex"
    TOPIC = "topic"


class RuleScope(enum.Enum):
    INPUT = "input"
    OUTPUT = "output"
    BOTH = "both"

    def covers(self, direction: Direction) -> bool:
        return self is RuleScope.BOTH or self.value == direction.value


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    organisation: str
    kind: RuleKind
    match_type: MatchType
    pattern: str = ""
    keywords: tuple[str, ...] = ()
    description: str = ""
    enabled: bool = True
    scope: RuleScope = RuleScope.INPUT
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def name(self) -> str:
        return f"rules/{self.id}"

    def with_changes(self, **changes: object) -> Rule:
        return replace(self, **changes)  # type: ignore[arg-type]


def check_rule(rule: Rule, errors: ViolationCollector, path: str = "rule") -> None:
    """Adds a violation for every way the rule cannot work, including a regex
    that does not compile."""
    if rule.match_type is MatchType.TOPIC:
        if not rule.keywords:
            errors.add(f"{path}.keywords", "a topic rule needs at least one keyword")
        if len(rule.keywords) > MAX_KEYWORDS:
            errors.add(f"{path}.keywords", f"at most {MAX_KEYWORDS} keywords are allowed")
        if any(not k.strip() or len(k) > MAX_PATTERN_CHARS for k in rule.keywords):
            errors.add(f"{path}.keywords", f"keywords must be 1 to {MAX_PATTERN_CHARS} characters")
    else:
        if not rule.pattern:
            errors.add(f"{path}.pattern", "is required")
        elif len(rule.pattern) > MAX_PATTERN_CHARS:
            errors.add(f"{path}.pattern", f"must be at most {MAX_PATTERN_CHARS} characters")
        elif rule.match_type is MatchType.REGEX:
            try:
                re.compile(rule.pattern)
            except re.error as error:
                errors.add(f"{path}.pattern", f"is not a valid regular expression: {error}")
    if len(rule.description) > MAX_DESCRIPTION_CHARS:
        errors.add(f"{path}.description", f"must be at most {MAX_DESCRIPTION_CHARS} characters")


class _CompiledRule:
    __slots__ = ("kind", "name", "regex", "scope", "substring")

    def __init__(self, rule: Rule) -> None:
        self.kind = rule.kind
        self.name = rule.name
        self.scope = rule.scope
        self.substring: str | None = None
        self.regex: re.Pattern[str] | None = None
        if rule.match_type is MatchType.SUBSTRING:
            self.substring = rule.pattern.casefold()
        elif rule.match_type is MatchType.REGEX:
            self.regex = re.compile(rule.pattern, re.IGNORECASE)
        else:
            words = "|".join(re.escape(k.strip()) for k in rule.keywords)
            self.regex = re.compile(rf"\b(?:{words})\b", re.IGNORECASE)

    def search(self, text: str, folded: str) -> tuple[int, int] | None:
        if self.substring is not None:
            # casefold can change lengths for a few scripts; spans are then
            # approximate, which is fine for a finding that never shows text.
            start = folded.find(self.substring)
            return None if start < 0 else (start, start + len(self.substring))
        assert self.regex is not None
        match = self.regex.search(text)
        return None if match is None else match.span()


class RuleSet:
    """An organisation's enabled rules, compiled once per change."""

    def __init__(self, rules: list[Rule]) -> None:
        compiled = [_CompiledRule(r) for r in rules if r.enabled]
        self._block = [r for r in compiled if r.kind is RuleKind.BLOCK]
        self._allow = [r for r in compiled if r.kind is RuleKind.ALLOW]

    def __bool__(self) -> bool:
        return bool(self._block or self._allow)

    def blocks(self, direction: Direction) -> bool:
        """Whether any block rule applies to this direction."""
        return any(r.scope.covers(direction) for r in self._block)

    def output_block_patterns(self) -> tuple[list[str], list[str]]:
        """The block rules for output as (casefolded substrings, regex
        sources), for the streaming guard's question of whether an answer's
        tail could still start a match (`rule_tails`)."""
        substrings: list[str] = []
        patterns: list[str] = []
        for rule in self._block:
            if rule.scope.covers(Direction.OUTPUT):
                if rule.substring is not None:
                    substrings.append(rule.substring)
                elif rule.regex is not None:
                    patterns.append(rule.regex.pattern)
        return substrings, patterns

    def evaluate(self, text: str, direction: Direction) -> list[Finding]:
        """Block-rule findings, or a NOT_ALLOWED finding in allowlist mode when
        no allow rule for this direction matches. Empty means the rules pass it."""
        folded = text.casefold()
        findings: list[Finding] = []
        for rule in self._block:
            if rule.scope.covers(direction):
                span = rule.search(text, folded)
                if span is not None:
                    findings.append(Finding(Category.BLOCK_RULE, rule=rule.name, start=span[0], end=span[1]))
        allow = [r for r in self._allow if r.scope.covers(direction)]
        if allow and not any(r.search(text, folded) is not None for r in allow):
            findings.append(Finding(Category.NOT_ALLOWED, start=0, end=len(text)))
        return findings
