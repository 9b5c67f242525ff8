"""What the door adds to OpenAI's shapes (docs/http.md): a `pointsman`
object on a completion or a chunk, saying what the firewall did and whether a
JSON answer matches its schema, and headers for the prompt's verdict. The
openai SDK keeps unknown fields (`completion.pointsman`), so its parsing is
untouched; a client that does not look never notices."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..domain import chat
from ..domain.firewall.verdict import Direction
from ..domain.orchestrator import FirewallNotice

NAME = "pointsman"


def notice_json(notice: FirewallNotice) -> dict[str, Any]:
    """A notice with what the gRPC FirewallNotice says, less any text: the
    findings' spans, categories and types, never what they matched."""
    verdict = notice.verdict
    out: dict[str, Any] = {"direction": notice.direction.value}
    if notice.direction is Direction.OUTPUT:
        out["part"] = "reasoning" if notice.reasoning else "answer"
    out["action"] = verdict.action.value
    out["categories"] = verdict.categories
    out["rules"] = verdict.rules
    out["decision"] = verdict.decision
    out["findings"] = [
        {"category": f.category.value, "type": f.type, "rule": f.rule, "start": f.start, "end": f.end}
        for f in verdict.findings
    ]
    return out


def extension(notices: Iterable[FirewallNotice], finish: chat.Finish | None = None) -> dict[str, Any] | None:
    """The `pointsman` object, or None when there is nothing to say."""
    out: dict[str, Any] = {}
    firewall = [notice_json(n) for n in notices]
    if firewall:
        out["firewall"] = firewall
    if finish is not None and finish.schema_valid is not None:
        out["schema_valid"] = finish.schema_valid
    return out or None


def prompt_headers(notices: Iterable[FirewallNotice]) -> dict[str, str]:
    """The prompt's verdict as headers, when the firewall acted on it
    (redacted or logged: a block is an error instead)."""
    for notice in notices:
        if notice.direction is Direction.INPUT:
            verdict = notice.verdict
            return {
                "x-pointsman-firewall-input": verdict.action.value,
                "x-pointsman-firewall-input-categories": ",".join(verdict.categories),
                "x-pointsman-firewall-input-decision": verdict.decision,
            }
    return {}
