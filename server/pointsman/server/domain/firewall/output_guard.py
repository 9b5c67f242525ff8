"""Scans a model's answer as it streams; text leaves as soon as it can no
longer be part of a finding.

Each new chunk is scanned together with the text still held and a little
released context (for context words). What is released is everything before
the earliest of:

- the tail that could still grow into a finding (`holdback.HoldPolicy`: the
  open word, a number run, a PEM header or block, an open quoted value...),
  and the tail that could still start a match of a block rule for output
  (`rule_tails`);
- the start of a finding that is not settled yet: one that ends fewer than
  SETTLE_CHARS before the end of the text so far, since more text may still
  extend it or undo it (a context word after a number, a longer key, a
  sentence that goes on).

So prose (words closed by a space) leaves chunk for chunk, and a finding is
decided on the same text a scan of the whole answer would see. A settled
block finding cuts the answer before it; a redactable one is replaced in the
released text. A tail held longer than `max_hold` characters (a hostile rule,
a runaway quoted string) is released in part, as the old fixed hold-back did:
a finding longer than that may then start to leave before it is recognised.

Allow rules judge prompts, not answers: an answer is checked against the
detectors and the organisation's block rules for output."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from .holdback import SETTLE_CHARS
from .verdict import ALLOWED, Action, Finding, Verdict

# Released text rescanned with each window: context words (48 characters
# before a match) and keys that straddle what was already sent.
CONTEXT_CHARS = 96
# Held text longer than this is rescanned only once it has grown by an eighth,
# so a long hold (a PEM block being redacted) costs O(n log n), not O(n²).
RESCAN_FREE_CHARS = 256
# Findings of these types are decided once seen: more text cannot undo them.
_FINAL_ON_SIGHT = frozenset(("PRIVATE_KEY",))
# A hold this long means the caller takes the answer whole.
WHOLE_ANSWER_CHARS = 1 << 40


@dataclass(frozen=True, slots=True)
class GuardStep:
    """What to send now, and whether the answer must stop here."""

    release: str
    stop: bool = False


class OutputGuard:
    """One streamed answer's guard. `max_hold`: the most characters held
    while a finding may still be forming (0: release at once; findings are
    then only recorded, or cut the answer); `whole`: hold everything and
    scan once at the end (the caller takes the answer whole)."""

    def __init__(self, scan_window: WindowScanner, max_hold: int, *, whole: bool = False) -> None:
        self._scan = scan_window
        self._max_hold = max_hold
        self._whole = whole or max_hold >= WHOLE_ANSWER_CHARS
        self._released_tail = ""  # the end of what was released, for context
        self._released_chars = 0
        self._held = ""
        self._scanned_held = 0  # len(self._held) at the last scan
        self._findings: list[Finding] = []  # positions in the whole answer
        self._action = Action.ALLOW
        self._hash = hashlib.sha256()

    @property
    def verdict(self) -> Verdict:
        """The verdict so far; ALLOWED when nothing was found."""
        if not self._findings:
            return ALLOWED
        return Verdict(self._action, tuple(self._findings))

    @property
    def held_chars(self) -> int:
        return len(self._held)

    @property
    def content_sha256(self) -> str:
        return self._hash.hexdigest()

    def feed(self, text: str) -> GuardStep:
        self._held += text
        if self._whole:
            return _HOLD
        held = len(self._held)
        if held > RESCAN_FREE_CHARS and held - self._scanned_held < held >> 3:
            return _HOLD  # a long hold grows; nothing new can leave before the next scan
        return self._step(final=False)

    def finish(self) -> GuardStep:
        """Releases what is still held, after a last scan."""
        return self._step(final=True)

    def _step(self, *, final: bool) -> GuardStep:
        context = self._released_tail
        window = context + self._held if context else self._held
        start = len(context)  # window position of the first held character
        base = self._released_chars - start  # answer position of window[0]
        length = len(window)
        scan = self._scan
        found = [f for f in scan.findings(window, start) if f.end > start]
        if final or not self._max_hold:
            hold = length
            settled = found
        else:
            hold = scan.hold_start(window, start)
            settle_at = length - SETTLE_CHARS
            settled = []
            for finding in found:
                if finding.end <= settle_at or finding.type in _FINAL_ON_SIGHT:
                    settled.append(finding)
                elif finding.start < hold:
                    hold = max(start, finding.start)
        cut = hold
        overflow = not final and length - cut > self._max_hold
        if overflow:
            # Held too long: what lies before the limit is decided now, and a
            # finding already seen there is acted on whole.
            cut = length - self._max_hold
            settled = [f for f in found if f.start < cut or f in settled]
        blocking = [f for f in settled if scan.action(f) is Action.BLOCK]
        if blocking:
            first = min(blocking, key=lambda f: f.start)
            self._note(blocking, base, Action.BLOCK)
            release = window[start : max(start, first.start)]
            self._release(release)
            self._held = ""
            return GuardStep(release, stop=True)
        redactable = [f for f in settled if scan.action(f) is Action.REDACT]
        for finding in redactable:
            if finding.start < cut < finding.end:
                # Never release part of a finding: stop before it, or past it when forced.
                cut = finding.end if overflow else max(start, finding.start)
        inside = [f for f in redactable if f.end <= cut]
        logged = [f for f in found if f.end <= cut and scan.action(f) is Action.LOG]
        self._note(inside, base, Action.REDACT)
        self._note(logged, base, Action.LOG)
        released_part = window[start:cut]
        if inside:
            local = [_clip(f.shifted(-start), len(released_part)) for f in inside]
            released_part = scan.redact(released_part, local)
        self._held = window[cut:]
        self._scanned_held = len(self._held)
        if released_part:
            self._release(released_part)
            return GuardStep(released_part)
        return _HOLD

    def _release(self, text: str) -> None:
        self._hash.update(text.encode("utf-8", "surrogatepass"))
        self._released_chars += len(text)
        tail = self._released_tail + text if len(text) < CONTEXT_CHARS else text
        self._released_tail = tail[-CONTEXT_CHARS:] if len(tail) > CONTEXT_CHARS else tail

    def _note(self, findings: list[Finding], base: int, action: Action) -> None:
        for finding in findings:
            self._findings.append(finding.shifted(base))
        if findings and _SEVERITY[action] > _SEVERITY[self._action]:
            self._action = action


_HOLD = GuardStep("")


def _clip(finding: Finding, length: int) -> Finding:
    start = max(0, finding.start)
    return Finding(finding.category, finding.type, finding.rule, start, min(finding.end, length), finding.score)


_SEVERITY = {Action.ALLOW: 0, Action.LOG: 1, Action.REDACT: 2, Action.BLOCK: 3}


class WindowScanner(Protocol):
    """What the guard needs from the engine: findings in a window (detectors
    and block rules for output), where the window's tail must wait, the
    action for a finding, and redaction."""

    def findings(self, window: str, start: int = 0) -> list[Finding]: ...
    def hold_start(self, window: str, floor: int) -> int: ...
    def action(self, finding: Finding) -> Action: ...
    def redact(self, text: str, findings: list[Finding]) -> str: ...
