"""Allow/block rules and their evaluation in the smart mode: blocklist-only
until an enabled allow rule exists, then content must also match one."""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import FailedPrecondition, ViolationCollector
from .rule_matcher import Pattern, RuleMatcher, keywords, literal, regex_error
from .verdict import Category, Direction, Finding

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ..ports.embedder import Embedder

log = logging.getLogger(__name__)

# A topic rule's threshold when it gives none: the least cosine similarity to
# the centroid of its examples (chosen on a tuning split, bench/topic_meaning.py;
# the centroid told topics apart better than the nearest example there).
DEFAULT_TOPIC_THRESHOLD = 0.2

# Defaults of FIREWALL_MAX_RULE_CHARS and FIREWALL_MAX_RULES (settings.py).
MAX_PATTERN_CHARS = 1000
MAX_RULES = 10_000
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
    # A topic rule by meaning: phrases, and the least cosine similarity to one of them.
    examples: tuple[str, ...] = ()
    threshold: float = 0.0

    @property
    def name(self) -> str:
        return f"rules/{self.id}"

    def with_changes(self, **changes: object) -> Rule:
        return replace(self, **changes)  # type: ignore[arg-type]


def check_rule(rule: Rule, errors: ViolationCollector, path: str = "rule", max_chars: int = MAX_PATTERN_CHARS) -> None:
    """Adds a violation for every way the rule cannot work, including a regex
    that RE2 does not take. `max_chars` bounds a pattern, and a topic rule's
    keywords together."""
    if rule.match_type is MatchType.TOPIC:
        if not rule.keywords and not rule.examples:
            errors.add(f"{path}.keywords", "a topic rule needs at least one keyword or example")
        if len(rule.examples) > MAX_KEYWORDS:
            errors.add(f"{path}.examples", f"at most {MAX_KEYWORDS} examples are allowed")
        if any(not e.strip() for e in rule.examples):
            errors.add(f"{path}.examples", "examples must not be blank")
        elif sum(len(e) for e in rule.examples) > max_chars * 10:
            errors.add(f"{path}.examples", f"must be at most {max_chars * 10} characters together")
        if not 0 <= rule.threshold <= 1:
            errors.add(f"{path}.threshold", "must be above 0 and at most 1 (0: the default, 0.2)")
        if len(rule.keywords) > MAX_KEYWORDS:
            errors.add(f"{path}.keywords", f"at most {MAX_KEYWORDS} keywords are allowed")
        if any(not k.strip() for k in rule.keywords):
            errors.add(f"{path}.keywords", "keywords must not be blank")
        elif sum(len(k) for k in rule.keywords) > max_chars:
            errors.add(f"{path}.keywords", f"must be at most {max_chars} characters together")
    else:
        if rule.examples or rule.threshold:
            errors.add(f"{path}.examples", "only a topic rule matches by meaning")
        if not rule.pattern:
            errors.add(f"{path}.pattern", "is required")
        elif len(rule.pattern) > max_chars:
            errors.add(f"{path}.pattern", f"must be at most {max_chars} characters")
        elif rule.match_type is MatchType.REGEX:
            problem = regex_error(rule.pattern)
            if problem is not None:
                errors.add(
                    f"{path}.pattern",
                    "is not a regular expression RE2 can run in linear time (RE2 syntax: no backreferences, "
                    f"no lookahead or lookbehind, no possessive or atomic groups): {problem}",
                )
    if len(rule.description) > MAX_DESCRIPTION_CHARS:
        errors.add(f"{path}.description", f"must be at most {MAX_DESCRIPTION_CHARS} characters")


@dataclass(frozen=True, slots=True)
class RuleLimits:
    """What one organisation may have: FIREWALL_MAX_RULES, FIREWALL_MAX_RULE_CHARS."""

    max_rules: int = MAX_RULES
    max_rule_chars: int = MAX_PATTERN_CHARS


def check_room_for_rule(rule_count: int, max_rules: int) -> None:
    """Refuses one more rule for an organisation that has `max_rules` already."""
    if rule_count >= max_rules:
        raise FailedPrecondition(
            f"this organisation has {rule_count} rules, the most allowed (FIREWALL_MAX_RULES={max_rules}); "
            "delete or merge rules before creating more",
            reason="RULE_LIMIT_REACHED",
            metadata={"max_rules": str(max_rules)},
        )


def rule_pattern(rule: Rule) -> Pattern:
    """The rule as an RE2 pattern (matched without regard to case)."""
    if rule.match_type is MatchType.SUBSTRING:
        return Pattern(literal(rule.pattern))
    if rule.match_type is MatchType.REGEX:
        return Pattern(rule.pattern)
    return Pattern(*keywords(rule.keywords))


class _CompiledRule:
    __slots__ = ("index", "kind", "name", "scope", "source", "substring")

    def __init__(self, rule: Rule, index: int) -> None:
        self.kind = rule.kind
        self.name = rule.name
        self.scope = rule.scope
        self.index = index  # its pattern in the organisation's RuleMatcher
        # For the streaming guard's tail question (`output_block_patterns`):
        # a substring rule's folded text, or a regex source for the others.
        self.substring: str | None = None
        self.source: str | None = None
        if rule.match_type is MatchType.SUBSTRING:
            self.substring = rule.pattern.casefold()
        elif rule.match_type is MatchType.REGEX:
            self.source = rule.pattern
        else:
            words = "|".join(re.escape(k.strip()) for k in rule.keywords if k.strip())
            self.source = rf"\b(?:{words})\b" if words else None


class RuleSet:
    """An organisation's enabled rules, compiled once per change into one
    matcher: a scan costs about the same with ten rules or ten thousand."""

    def __init__(self, rules: list[Rule], embedder: Embedder | None = None) -> None:
        enabled = [r for r in rules if r.enabled]
        self._matcher = RuleMatcher([rule_pattern(r) for r in enabled])
        compiled: list[_CompiledRule] = []
        for index, rule in enumerate(enabled):
            if index in self._matcher.refused:
                # Stored before patterns had to suit RE2: it cannot be enforced
                # without the risk it was refused for; update it to a pattern RE2 takes.
                log.warning("firewall rule %s is not enforced: RE2 cannot run its pattern", rule.name)
                continue
            compiled.append(_CompiledRule(rule, index))
        self._embedder = embedder
        # Topic rules by meaning: their index, the unit centroid of their
        # examples and threshold, embedded once per rule change (offline).
        self._meaning: list[tuple[int, npt.NDArray[np.float32], float]] = []
        for index, rule in ((c.index, enabled[c.index]) for c in compiled):
            if rule.match_type is MatchType.TOPIC and rule.examples:
                if embedder is None:
                    log.warning("firewall rule %s matches by keywords only: no embeddings here", rule.name)
                    continue
                threshold = rule.threshold or DEFAULT_TOPIC_THRESHOLD
                centroid = embedder.embed(list(rule.examples)).mean(axis=0)
                norm = float((centroid @ centroid) ** 0.5)
                self._meaning.append((index, centroid / norm if norm > 0 else centroid, threshold))
        self._block = [r for r in compiled if r.kind is RuleKind.BLOCK]
        self._allow = [r for r in compiled if r.kind is RuleKind.ALLOW]
        self._names = {r.index: r.name for r in compiled}
        # Per direction, worked out once, the indices of the block and allow
        # rules that apply: a scan walks the rules that matched, not them all.
        self._by_direction = {
            direction: (
                frozenset(r.index for r in self._block if r.scope.covers(direction)),
                frozenset(r.index for r in self._allow if r.scope.covers(direction)),
            )
            for direction in Direction
        }

    def __bool__(self) -> bool:
        return bool(self._block or self._allow)

    def blocks(self, direction: Direction) -> bool:
        """Whether any block rule applies to this direction."""
        return bool(self._by_direction[direction][0])

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
                elif rule.source is not None:
                    patterns.append(rule.source)
        return substrings, patterns

    def evaluate(self, text: str, direction: Direction) -> list[Finding]:
        """Block-rule findings, or a NOT_ALLOWED finding in allowlist mode when
        no allow rule for this direction matches. Empty means the rules pass it."""
        block, allow = self._by_direction[direction]
        if not block and not allow:
            return []
        matches = self._matcher.matching(text)
        matched = matches.indices
        by_meaning = self._by_meaning(text, matched, block | allow)
        findings: list[Finding] = []
        for index in sorted((matched | by_meaning) & block):  # in the rules' order
            span = (0, len(text)) if index in by_meaning else matches.span(index)
            if span is not None:
                findings.append(Finding(Category.BLOCK_RULE, rule=self._names[index], start=span[0], end=span[1]))
        matched = matched | by_meaning
        if allow and matched.isdisjoint(allow):
            findings.append(Finding(Category.NOT_ALLOWED, start=0, end=len(text)))
        return findings

    def _by_meaning(self, text: str, matched: set[int], applying: frozenset[int]) -> set[int]:
        """The topic rules whose examples the text is close to (those not
        already matched by keyword); the text is embedded once, if at all."""
        pending = [m for m in self._meaning if m[0] in applying and m[0] not in matched]
        if not pending or self._embedder is None or not text.strip():
            return set()
        vector = self._embedder.embed([text])[0]
        return {index for index, centroid, threshold in pending if float(centroid @ vector) >= threshold}
