"""What the firewall finds and decides."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Direction(enum.Enum):
    INPUT = "input"
    OUTPUT = "output"


class Action(enum.Enum):
    ALLOW = "allow"
    REDACT = "redact"
    BLOCK = "block"
    LOG = "log"


class Category(enum.Enum):
    BLOCK_RULE = "block_rule"
    NOT_ALLOWED = "not_allowed"
    PII = "pii"
    SECRET = "secret"
    TOXICITY = "toxicity"


@dataclass(frozen=True, slots=True)
class Finding:
    """One match; carries the span, never the matched text."""

    category: Category
    type: str = ""
    rule: str = ""  # rules/{id} for rule findings
    start: int = 0
    end: int = 0
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    findings: tuple[Finding, ...] = ()
    redacted_text: str = ""
    decision: str = ""  # decisions/{id}

    @property
    def categories(self) -> list[str]:
        return sorted({f.category.value for f in self.findings})

    @property
    def rules(self) -> list[str]:
        return sorted({f.rule for f in self.findings if f.rule})


ALLOWED = Verdict(Action.ALLOW)


@dataclass(frozen=True, slots=True)
class Decision:
    """The record of one scan. Never holds the scanned text, only its hash."""

    id: str
    create_time: datetime
    organisation: str
    principal: str
    direction: Direction
    action: Action
    findings: tuple[Finding, ...] = field(default=())
    content_sha256: str = ""
    request_id: str = ""

    @property
    def name(self) -> str:
        return f"decisions/{self.id}"
