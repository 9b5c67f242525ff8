"""The contract every content detector meets, and the span arithmetic they share."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from math import log2
from typing import Protocol

from ..verdict import Category, Finding


class Detector(Protocol):
    """Finds one category of sensitive content in a text.

    `detect` must be pure and thread-safe: the engine calls it from worker
    threads for large texts, and caches its result by the text's hash."""

    category: Category

    def detect(self, text: str) -> list[Finding]: ...


def word_regex(words: Iterable[str]) -> re.Pattern[str]:
    """One case-insensitive regex matching any of the words (or phrases) as
    whole words; longest first so a phrase wins over its first word."""
    alternatives = sorted({w.strip().lower() for w in words if w.strip()}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in alternatives) + r")(?!\w)", re.IGNORECASE)


def keep_strongest(findings: Sequence[Finding], priority: dict[str, int] | None = None) -> list[Finding]:
    """Resolves overlaps: of findings that share characters, keeps the one
    with the highest (priority, score, length), so a credit card is not also
    a phone number and an e-mail is not also a URL. Returns them by start."""
    priority = priority or {}
    ranked = sorted(
        findings,
        key=lambda f: (priority.get(f.type, 0), f.score, f.end - f.start, -f.start),
        reverse=True,
    )
    kept: list[Finding] = []
    for finding in ranked:
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    kept.sort(key=lambda f: f.start)
    return kept


def shannon_entropy(value: str) -> float:
    """Bits per character of the value's own character distribution."""
    if not value:
        return 0.0
    length = len(value)
    counts: dict[str, int] = {}
    for char in value:
        counts[char] = counts.get(char, 0) + 1
    return -sum(c / length * log2(c / length) for c in counts.values())
