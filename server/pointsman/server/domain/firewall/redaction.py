"""Replaces findings in a text with presidio-anonymizer's operators: a type
placeholder (`<EMAIL_ADDRESS>`), a mask (`************1111`) or a salted hash."""

from __future__ import annotations

import enum
import os
from collections.abc import Sequence
from typing import Any

from .verdict import Finding

# Masks keep this many trailing characters of values at least MASK_MIN_CHARS
# long (card and phone endings); shorter values are masked whole.
MASK_KEEP = 4
MASK_MIN_CHARS = 12


class RedactionStyle(enum.Enum):
    REPLACE = "replace"
    MASK = "mask"
    HASH = "hash"


class Redactor:
    """Applies one presidio-anonymizer operator to every finding's span.
    Stateless after construction, so safe to share between threads."""

    def __init__(self, style: RedactionStyle = RedactionStyle.REPLACE, salt: bytes | None = None) -> None:
        self.style = style
        # Hashes must be comparable within a deployment (the same e-mail gives
        # the same hash) and useless to a dictionary attack from outside: a
        # configured salt, else one per process.
        self._salt = salt if salt is not None else os.urandom(32)
        if len(self._salt) < 16:
            raise ValueError("the redaction salt must be at least 16 bytes")
        # Imported here: presidio-anonymizer pulls in presidio-analyzer and
        # spaCy (~1 s, ~90 MB), which only a firewall that runs should pay.
        from presidio_anonymizer.operators import Hash, Mask, Replace

        operators: dict[RedactionStyle, Any] = {
            RedactionStyle.REPLACE: Replace,
            RedactionStyle.MASK: Mask,
            RedactionStyle.HASH: Hash,
        }
        self._operator: Any = operators[style]()

    def redact(self, text: str, findings: Sequence[Finding]) -> str:
        spans = merge_spans(findings)
        if not spans:
            return text
        pieces: list[str] = []
        position = 0
        for kind, start, end in spans:
            pieces.append(text[position:start])
            pieces.append(self.replacement(kind, text[start:end]))
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

    def replacement(self, kind: str, value: str) -> str:
        if self.style is RedactionStyle.REPLACE:
            params: dict[str, object] = {"new_value": f"<{kind}>"}
        elif self.style is RedactionStyle.HASH:
            params = {"hash_type": "sha256", "salt": self._salt}
        else:
            keep = MASK_KEEP if len(value) >= MASK_MIN_CHARS else 0
            params = {"masking_char": "*", "chars_to_mask": len(value) - keep, "from_end": False}
        self._operator.validate(params)
        return str(self._operator.operate(value, params))


def merge_spans(findings: Sequence[Finding]) -> list[tuple[str, int, int]]:
    """Findings as non-overlapping (type, start, end), overlapping ones joined
    under the type of the longest: a toxic sentence that holds an e-mail is
    redacted once, whole."""
    spans: list[tuple[str, int, int]] = []
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if finding.end <= finding.start:
            continue
        kind = finding.type or finding.category.value.upper()
        if spans and finding.start < spans[-1][2]:
            last_kind, last_start, last_end = spans[-1]
            longer = kind if finding.end - finding.start > last_end - last_start else last_kind
            spans[-1] = (longer, last_start, max(last_end, finding.end))
        else:
            spans.append((kind, finding.start, finding.end))
    return spans
