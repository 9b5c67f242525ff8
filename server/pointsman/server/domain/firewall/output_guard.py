"""Scans a model's answer as it streams, with constant work per chunk.

The last `holdback` characters of the answer are held back, so a finding can
be redacted (or the answer cut) before its text reaches the client. Each new
chunk is scanned together with the held text and a little released context
(for the context words detectors look for); the whole answer is never
rescanned. A finding longer than the hold-back (a PEM block, a long key) may
have started to reach the client before it can be recognised: a block then
cuts the answer at that point; a redaction covers the part still held.

Allow rules judge prompts, not answers: an answer is checked against the
detectors and the organisation's block rules for output."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from .verdict import ALLOWED, Action, Finding, Verdict

# Released text rescanned with each window: long enough to hold a whole key
# that straddles what was already sent (a GitHub token is 40 characters).
CONTEXT_CHARS = 96
# With a hold-back, scan once this much new text has gathered, not per token.
SCAN_EVERY_CHARS = 16


@dataclass(frozen=True, slots=True)
class GuardStep:
    """What to send now, and whether the answer must stop here."""

    release: str
    stop: bool = False


class OutputGuard:
    def __init__(self, scan_window: WindowScanner, holdback: int) -> None:
        self._scan = scan_window
        self._holdback = holdback
        self._released_tail = ""  # the end of what was released, for context
        self._released_chars = 0
        self._held = ""
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
        if self._holdback and len(self._held) < self._holdback + SCAN_EVERY_CHARS:
            return _HOLD  # nothing could be released yet: no need to scan
        return self._step(final=False)

    def finish(self) -> GuardStep:
        """Releases what is still held, after a last scan."""
        return self._step(final=True)

    def _step(self, *, final: bool) -> GuardStep:
        context = self._released_tail
        window = context + self._held
        base = self._released_chars - len(context)  # answer position of window[0]
        found = [f for f in self._scan.findings(window) if f.end > len(context)]
        cut = len(window) if final else max(len(context), len(window) - self._holdback)
        blocking = [f for f in found if self._scan.action(f) is Action.BLOCK]
        if blocking:
            first = min(blocking, key=lambda f: f.start)
            self._note(blocking, base, Action.BLOCK)
            release = window[len(context) : max(len(context), first.start)]
            self._release(release)
            return GuardStep(release, stop=True)
        redactable = [f for f in found if self._scan.action(f) is Action.REDACT]
        # Never release part of a finding: stop the release before it.
        for finding in redactable:
            if finding.start < cut < finding.end:
                cut = max(len(context), finding.start)
        inside = [f for f in redactable if f.end <= cut]
        logged = [f for f in found if f.end <= cut and self._scan.action(f) is Action.LOG]
        self._note(inside, base, Action.REDACT)
        self._note(logged, base, Action.LOG)
        released_part = window[len(context) : cut]
        if inside:
            local = [_clip(f.shifted(-len(context)), len(released_part)) for f in inside]
            released_part = self._scan.redact(released_part, local)
        self._held = window[cut:]
        self._release(released_part)
        return GuardStep(released_part)

    def _release(self, text: str) -> None:
        self._hash.update(text.encode("utf-8", "surrogatepass"))
        self._released_chars += len(text)
        self._released_tail = (self._released_tail + text)[-CONTEXT_CHARS:]

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
    and block rules for output), the action for a finding, and redaction."""

    def findings(self, window: str) -> list[Finding]: ...
    def action(self, finding: Finding) -> Action: ...
    def redact(self, text: str, findings: list[Finding]) -> str: ...
