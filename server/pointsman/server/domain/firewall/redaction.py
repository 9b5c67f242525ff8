"""Replaces findings in a text: a type placeholder (`<EMAIL_ADDRESS>`), a
mask (`************1111`) or a salted hash, as presidio-anonymizer's Replace,
Mask and Hash operators do (sha256 of the text's UTF-8 bytes followed by the
salt). Done here in a few lines: importing presidio-anonymizer's operators
imports presidio-analyzer and spaCy (~60 MB, most of a second)."""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Sequence

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
    """Applies one redaction style to every finding's span.
    Stateless after construction, so safe to share between threads."""

    def __init__(self, style: RedactionStyle = RedactionStyle.REPLACE, salt: bytes | None = None) -> None:
        self.style = style
        # Hashes must be comparable within a deployment (the same e-mail gives
        # the same hash) and useless to a dictionary attack from outside: a
        # configured salt, else one per process.
        self._salt = salt if salt is not None else os.urandom(32)
        if len(self._salt) < 16:
            raise ValueError("the redaction salt must be at least 16 bytes")

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
            return f"<{kind}>"
        if self.style is RedactionStyle.HASH:
            return hashlib.sha256(value.encode() + self._salt).hexdigest()
        keep = MASK_KEEP if len(value) >= MASK_MIN_CHARS else 0
        return "*" * (len(value) - keep) + value[len(value) - keep :]


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
