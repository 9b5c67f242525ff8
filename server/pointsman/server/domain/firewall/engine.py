"""The firewall engine: runs the content detectors (PII, secrets, toxicity) and
the organisation's rules over a text, decides per category (block, redact or
log), and records every decision."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from ..caller import Caller
from ..chat import Message, TextPart
from ..errors import ContentBlocked, DomainError, Unavailable, ViolationCollector
from ..ports.embedder import Embedder
from ..ports.stores import DecisionStore, RuleStore
from .detectors.base import Detector
from .holdback import HoldPolicy, detector_trigger
from .output_guard import OutputGuard
from .redaction import RedactionStyle, Redactor
from .rule_tails import rule_tails
from .rules import RuleSet
from .verdict import ALLOWED, SEVERITY, Action, Category, Decision, Direction, Finding, Verdict

# Above this many characters to analyse, the work leaves the event-loop
# thread: at ~1 ms per KB, a larger scan would stall every other stream.
OFFLOAD_CHARS = 2048
# Texts longer than this are scanned in overlapping pieces (see `chunks`).
CHUNK_CHARS = 32_768
CHUNK_OVERLAP = 8_192
# Content with more than this share of control characters is binary, not text.
MAX_CONTROL_SHARE = 0.1
_CONTROL = re.compile(r"[\x01-\x08\x0e-\x1f\x7f-\x9f]")

# After a failed reload, the last rules are enforced this long before trying again.
RELOAD_BACKOFF_SECONDS = 1.0

# More rules than this are compiled in a worker thread, not on the event loop.
COMPILE_OFF_LOOP_RULES = 200
RULE_CATEGORIES = (Category.BLOCK_RULE, Category.NOT_ALLOWED)
DEFAULT_ACTIONS: Mapping[Category, Action] = {
    Category.BLOCK_RULE: Action.BLOCK,
    Category.NOT_ALLOWED: Action.BLOCK,
    Category.PII: Action.REDACT,
    Category.SECRET: Action.BLOCK,
    Category.TOXICITY: Action.BLOCK,
}

DetectorFindings = tuple[Finding, ...]
log = logging.getLogger(__name__)


class FirewallEngine:
    """Decides on texts and chat prompts.

    Detector results are cached by the sha256 of each text (a bounded LRU,
    touched only on the event-loop thread), so a conversation's earlier turns
    are not scanned again; rules are evaluated on every call, because they
    change. Detectors must be thread-safe: large scans run in a worker thread."""

    def __init__(
        self,
        rules: RuleStore,
        decisions: DecisionStore,
        *,
        enabled: bool = True,
        block_on_violation: bool = True,
        detectors: Sequence[Detector] = (),
        actions: Mapping[Category, Action] | None = None,
        redactor: Redactor | None = None,
        cache_size: int = 10_000,
        offload_chars: int = OFFLOAD_CHARS,
    ) -> None:
        self._rules = rules
        self._decisions = decisions
        self.enabled = enabled
        self._detectors = tuple(detectors)
        chosen = {**DEFAULT_ACTIONS, **(actions or {})}
        if not block_on_violation:
            # Log-only mode: nothing is refused, everything is recorded.
            chosen = {c: Action.LOG if a is Action.BLOCK else a for c, a in chosen.items()}
        self.actions: Mapping[Category, Action] = chosen
        self._redactor = redactor
        self._cache: OrderedDict[str, DetectorFindings] = OrderedDict()
        self._cache_size = cache_size
        self._offload_chars = offload_chars
        # Embeds texts for topic rules by meaning; None: those match by keywords only.
        self.embedder: Embedder | None = None
        self._compiled: dict[str, tuple[int, RuleSet]] = {}
        self._compiling: dict[str, asyncio.Lock] = {}
        self._reload_after: dict[str, float] = {}
        self.cache_hits = 0
        self.cache_misses = 0
        self._holds: HoldPolicy | None = None
        self._no_rules = RuleSet([])

    async def scan(
        self,
        text: str,
        direction: Direction,
        caller: Caller,
        *,
        categories: frozenset[Category] | None = None,
        rules: bool = True,
    ) -> Verdict:
        """Decides on one text and records the decision. `categories` names
        the detectors to run (None: all) and `rules` whether the rules run;
        what is not asked for does not run at all."""
        if not self.enabled:
            return ALLOWED
        detectors = None if categories is None else tuple(d for d in self._detectors if d.category in categories)
        digests, detected, rule_findings = await self._analyse(
            [text], text, direction, caller, detectors=detectors, rules=rules
        )
        findings = tuple(sorted(detected[0] + rule_findings, key=lambda f: (f.start, f.end)))
        action = self._action(findings)
        redacted = self._redact(text, findings) if action is Action.REDACT else ""
        decision = await self._record(caller, direction, action, findings, digests[0] if digests else _sha256(text))
        return Verdict(action, findings, redacted_text=redacted, decision=decision)

    async def guard_prompt(self, messages: Sequence[Message], caller: Caller) -> Verdict:
        """Scans a chat prompt text by text (each message's content and text
        parts; images are not scanned); raises ContentBlocked when it must
        not reach a model. With action REDACT, `Verdict.messages` is the
        prompt to send instead.

        Finding spans are positions in those texts joined by "\\n" (the text
        the rules see); `redacted_text` is that joined text redacted."""
        slots = _text_slots(messages)
        errors = ViolationCollector()
        for index, position, text in slots:
            path = f"messages[{index}].content" if position < 0 else f"messages[{index}].parts[{position}].text"
            check_content(text, errors, path)
        errors.raise_if_any()
        if not self.enabled:
            return ALLOWED
        present = [slot for slot in slots if slot[2]]
        texts = [slot[2] for slot in present]
        joined = texts[0] if len(texts) == 1 else "\n".join(texts)
        digests, per_text, rule_findings = await self._analyse(texts, joined, Direction.INPUT, caller)
        findings: list[Finding] = []
        offset = 0
        for text, found in zip(texts, per_text, strict=True):
            findings.extend(f.shifted(offset) for f in found)
            offset += len(text) + 1
        findings.extend(rule_findings)
        findings.sort(key=lambda f: (f.start, f.end))
        action = self._action(findings)
        redacted_messages: tuple[Message, ...] = ()
        redacted_text = ""
        if action is Action.REDACT:
            redacted = [self._redact(t, found) if found else t for t, found in zip(texts, per_text, strict=True)]
            redacted_messages = _with_texts(messages, present, redacted)
            redacted_text = "\n".join(redacted)
        # One text (the usual prompt) is its own joined text: its digest serves both.
        digest = digests[0] if len(texts) == 1 and digests else _sha256(joined)
        decision = await self._record(caller, Direction.INPUT, action, tuple(findings), digest)
        verdict = Verdict(
            action, tuple(findings), redacted_text=redacted_text, decision=decision, messages=redacted_messages
        )
        if action is Action.BLOCK:
            raise blocked_error(verdict)
        return verdict

    async def output_guard(self, caller: Caller, holdback: int) -> OutputGuard | None:
        """A guard for one streamed answer; None when nothing would be checked."""
        if not self.enabled:
            return None
        ruleset = await self._ruleset(caller.organisation)
        if not self._detectors and not ruleset.blocks(Direction.OUTPUT):
            return None
        return OutputGuard(_OutputWindow(self, ruleset), holdback)

    def _hold_policy(self) -> HoldPolicy:
        """The tail rules for the detectors this engine runs (built once)."""
        if self._holds is None:
            categories = {d.category for d in self._detectors}
            self._holds = HoldPolicy(
                words=bool(categories),
                numbers=Category.PII in categories,
                secrets=Category.SECRET in categories,
                sentences=Category.TOXICITY in categories and self.actions.get(Category.TOXICITY) is Action.REDACT,
            )
        return self._holds

    async def clear_replayed_answer(self, text: str, caller: Caller) -> Verdict | None:
        """For an answer replayed from the cache, whole: its verdict (recorded)
        when nothing in it is found, so it can be sent without the streaming
        guard; None when something is, and the guard must decide. Detector
        results are cached by content, so a popular answer is scanned once."""
        if not self.enabled:
            return ALLOWED
        digests, detected, rule_findings = await self._analyse([text], text, Direction.OUTPUT, caller)
        if detected[0] or rule_findings:
            return None
        decision = await self._record(
            caller, Direction.OUTPUT, Action.ALLOW, (), digests[0] if digests else _sha256(text)
        )
        return Verdict(Action.ALLOW, (), decision=decision)

    async def record_output(self, guard: OutputGuard, caller: Caller) -> Verdict:
        """Records the decision on a whole answer; returns the verdict naming it."""
        verdict = guard.verdict
        decision = Decision(
            id=self._decisions.new_id(),
            create_time=datetime.now(UTC),
            organisation=caller.organisation,
            principal=caller.principal,
            direction=Direction.OUTPUT,
            action=verdict.action,
            findings=verdict.findings,
            content_sha256=guard.content_sha256,
            request_id=caller.request_id,
        )
        await self._decisions.record(decision)
        return replace(verdict, decision=decision.name)

    async def _analyse(
        self,
        texts: list[str],
        rule_text: str,
        direction: Direction,
        caller: Caller,
        *,
        detectors: tuple[Detector, ...] | None = None,
        rules: bool = True,
    ) -> tuple[list[str], list[DetectorFindings], DetectorFindings]:
        """The texts' sha256 digests (the detector cache's keys; empty without
        detectors), detector findings per text (from the cache where possible)
        and the rule findings on `rule_text`; off the event loop when there is
        much to do. `detectors` (None: all) and `rules` limit what runs."""
        ruleset = await self._ruleset(caller.organisation) if rules else self._no_rules
        chosen = self._detectors if detectors is None else detectors
        digests = [_sha256(t) for t in texts] if chosen else []
        # A subset's findings are cached under their own key: cached under the
        # text's digest, they would pass for a full scan's (and a full scan's
        # shadowing of PII by secrets differs from a PII-only scan's).
        suffix = "" if detectors is None else ":" + ",".join(sorted(d.category.value for d in chosen))
        keys = [d + suffix for d in digests] if chosen else []
        cached: list[DetectorFindings | None] = [self._cache_get(k) for k in keys] if keys else [()] * len(texts)
        todo = [i for i, c in enumerate(cached) if c is None]
        if not todo and not ruleset:  # all found in the cache, and no rules: nothing to run
            return digests, [c or () for c in cached], ()
        work = sum(len(texts[i]) for i in todo) + (len(rule_text) if ruleset else 0)

        def run() -> tuple[list[DetectorFindings], DetectorFindings]:
            fresh = [self._detect(texts[i], chosen) for i in todo]
            rule_findings = evaluate_rules(ruleset, rule_text, direction) if ruleset else ()
            return fresh, rule_findings

        if work > self._offload_chars:
            fresh, rule_findings = await asyncio.to_thread(run)
        else:
            fresh, rule_findings = run()
        for i, found in zip(todo, fresh, strict=True):
            cached[i] = found
            self._cache_put(keys[i], found)
        return digests, [c or () for c in cached], rule_findings

    def _detect(self, text: str, detectors: Sequence[Detector]) -> DetectorFindings:
        findings: list[Finding] = []
        for start, end, own_from, own_to in chunks(len(text)):
            piece = text[start:end] if (start, end) != (0, len(text)) else text
            for detector in detectors:
                for finding in detector.detect(piece):
                    if own_from <= finding.start + start < own_to:
                        findings.append(finding.shifted(start) if start else finding)
        if len(findings) > 1:
            findings = _drop_shadowed(findings)
        return tuple(findings)

    def _action(self, findings: Sequence[Finding]) -> Action:
        action = Action.ALLOW
        for finding in findings:
            candidate = self.actions.get(finding.category, Action.LOG)
            if SEVERITY[candidate] > SEVERITY[action]:
                action = candidate
        return action

    def _redact(self, text: str, findings: Sequence[Finding]) -> str:
        if self._redactor is None:
            self._redactor = Redactor()
        redactable = [f for f in findings if self.actions.get(f.category) is Action.REDACT]
        return self._redactor.redact(text, redactable)

    async def _record(
        self, caller: Caller, direction: Direction, action: Action, findings: Sequence[Finding], content_sha256: str
    ) -> str:
        decision = Decision(
            id=self._decisions.new_id(),
            create_time=datetime.now(UTC),
            organisation=caller.organisation,
            principal=caller.principal,
            direction=direction,
            action=action,
            findings=tuple(findings),
            content_sha256=content_sha256,
            request_id=caller.request_id,
        )
        await self._decisions.record(decision)
        return decision.name

    def _cache_get(self, key: str) -> DetectorFindings | None:
        found = self._cache.get(key)
        if found is None:
            self.cache_misses += 1
            return None
        self.cache_hits += 1
        self._cache.move_to_end(key)
        return found

    def _cache_put(self, key: str, findings: DetectorFindings) -> None:
        if self._cache_size <= 0:
            return
        self._cache[key] = findings
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def _ruleset(self, organisation: str) -> RuleSet:
        version = self._rules.version(organisation)
        cached = self._compiled.get(organisation)
        if cached is not None and (cached[0] == version or time.monotonic() < self._reload_after.get(organisation, 0)):
            return cached[1]
        try:
            ruleset = await self._compile(organisation, version)
        except Exception as error:
            if isinstance(error, DomainError):
                raise
            # The database is down: keep enforcing the rules last loaded, and
            # try again a second later rather than on every request.
            if cached is None:
                raise Unavailable(
                    "the firewall rules cannot be loaded", reason="RULES_UNAVAILABLE", retry_after_seconds=1
                ) from error
            if organisation not in self._reload_after:
                log.warning("rules for an organisation could not be reloaded (%s); enforcing the last loaded", error)
            self._reload_after[organisation] = time.monotonic() + RELOAD_BACKOFF_SECONDS
            return cached[1]
        self._reload_after.pop(organisation, None)
        self._compiled[organisation] = (version, ruleset)
        return ruleset

    async def _compile(self, organisation: str, version: int) -> RuleSet:
        """The organisation's rules compiled, once however many calls ask at
        once; many rules off the event loop (10,000 take a quarter second)."""
        lock = self._compiling.setdefault(organisation, asyncio.Lock())
        async with lock:
            cached = self._compiled.get(organisation)
            if cached is not None and cached[0] == version:
                return cached[1]  # compiled while this call waited
            rules = await self._rules.list_rules(organisation)
            if len(rules) > COMPILE_OFF_LOOP_RULES:
                return await asyncio.to_thread(RuleSet, rules, self.embedder)
            return RuleSet(rules, self.embedder)


class _OutputWindow:
    """Scans windows of a streamed answer: detectors (uncached: windows do
    not repeat) and the organisation's block rules for output."""

    def __init__(self, engine: FirewallEngine, ruleset: RuleSet) -> None:
        self._engine = engine
        self._ruleset = ruleset
        self._holds = engine._hold_policy()
        tails = rule_tails(ruleset) if ruleset.blocks(Direction.OUTPUT) else None
        self._tails = tails if tails else None
        self._detectors = [(d, detector_trigger(d)) for d in engine._detectors]

    def findings(self, window: str, start: int = 0) -> list[Finding]:
        """Findings in the window; a detector whose findings all need a
        character that `window[start:]` (the text not yet released) lacks is
        not run: nothing it could find there would matter."""
        found: list[Finding] = []
        for detector, trigger in self._detectors:
            if trigger is None or trigger.search(window, start) is not None:
                found.extend(detector.detect(window))
        if len(found) > 1:
            found = _drop_shadowed(found)
        if self._ruleset:
            rule_findings = self._ruleset.evaluate(window, Direction.OUTPUT)
            found.extend(f for f in rule_findings if f.category is Category.BLOCK_RULE)
        return found

    def hold_start(self, window: str, floor: int) -> int:
        start = self._holds.hold_start(window, floor)
        if self._tails is not None and start > floor:
            start = min(start, self._tails.hold_start(window, floor))
        return start

    def action(self, finding: Finding) -> Action:
        return self._engine.actions.get(finding.category, Action.LOG)

    def redact(self, text: str, findings: list[Finding]) -> str:
        return self._engine._redact(text, findings)


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class FirewallSettings(Protocol):
    """The settings `build_firewall` reads (pointsman.server.settings.Settings)."""

    @property
    def firewall_enabled(self) -> bool: ...
    @property
    def firewall_block_on_violation(self) -> bool: ...
    @property
    def firewall_pii_action(self) -> str: ...
    @property
    def firewall_secret_action(self) -> str: ...
    @property
    def firewall_toxicity_action(self) -> str: ...
    @property
    def firewall_pii_entities(self) -> Sequence[str]: ...
    @property
    def firewall_pii_min_score(self) -> float: ...
    @property
    def firewall_spacy_model(self) -> str | None: ...
    @property
    def firewall_toxicity_threshold(self) -> float: ...
    @property
    def firewall_redaction_style(self) -> str: ...
    @property
    def firewall_redaction_salt(self) -> _Secret | None: ...
    @property
    def firewall_scan_cache_size(self) -> int: ...


def build_firewall(
    rules: RuleStore, decisions: DecisionStore, settings: FirewallSettings, embedder: Embedder | None = None
) -> FirewallEngine:
    """The engine with the detectors and actions the settings ask for; a
    detector whose action is "off" is not loaded at all."""
    from .detectors.pii import DEFAULT_ENTITIES, PiiDetector
    from .detectors.secrets import SecretDetector
    from .detectors.toxicity import ToxicityDetector

    chosen = {
        Category.PII: settings.firewall_pii_action,
        Category.SECRET: settings.firewall_secret_action,
        Category.TOXICITY: settings.firewall_toxicity_action,
    }
    actions = {category: Action(value) for category, value in chosen.items() if value != "off"}
    detectors: list[Detector] = []
    if settings.firewall_enabled:
        if Category.PII in actions:
            detectors.append(
                PiiDetector(
                    settings.firewall_pii_entities or DEFAULT_ENTITIES,
                    min_score=settings.firewall_pii_min_score,
                    spacy_model=settings.firewall_spacy_model,
                )
            )
        if Category.SECRET in actions:
            detectors.append(SecretDetector())
        if Category.TOXICITY in actions:
            detectors.append(ToxicityDetector(settings.firewall_toxicity_threshold))
    salt = settings.firewall_redaction_salt
    engine = FirewallEngine(
        rules,
        decisions,
        enabled=settings.firewall_enabled,
        block_on_violation=settings.firewall_block_on_violation,
        detectors=detectors,
        actions=actions,
        redactor=Redactor(
            RedactionStyle(settings.firewall_redaction_style),
            salt.get_secret_value().encode() if salt is not None else None,
        ),
        cache_size=settings.firewall_scan_cache_size,
    )
    engine.embedder = embedder
    return engine


def chunks(length: int) -> list[tuple[int, int, int, int]]:
    """(start, end, own_from, own_to) pieces a long text is scanned in.

    Each piece overlaps the next by CHUNK_OVERLAP characters; a finding
    belongs to the piece whose owned range holds its start, so one that is
    at most CHUNK_OVERLAP/2 long is found whole exactly once. Pieces keep
    every single regex call short: a worker thread holding the GIL through
    one call over 400 KB would stall the event loop for tens of ms."""
    if length <= CHUNK_CHARS:
        return [(0, length, 0, length)]
    step = CHUNK_CHARS - CHUNK_OVERLAP
    half = CHUNK_OVERLAP // 2
    pieces = []
    for start in range(0, length, step):
        end = min(length, start + CHUNK_CHARS)
        own_from = start + half if start else 0
        own_to = start + step + half if end < length else length
        pieces.append((start, end, own_from, own_to))
        if end == length:
            break
    return pieces


def evaluate_rules(ruleset: RuleSet, text: str, direction: Direction) -> DetectorFindings:
    """RuleSet.evaluate over the same overlapping pieces as the detectors, so
    a user's case-insensitive regex over a 400 KB prompt is not one long call
    either. A block rule is reported once, at its first match; NOT_ALLOWED
    only when no piece matched an allow rule."""
    pieces = chunks(len(text))
    if len(pieces) == 1:
        return tuple(ruleset.evaluate(text, direction))
    by_rule: dict[str, Finding] = {}
    allowed_somewhere = False
    for start, end, _, _ in pieces:
        piece_allowed = True
        for finding in ruleset.evaluate(text[start:end], direction):
            if finding.category is Category.NOT_ALLOWED:
                piece_allowed = False
                continue
            shifted = finding.shifted(start)
            if finding.rule not in by_rule or shifted.start < by_rule[finding.rule].start:
                by_rule[finding.rule] = shifted
        allowed_somewhere = allowed_somewhere or piece_allowed
    found = sorted(by_rule.values(), key=lambda f: f.start)
    if not allowed_somewhere:
        found.append(Finding(Category.NOT_ALLOWED, start=0, end=len(text)))
    return tuple(found)


def _drop_shadowed(findings: list[Finding]) -> list[Finding]:
    """A secret is not also PII: `user@host` inside a connection string, or
    digits inside a key, are dropped when a secret covers them."""
    secrets = [f for f in findings if f.category is Category.SECRET]
    if not secrets:
        return findings
    return [
        f
        for f in findings
        if f.category is not Category.PII or not any(s.start < f.end and f.start < s.end for s in secrets)
    ]


# A text of a prompt: its message's index, the text part's (-1: the content), and the text.
_TextSlot = tuple[int, int, str]


def _text_slots(messages: Sequence[Message]) -> list[_TextSlot]:
    slots: list[_TextSlot] = []
    for index, message in enumerate(messages):
        slots.append((index, -1, message.content))
        if message.parts:
            slots.extend((index, j, p.text) for j, p in enumerate(message.parts) if type(p) is TextPart)
    return slots


def _with_texts(messages: Sequence[Message], slots: Sequence[_TextSlot], texts: Sequence[str]) -> tuple[Message, ...]:
    """The messages with the slots' texts replaced by `texts` (redacted); images stay as they are."""
    edits: dict[int, dict[int, str]] = {}
    for (index, position, old), new in zip(slots, texts, strict=True):
        if new != old:
            edits.setdefault(index, {})[position] = new
    out = []
    for index, message in enumerate(messages):
        changed = edits.get(index)
        if not changed:
            out.append(message)
            continue
        parts = tuple(TextPart(changed[j]) if j in changed else p for j, p in enumerate(message.parts))
        out.append(replace(message, content=changed.get(-1, message.content), parts=parts))
    return tuple(out)


def _sha256(text: str) -> str:
    # surrogatepass: a str from inside the process may hold lone surrogates.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def check_content(text: str, errors: ViolationCollector, path: str = "text") -> None:
    """Adds a violation when the content is binary rather than text: a NUL,
    or more than MAX_CONTROL_SHARE of control characters."""
    if not text:
        return
    if "\x00" in text:
        errors.add(path, "must be text; it contains NUL characters (binary content)")
        return
    if len(_CONTROL.findall(text)) > len(text) * MAX_CONTROL_SHARE:
        errors.add(path, "must be text; it is mostly control characters (binary content)")


def blocked_error(verdict: Verdict) -> ContentBlocked:
    return ContentBlocked(
        "the firewall blocked this content",
        metadata={
            "categories": ",".join(verdict.categories),
            "rules": ",".join(verdict.rules),
            "decision": verdict.decision,
        },
    )
