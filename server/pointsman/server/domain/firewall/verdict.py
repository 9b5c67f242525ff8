"""What the firewall finds and decides."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..chat import Message


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


# Strongest first: when findings of several categories meet, the strongest action wins.
SEVERITY = {Action.ALLOW: 0, Action.LOG: 1, Action.REDACT: 2, Action.BLOCK: 3}


@dataclass(frozen=True, slots=True)
class Finding:
    """One match; carries the span, never the matched text. Secrets carry a
    digest (sha256 of the secret, hex) and a masked preview such as `sk-…cdef`,
    so a leak can be traced and a key matched without storing it."""

    category: Category
    type: str = ""
    rule: str = ""  # rules/{id} for rule findings
    start: int = 0
    end: int = 0
    score: float = 1.0
    preview: str = ""
    digest: str = ""

    def shifted(self, offset: int) -> Finding:
        return replace(self, start=self.start + offset, end=self.end + offset)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the firewall decided. For a chat prompt (`guard_prompt`) with
    action REDACT, `messages` holds the prompt to send upstream instead: the
    same messages, each with its findings replaced; otherwise it is empty."""

    action: Action
    findings: tuple[Finding, ...] = ()
    redacted_text: str = ""
    decision: str = ""  # decisions/{id}
    messages: tuple[Message, ...] = ()

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
