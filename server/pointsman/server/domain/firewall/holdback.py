"""How much of a streamed answer's tail must wait: the shortest suffix that
could still grow into a finding, per kind of detector.

The output guard releases everything before `HoldPolicy.hold_start`. What
is held is a tail that more text could still turn into (part of) a finding:

- the open word (no whitespace after it yet): an e-mail's local part, a key
  after its prefix (`sk-`, `AKIA`, `ghp_`, `xox`...), a word a rule or the
  toxicity model would read differently once it is longer;
- a number run (digit groups joined by single separators: phones, cards,
  IBANs, SSNs...) until SETTLE_CHARS have followed it, since a label after
  it (`(office)`, `fax`) or a context word can still make it a finding;
- a PEM header being written, or a whole block until its END line;
- a quoted value after an assignment (`password = "two words"`);
- with toxicity redacted (not blocked), the open sentence.

Every kind ends on a character that can be checked cheaply, so ordinary prose
(words closed by a space) is held for no time at all. Findings already found
in the window are held by the guard itself until they are settled."""

from __future__ import annotations

import re
from collections.abc import Callable

# A finding, or a number, is final once this many characters have followed
# it: the detectors read context at most 24 characters after a match.
SETTLE_CHARS = 32
# An unclosed quoted value is held this long at most (the password rules
# read quoted values of up to 128 characters).
MAX_QUOTED_CHARS = 130
# A sentence is scored in pieces of at most 400 characters (toxicity).
MAX_SENTENCE_CHARS = 400

_PEM_BEGIN = "-----BEGIN "
_PEM_END = "-----END "
# The header of a PEM private key block, as the secrets detector reads it.
_PEM_HEADER = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ ){0,3})PRIVATE KEY(?: BLOCK)?-----")
# An assignment's opening quote: `= "`, `: '`, `=> \``.
_OPEN_QUOTE = re.compile(r"""(?:=|:|=>)\s*["'`]""")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s)|\n")
# What may sit between two groups of one number: `212-555`, `(555) 010`, `+1 `.
_NUMBER_GAP = frozenset(" .-/()+")
_ALNUM = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_EXTENSION_WORDS = frozenset(("x", "ext", "extension"))

TailRule = Callable[[str, int], int]

# Every default PII entity's span holds one of these: "@" (e-mail), ":" or
# "-" (IPv6, MAC), or a number-like word (see `_numberish`; IPv4 is digit
# groups, a wallet a long word with a digit). `word1` is none of them. URL,
# DATE_TIME, UUID and names may be: with those, PII is always scanned.
_PII_TRIGGER = re.compile(
    r"[@:\-]"
    # a word of digits and upper-case letters (phones, cards, SSNs, licences, passports)
    r"|(?<![A-Za-z0-9])[A-Z0-9]*[0-9][A-Z0-9]*(?![A-Za-z0-9])"
    # a short group (an IBAN's `de89`), seven digits in a row (a DEA number)
    r"|(?<![A-Za-z0-9])(?=[A-Za-z0-9]{1,4}(?![A-Za-z0-9]))[A-Za-z]*[0-9]|[0-9]{7}"
    # a long word with a digit (a wallet address)
    r"|(?=[A-Za-z0-9]{25})[A-Za-z]*[0-9]"
)
_TRIGGERED_PII = frozenset(
    (
        "CREDIT_CARD",
        "CRYPTO",
        "EMAIL_ADDRESS",
        "IBAN_CODE",
        "IP_ADDRESS",
        "MAC_ADDRESS",
        "MEDICAL_LICENSE",
        "PHONE_NUMBER",
        "UK_NHS",
        "US_BANK_NUMBER",
        "US_DRIVER_LICENSE",
        "US_ITIN",
        "US_PASSPORT",
        "US_SSN",
    )
)


def detector_trigger(detector: object) -> re.Pattern[str] | None:
    """A character every finding of the detector contains, when there is
    one: a held tail without it needs no scan by that detector. None: always scan."""
    entities = getattr(detector, "entities", None)
    if isinstance(entities, frozenset) and entities <= _TRIGGERED_PII and getattr(detector, "_ner", None) is None:
        return _PII_TRIGGER
    return None


class HoldPolicy:
    """The tail rules for the detectors a deployment runs. `hold_start`
    returns the earliest position at or after `floor` that must wait; the
    length of the window when nothing needs to."""

    def __init__(self, *, words: bool, numbers: bool, secrets: bool, sentences: bool) -> None:
        rules: list[TailRule] = []
        if words:
            rules.append(open_word_start)
        if numbers:
            rules.append(number_run_start)
        if secrets:
            rules.append(pem_start)
            rules.append(quoted_value_start)
        if sentences:
            rules.append(open_sentence_start)
        self._rules = tuple(rules)

    def hold_start(self, window: str, floor: int) -> int:
        start = len(window)
        for rule in self._rules:
            position = rule(window, floor)
            if position < start:
                start = position
                if start <= floor:
                    return floor
        return start


def open_word_start(window: str, floor: int) -> int:
    """The start of the last word when no whitespace follows it yet."""
    index = len(window)
    while index > floor and not window[index - 1].isspace():
        index -= 1
    return index


def _has_digit(text: str) -> bool:
    return any(c in "0123456789" for c in text)


def _numberish(token: str) -> bool:
    """Whether a word can be (part of) a number-like finding: digits with
    upper-case letters only (phones, cards, licence and passport numbers),
    a short group (`DE89`, an IBAN's `AB12`), or seven digits in a row (a DEA
    number's tail). `word1` or `v2beta3` cannot."""
    if not _has_digit(token):
        return False
    if len(token) <= 4 or not any(c.islower() for c in token):
        return True
    run = 0
    for c in token:
        run = run + 1 if c in "0123456789" else 0
        if run >= 7:
            return True
    return False


def _bridges(token: str) -> bool:
    """Words that may sit inside a number run: numbers, IBAN letter groups, extensions."""
    return _numberish(token) or token.lower() in _EXTENSION_WORDS or (token.isupper() and len(token) <= 4)


def number_run_start(window: str, floor: int) -> int:
    """The start of the number run that ends fewer than SETTLE_CHARS before
    the end of the window: number-like words joined by at most two
    separators, held until what follows them is known (a label such as
    `(office)` or a context word can still make them a finding)."""
    end = len(window)
    low = max(floor, end - SETTLE_CHARS)
    last = end - 1
    while True:
        while last >= low and window[last] not in "0123456789":
            last -= 1
        if last < low:
            return end
        token_start, token_end = last, last + 1
        while token_start > 0 and window[token_start - 1] in _ALNUM:
            token_start -= 1
        while token_end < end and window[token_end] in _ALNUM:
            token_end += 1
        if _numberish(window[token_start:token_end]):
            break
        last = token_start - 1
    # Walk back over the run, word by word.
    start = token_start
    index = token_start - 1
    while True:
        gap_end = index
        while index >= 0 and gap_end - index < 2 and window[index] in _NUMBER_GAP:
            index -= 1
        if index < 0 or index == gap_end or window[index] not in _ALNUM:
            break
        word_end = index + 1
        while index >= 0 and window[index] in _ALNUM:
            index -= 1
        if not _bridges(window[index + 1 : word_end]):
            break
        start = index + 1
    # A bracket or a plus opening the number belongs to it.
    while start > floor and window[start - 1] in "+(":
        start -= 1
    return max(floor, start)


def pem_start(window: str, floor: int) -> int:
    """A PEM header being written, or a block whose END line has not come."""
    end = len(window)
    begin = window.rfind(_PEM_BEGIN, max(0, floor - 64))
    if begin >= 0 and window.find(_PEM_END, begin) < 0:
        return max(floor, begin)
    dash = window.find("-", max(floor, end - 64))
    while dash >= 0:
        tail = window[dash:]
        if _could_open_pem(tail):
            return dash
        dash = window.find("-", dash + 1)
    return end


def _could_open_pem(tail: str) -> bool:
    """Whether `tail` is the start of a PEM header, cut short by the window's end."""
    if len(tail) <= len(_PEM_BEGIN):
        return _PEM_BEGIN.startswith(tail)
    if not tail.startswith(_PEM_BEGIN) or "\n" in tail:
        return False
    # Up to three words, then PRIVATE KEY [BLOCK]-----: all upper case, digits, spaces, dashes.
    return len(tail) < 80 and all(c.isupper() or c.isdigit() or c in " -" for c in tail[len(_PEM_BEGIN) :])


def quoted_value_start(window: str, floor: int) -> int:
    """An assignment's quoted value whose closing quote has not come."""
    end = len(window)
    line_start = window.rfind("\n", floor, end) + 1
    low = max(floor, line_start, end - MAX_QUOTED_CHARS)
    if "=" not in window[low:] and ":" not in window[low:]:
        return end
    for match in _OPEN_QUOTE.finditer(window, low):
        quote_at = match.end() - 1
        if window.find(window[quote_at], quote_at + 1) < 0:
            return quote_at
    return end


def open_sentence_start(window: str, floor: int) -> int:
    """The start of the sentence still being written (for a toxicity action
    that redacts, whose span is the whole sentence)."""
    end = len(window)
    start = max(floor, end - MAX_SENTENCE_CHARS)
    for boundary in _SENTENCE_END.finditer(window, start):
        start = boundary.end()
    return start if start < end else end
