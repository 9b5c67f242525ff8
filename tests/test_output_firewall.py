"""The output firewall: answers are scanned as they stream, a window at a
time. Redaction happens before the text leaves the gateway; a block cuts
the answer with FINISH_REASON_CONTENT_FILTER; the decision is recorded.
(Every split point of every kind of finding: test_output_splits.py.)"""

from __future__ import annotations

import random
import string
from typing import Any

from pointsman.client import AsyncClient
from pointsman.firewall.v1 import firewall_pb2 as fw
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.backends.decision_log import InMemoryDecisionLog
from pointsman.server.backends.rule_store import InMemoryRuleStore
from pointsman.server.domain.firewall.engine import build_firewall
from pointsman.server.domain.firewall.output_guard import CONTEXT_CHARS, OutputGuard, WindowScanner
from pointsman.server.domain.firewall.rules import RuleSet
from pointsman.server.domain.firewall.verdict import Action, Finding
from pointsman.type.v1 import firewall_pb2 as types

from helpers_pb import chat_request, text_of
from server_fixtures import collect, settings

TOKEN = "ghp_" + "".join(random.Random(5).choice(string.ascii_letters + string.digits) for _ in range(36))


def engine() -> Any:
    return build_firewall(InMemoryRuleStore(), InMemoryDecisionLog(), settings())


def guard(holdback: int, scanner: WindowScanner | None = None) -> OutputGuard:
    from pointsman.server.domain.firewall.engine import _OutputWindow

    return OutputGuard(scanner or _OutputWindow(engine(), RuleSet([])), holdback)


def stream(g: OutputGuard, pieces: list[str]) -> tuple[str, bool]:
    """Feeds pieces as an answer would stream them; returns what was released and whether it stopped."""
    released = []
    for piece in pieces:
        step = g.feed(piece)
        released.append(step.release)
        if step.stop:
            return "".join(released), True
    step = g.finish()
    released.append(step.release)
    return "".join(released), step.stop


def tokens(text: str, size: int = 3) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_personal_data_split_across_chunks_is_redacted_before_release() -> None:
    g = guard(holdback=32)
    released, stopped = stream(g, tokens("Sure. Write to jane.doe@example.com and call 212-555-0187 today, thanks!"))
    assert not stopped
    assert released == "Sure. Write to <EMAIL_ADDRESS> and call <PHONE_NUMBER> today, thanks!"
    assert g.verdict.action is Action.REDACT
    assert [f.type for f in g.verdict.findings] == ["EMAIL_ADDRESS", "PHONE_NUMBER"]


def test_a_secret_cuts_the_answer_before_any_of_it_is_released() -> None:
    g = guard(holdback=64)
    released, stopped = stream(g, tokens(f"Your token is {TOKEN} and it never expires."))
    assert stopped
    assert released.startswith("Your token is") and TOKEN[:8] not in released
    assert g.verdict.action is Action.BLOCK


def test_with_no_holdback_text_flows_at_once_and_a_secret_still_stops_the_answer() -> None:
    g = guard(holdback=0)
    assert g.feed("Hello there, ").release == "Hello there, "  # nothing held back
    _, stopped = stream(g, tokens(f"the token is {TOKEN} ok"))
    assert stopped and g.verdict.action is Action.BLOCK


def test_prose_leaves_chunk_for_chunk() -> None:
    g = guard(holdback=1024)
    words = "Paris is the capital of France, and it has been for a long time. ".split(" ")
    pieces = [w + " " for w in words if w]
    assert [g.feed(p).release for p in pieces] == pieces  # words closed by a space wait for nothing
    g = guard(holdback=1024)
    # Words that open the chunk (" word"): the last one waits for the next chunk.
    releases = [g.feed(" " + w).release for w in ("Paris", "is", "lovely")]
    assert releases == [" ", "Paris ", "is "] and g.finish().release == "lovely"


def test_a_number_waits_until_what_follows_it_is_known() -> None:
    g = guard(holdback=1024)
    # "0490 75 40 81" alone is no phone number; the label after it makes it one.
    released, _ = stream(g, ["Ring ", "0490 ", "75 ", "40 ", "81 ", "(office) ", "after ", "ten ", "please."])
    assert "0490" not in released and "<PHONE_NUMBER>" in released


def test_work_per_chunk_stays_constant_however_long_the_answer() -> None:
    windows: list[int] = []

    class Measuring:
        def __init__(self, inner: WindowScanner) -> None:
            self.inner = inner

        def findings(self, window: str, start: int = 0) -> list[Finding]:
            windows.append(len(window))
            return self.inner.findings(window, start)

        def hold_start(self, window: str, floor: int) -> int:
            return self.inner.hold_start(window, floor)

        def action(self, finding: Finding) -> Action:
            return self.inner.action(finding)

        def redact(self, text: str, findings: list[Finding]) -> str:
            return self.inner.redact(text, findings)

    from pointsman.server.domain.firewall.engine import _OutputWindow

    g = OutputGuard(Measuring(_OutputWindow(engine(), RuleSet([]))), 1024)
    released, _ = stream(g, ["word "] * 5000)
    assert released == "word " * 5000
    # Released context and the new chunk; never the whole answer.
    assert max(windows) <= CONTEXT_CHARS + len("word ")
    assert len(windows) <= 5000 + 1


async def test_an_output_block_rule_cuts_the_stream_with_content_filter(client: AsyncClient) -> None:
    await client.firewall.CreateRule(
        fw.CreateRuleRequest(
            rule=fw.Rule(
                kind=fw.RULE_KIND_BLOCK,
                match_type=fw.MATCH_TYPE_SUBSTRING,
                pattern="project falcon",
                scope=fw.RULE_SCOPE_OUTPUT,
                enabled=True,
            )
        )
    )
    # The prompt passes (the rule is for answers); the built-in model echoes it back.
    events = await collect(client.orchestrator.Chat(chat_request("tell me about project falcon and more")))
    assert "project falcon" not in text_of(events)
    notices = [e.firewall_notice for e in events if e.HasField("firewall_notice")]
    assert [(n.direction, n.verdict.action) for n in notices] == [(types.DIRECTION_OUTPUT, types.ACTION_BLOCK)]
    assert events[-1].finish.reason == orch.FINISH_REASON_CONTENT_FILTER
    decisions = await client.firewall.ListDecisions(fw.ListDecisionsRequest())
    assert any(d.direction == types.DIRECTION_OUTPUT and d.action == types.ACTION_BLOCK for d in decisions.decisions)


async def test_clean_answers_stream_unchanged_and_are_recorded(client: AsyncClient) -> None:
    events = await collect(client.orchestrator.Chat(chat_request("what is the capital of France")))
    assert text_of(events).endswith("what is the capital of France")
    assert events[-1].finish.reason == orch.FINISH_REASON_STOP
    assert not any(e.HasField("firewall_notice") for e in events)
    decisions = await client.firewall.ListDecisions(fw.ListDecisionsRequest())
    assert any(d.direction == types.DIRECTION_OUTPUT and d.action == types.ACTION_ALLOW for d in decisions.decisions)
