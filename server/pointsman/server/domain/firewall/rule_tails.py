"""Whether the tail of a streamed answer could still start a match of an
organisation's block rules for output, so the output guard holds it.

Full matching stays with `RuleSet` (whatever engine it uses); this module only
asks "could more text complete a match that starts here?". Substring rules
answer it with a prefix test; regex and topic rules with the `regex` package's
partial matching, always under a time bound, so a hostile pattern costs at
most RULE_TAIL_TIMEOUT_SECONDS per chunk and then holds its tail (up to the
guard's limit) rather than stall the stream."""

from __future__ import annotations

import weakref
from typing import Any

import regex  # type: ignore[import-untyped]

from .rules import RuleSet

RULE_TAIL_TIMEOUT_SECONDS = 0.002


class RuleTails:
    """The partial matchers of one rule set's block rules for output."""

    def __init__(self, substrings: list[str], patterns: list[str]) -> None:
        self._substrings = [s for s in substrings if s]
        self._regexes: list[Any] = []  # compiled `regex` patterns; None: unreadable
        for pattern in patterns:
            try:
                self._regexes.append(regex.compile(pattern, regex.IGNORECASE | regex.V0))
            except (regex.error, ValueError):
                # Not readable by `regex`: nothing can be said about its tail,
                # so every tail is held (the guard's hold limit still applies).
                self._regexes.append(None)

    def __bool__(self) -> bool:
        return bool(self._substrings or self._regexes)

    def hold_start(self, window: str, floor: int) -> int:
        """The earliest position at or after `floor` where a match could start
        and still be completed by more text; len(window) when none can."""
        end = len(window)
        start = end
        for substring in self._substrings:
            start = min(start, _substring_tail(window, floor, substring))
        for pattern in self._regexes:
            if start <= floor:
                return floor
            if pattern is None:
                return floor
            try:
                # Partial matches can only run to the end of the window; the
                # first one found from `floor` is the earliest to hold.
                for match in pattern.finditer(window, floor, partial=True, timeout=RULE_TAIL_TIMEOUT_SECONDS):
                    if match.partial:
                        if match.start() < end:
                            start = min(start, match.start())
                        break
            except TimeoutError:
                return floor
        return start


def _substring_tail(window: str, floor: int, substring: str) -> int:
    """Where the window ends with a proper prefix of `substring` (casefolded)."""
    end = len(window)
    low = max(floor, end - len(substring) + 1)
    tail = window[low:]
    folded = tail.casefold()
    if len(folded) != len(tail):  # casefold changed lengths (ß): compare per position
        for index in range(low, end):
            if substring.startswith(window[index:].casefold()):
                return index
        return end
    first = substring[0]
    index = folded.find(first)
    while index >= 0:
        if substring.startswith(folded[index:]):
            return low + index
        index = folded.find(first, index + 1)
    return end


_CACHE: weakref.WeakKeyDictionary[RuleSet, RuleTails] = weakref.WeakKeyDictionary()


def rule_tails(ruleset: RuleSet) -> RuleTails:
    """The rule set's tails, built once per rule set (rule sets are rebuilt on every change)."""
    tails = _CACHE.get(ruleset)
    if tails is None:
        substrings, patterns = ruleset.output_block_patterns()
        tails = RuleTails(substrings, patterns)
        _CACHE[ruleset] = tails
    return tails
