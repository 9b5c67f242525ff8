"""PII by pattern, offline: Presidio's recognizers called directly (their
patterns, checksums and invalidation), plus our own credit-card and phone
recognizers, weak patterns gated on context words.

Presidio's AnalyzerEngine costs ~8-11 ms per KB here, most of it in
phonenumbers' matcher and in recognizers that cannot match the text at hand.
This module keeps Presidio's knowledge and drops that cost: every recognizer
has a cheap prefilter (a character it needs, or a context word it requires
anywhere in the text), and phone numbers are found by one regex and only the
candidates are checked. With a spaCy model installed (`spacy_model`), its
named entities add PERSON and LOCATION."""

from __future__ import annotations

import ipaddress
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
import tldextract

from ..verdict import Category, Finding
from .base import keep_strongest, word_regex
from .presidio_patterns import PatternRecognizer
from .presidio_patterns import recognizer as presidio

# What a default deployment looks for. URL, DATE_TIME and UUID are not
# personal data on their own and are noisy in prompts; they can be enabled.
DEFAULT_ENTITIES: tuple[str, ...] = (
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
PATTERN_ENTITIES: frozenset[str] = frozenset((*DEFAULT_ENTITIES, "URL", "DATE_TIME", "UUID"))
# Entities a spaCy model adds; they need a model, see `spacy_model`.
NER_ENTITIES: frozenset[str] = frozenset(("PERSON", "LOCATION", "NRP"))
ALL_ENTITIES: frozenset[str] = PATTERN_ENTITIES | NER_ENTITIES

# When two findings overlap, the more specific (checksummed, structured)
# entity wins: a credit card is not also a phone number, an e-mail is not a URL.
PRIORITY: dict[str, int] = {
    "CREDIT_CARD": 10,
    "IBAN_CODE": 10,
    "EMAIL_ADDRESS": 10,
    "CRYPTO": 9,
    "US_ITIN": 9,
    "IP_ADDRESS": 8,
    "MAC_ADDRESS": 8,
    "US_SSN": 8,
    "PHONE_NUMBER": 6,
    "UK_NHS": 5,
    "US_PASSPORT": 4,
    "US_DRIVER_LICENSE": 4,
    "MEDICAL_LICENSE": 4,
    "US_BANK_NUMBER": 3,
    "PERSON": 3,
    "LOCATION": 3,
    "NRP": 2,
    "UUID": 2,
    "URL": 1,
    "DATE_TIME": 0,
}

# Context words are looked for this many characters before and after a match.
CONTEXT_BEFORE = 48
CONTEXT_AFTER = 24
# What a weak pattern scores when its context is present.
CONTEXT_SCORE = 0.75
# An anchored pattern is searched this far around each anchor character
# (an e-mail's local part is at most 64 characters, its domain 255).
ANCHOR_BEFORE = 64
ANCHOR_AFTER = 256

Span = tuple[int, int, float]


class _Recognizer:
    entity: str

    def find(self, text: str, lowered: str) -> Iterator[Span]:  # pragma: no cover - interface
        """Spans in `text`; `lowered` is text.lower() when that keeps its
        length (for cheap substring prefilters), else text itself."""
        raise NotImplementedError


class _Context:
    """Context words: a substring test on the lower-cased text says whether
    any can be near a match at all; a whole-word regex checks the window."""

    def __init__(self, words: Sequence[str]) -> None:
        self.regex = word_regex(words) if words else None
        # Starting with a literal lets `re` skip ahead with a fast search;
        # a leading lookbehind would test every position instead.
        alternatives = sorted({w.lower() for w in words}, key=len, reverse=True)
        self._literal = re.compile("|".join(re.escape(w) for w in alternatives)) if words else None

    def anywhere(self, lowered: str) -> bool:
        """Whether a context word occurs anywhere as a whole word."""
        if self._literal is None:
            return False
        for match in self._literal.finditer(lowered):
            start, end = match.span()
            if (start == 0 or not lowered[start - 1].isalnum()) and (end == len(lowered) or not lowered[end].isalnum()):
                return True
        return False

    def near(self, text: str, start: int, end: int) -> bool:
        return self.regex is not None and _near(self.regex, text, start, end)


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    score: float
    needs_context: bool


class _PresidioPatterns(_Recognizer):
    """A Presidio PatternRecognizer's patterns, checksums and invalidation,
    run with the stdlib `re` engine and our context rule: a pattern marked
    weak only counts when a context word is near it.

    `anchor` (a character every match contains, such as "@") limits the
    regex to windows around that character instead of the whole text."""

    def __init__(
        self,
        recognizer: PatternRecognizer,
        *,
        weak: Callable[[str, float], bool] = lambda name, score: score < 0.5,
        context: Sequence[str] | None = None,
        flags: int = re.IGNORECASE | re.ASCII,
        prefilter: re.Pattern[str] | None = None,
        anchor: str | None = None,
        validate: Callable[[str], bool | None] | None = None,
        trim_groups: bool = False,
        standalone: bool = False,
        reject_after: re.Pattern[str] | None = None,
    ) -> None:
        self.entity = recognizer.supported_entities[0]
        self._validate = validate or recognizer.validate_result
        self._invalidate = recognizer.invalidate_result
        self._context = _Context(context if context is not None else recognizer.context or ())
        self._trim_groups = trim_groups
        self._standalone = standalone
        # Words that, right before a match, say it is something else.
        self._reject_after = reject_after
        patterns: list[Any] = recognizer.patterns
        self._patterns = [_Pattern(re.compile(p.regex, flags), p.score, weak(p.name, p.score)) for p in patterns]
        self._prefilter = prefilter
        self._anchor = anchor

    def find(self, text: str, lowered: str) -> Iterator[Span]:
        if self._anchor is not None and self._anchor not in text:
            return
        if self._prefilter is not None and self._prefilter.search(text) is None:
            return
        # Weak patterns are skipped outright when no context word appears
        # anywhere in the text: most texts never pay for them. Looked for
        # once, and only if a weak pattern comes up.
        context_anywhere: bool | None = None
        seen: set[tuple[int, int]] = set()
        for pattern in self._patterns:
            if pattern.needs_context:
                if context_anywhere is None:
                    context_anywhere = self._context.anywhere(lowered)
                if not context_anywhere:
                    continue
            for match in self._matches(pattern.regex, text):
                span = self._accept(text, match, pattern)
                if span is not None and span[:2] not in seen:
                    seen.add(span[:2])
                    yield span

    def _matches(self, regex: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
        if self._anchor is None:
            yield from regex.finditer(text)
            return
        position = text.find(self._anchor)
        while position >= 0:
            yield from regex.finditer(text, max(0, position - ANCHOR_BEFORE), position + ANCHOR_AFTER)
            position = text.find(self._anchor, position + 1)

    def _accept(self, text: str, match: re.Match[str], pattern: _Pattern) -> Span | None:
        # IBANs may be followed by a word that looks like one more group
        # ("ES12...06 before"): try the longest span first, then shorter ones
        # ending before each separator. The checksum decides.
        ends = [match.end()]
        if self._trim_groups:
            ends += [match.end(g) for g in range(match.re.groups, 0, -1) if match.end(g) > match.start()]
            ends += [i for i in range(match.end() - 1, match.start(), -1) if text[i] in " -"]
        for end in dict.fromkeys(ends):
            start = match.start()
            value = text[start:end]
            if not value.strip():
                continue
            if self._standalone and _glued(text, start, end):
                continue
            if self._reject_after is not None and self._reject_after.search(text, max(0, start - 16), start):
                continue
            # Context first: a checksum alone does not make ten digits an NHS
            # number (one US phone number in eleven passes it).
            if pattern.needs_context and not self._context.near(text, start, end):
                continue
            valid = self._validate(value)
            if valid is False or self._invalidate(value):
                continue
            score = 1.0 if valid else max(pattern.score, CONTEXT_SCORE) if pattern.needs_context else pattern.score
            return start, end, score
        return None


def _glued(text: str, start: int, end: int) -> bool:
    """True when the match is a piece of a longer number or code: `096-532627`
    inside `+31(0)096-532627` is no SSN."""
    before = text[start - 2 : start] if start >= 2 else text[:start]
    after = text[end : end + 2]
    return bool(
        (before and (before[-1] in "+)(/" or (before[-1] in "-." and before[:1].isalnum())))
        or (after and (after[0] in "(/" or (after[0] in "-." and after[1:2].isalnum())))
    )


def _near(context: re.Pattern[str], text: str, start: int, end: int) -> bool:
    return (
        context.search(text, max(0, start - CONTEXT_BEFORE), start) is not None
        or context.search(text, end, end + CONTEXT_AFTER) is not None
    )


# -- credit cards -------------------------------------------------------------

# Issuer prefixes (IIN ranges) and the lengths each brand issues. Presidio's
# pattern covers 13-17 digits of a few brands; cards of 12, 18 and 19 digits
# (Maestro, 19-digit Visa, UnionPay) and 2-series Mastercard were missed.
_BRANDS: tuple[tuple[tuple[tuple[str, str], ...], tuple[int, ...]], ...] = (
    ((("4", "4"),), (13, 16, 19)),  # Visa
    ((("51", "55"), ("2221", "2720")), (16,)),  # Mastercard
    ((("34", "34"), ("37", "37")), (15,)),  # American Express
    ((("6011", "6011"), ("644", "649"), ("65", "65")), (16, 17, 18, 19)),  # Discover
    ((("35", "35"),), (16, 17, 18, 19)),  # JCB (3528-3589; the rest of 35 is unassigned)
    ((("2131", "2131"), ("1800", "1800")), (15,)),  # JCB, older 15-digit cards
    ((("300", "305"), ("3095", "3095"), ("36", "36"), ("38", "39")), (14, 15, 16, 17, 18, 19)),  # Diners
    ((("62", "62"), ("81", "82")), (16, 17, 18, 19)),  # UnionPay, RuPay
    ((("2200", "2204"),), (16, 17, 18, 19)),  # Mir
    ((("50", "50"), ("56", "69"), ("0604", "0604")), (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro, domestic
)
# The digit comes first (then a look back) so `re` can jump from digit to digit.
_CARD = re.compile(r"\d(?<![\w.+/-]\d)(?:[ -]?\d){11,18}(?![\w]|[.-]\d)", re.ASCII)
_CARD_CONTEXT = word_regex(
    (
        "card",
        "cards",
        "credit",
        "debit",
        "cc",
        "visa",
        "mastercard",
        "maestro",
        "amex",
        "american express",
        "discover",
        "jcb",
        "diners",
        "unionpay",
        "payment",
        "pay",
        "charge",
        "charged",
        "paid",
        "billing",
        "pan",
    )
)


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand_matches(digits: str) -> bool:
    length = len(digits)
    for ranges, lengths in _BRANDS:
        if length in lengths:
            for low, high in ranges:
                if low <= digits[: len(low)] <= high:
                    return True
    return False


class _Emails(_Recognizer):
    """E-mail addresses, found from each "@": the local part is read
    backwards (at most 64 characters), the domain forwards, and the domain
    must end in a public suffix (tldextract's bundled list, no network).
    Presidio's e-mail regex finds the same but backtracks over every word of
    the text (~0.7 ms per 10 KB)."""

    entity = "EMAIL_ADDRESS"
    _domain = re.compile(r"[^\W_](?:[\w-]{0,61}[^\W_])?(?:\.[^\W_](?:[\w-]{0,61}[^\W_])?)+")
    _local = frozenset("!#$%&'*+-/=?^_`{|}~.")

    def __init__(self) -> None:
        self._valid_domain = _email_domain_valid()

    def find(self, text: str, lowered: str) -> Iterator[Span]:
        at = text.find("@")
        while at >= 0:
            start = at
            while start > 0 and at - start < 64 and (text[start - 1].isalnum() or text[start - 1] in self._local):
                start -= 1
            while start < at and text[start] in ".-/=":  # an address does not start with these
                start += 1
            domain = self._domain.match(text, at + 1)
            if start < at and domain is not None:
                end = domain.end()
                value = text[start:end]
                if self._valid_domain(value):
                    yield start, end, 1.0
                at = text.find("@", end)
            else:
                at = text.find("@", at + 1)


class _CreditCards(_Recognizer):
    """12-19 digits, one kind of separator, an issuer prefix that issues that
    length, and a valid Luhn checksum. Cards of 12-13 digits also need a
    payment word nearby: that short, they collide with order numbers."""

    entity = "CREDIT_CARD"

    def find(self, text: str, lowered: str) -> Iterator[Span]:
        for match in _CARD.finditer(text):
            value = match.group()
            if " " in value and "-" in value:
                continue
            digits = value.replace(" ", "").replace("-", "")
            if not digits.isascii() or not card_brand_matches(digits) or not luhn_valid(digits):
                continue
            if len(digits) < 14 and not _near(_CARD_CONTEXT, text, match.start(), match.end()):
                continue
            if len(set(digits)) < 2:
                continue
            yield match.start(), match.end(), 1.0


# -- phone numbers ------------------------------------------------------------

# One regex finds every phone-shaped run on a line: digit groups joined by
# single separators or brackets, an optional leading +, an optional extension.
# Possessive digit runs keep backtracking linear.
_PHONE = re.compile(
    r"""
    (?<![\w+@/.:=\#$€£%-])
    (?P<number>
        (?:\+\s?)?
        \(?\d++\)?
        (?:(?:[ .\-]{1,2}|(?<=\))|(?=\())\(?\d++\)?){0,7}
    )
    (?:\s?(?:x|ext\.?|extension)\s?\d{1,6}(?!\w))?
    (?![\w@]|[.\-:/,]\d)
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)
# North American numbers written the usual ways stand on their own.
_NANP = re.compile(
    r"(?:\+?1[ .\-]?|001[ .\-]?)?(?:\([2-9]\d\d\)[ .\-]?|[2-9]\d\d[ .\-])[2-9]\d\d[ .\-]\d{4}",
)
_DATE_LIKE = re.compile(
    r"(?:(?:19|20)\d\d[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:19|20)?\d\d"
    r"|(?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])[-./](?:19|20)?\d\d)(?!\d)"
)
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")
_IPV4_SHAPE = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")
# Words that say a number is a phone number, near it in the text...
_PHONE_WORDS = word_regex(
    (
        "phone",
        "phones",
        "telephone",
        "tel",
        "mobile",
        "mob",
        "cell",
        "cellphone",
        "call",
        "calls",
        "calling",
        "called",
        "callback",
        "ring",
        "text",
        "texts",
        "texting",
        "sms",
        "whatsapp",
        "viber",
        "fax",
        "contact",
        "reach",
        "reached",
        "reachable",
        "dial",
        "landline",
        "hotline",
        "helpline",
        "voicemail",
        "message",
        "messages",
        "answering",
        "my number",
        "your number",
        "our number",
        "his number",
        "her number",
        "their number",
        "new number",
    )
)
# ...labels a phone number follows in a signature ("T: ...", "Desk: ...")...
_PHONE_LABEL = re.compile(
    r"(?<!\w)(?:t|p|m|f|ph|tel|desk|direct|main|office|work|home|switchboard|daytime|evening)\s*[:.]\s*$",
    re.IGNORECASE,
)
# ...and labels that follow it ("555 0101 (office)", "555 0102 fax").
_PHONE_SUFFIX = re.compile(
    r"[\W_]{0,3}(?:(?:office|fax|mobile|cell|home|work|landline)(?!\w)|\([mhwoc]\))", re.IGNORECASE
)
_EMAIL_AFTER = re.compile(r"[\s,;/|()-]{1,4}[\w.+-]+@[\w-]+\.\w")
_EMAIL_BEFORE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+[\s,;/|()-]{1,4}$")
# Words that say a number is something else. The nearer kind of word wins.
_OTHER_NUMBER_WORDS = word_regex(
    (
        "order",
        "invoice",
        "account",
        "acct",
        "card",
        "ticket",
        "tracking",
        "reference",
        "ref",
        "id",
        "case",
        "booking",
        "reservation",
        "confirmation",
        "policy",
        "member",
        "customer",
        "serial",
        "zip",
        "postal",
        "postcode",
        "pin",
        "otp",
        "code",
        "passport",
        "license",
        "licence",
        "ssn",
        "social security",
        "tax",
        "iban",
        "routing",
        "sort code",
        "transaction",
        "amount",
        "price",
        "total",
        "balance",
        "version",
        "build",
        "isbn",
        "part",
        "sku",
        "model",
        "patient",
        "claim",
    )
)


class _PhoneNumbers(_Recognizer):
    """Phone numbers in any national or international format.

    A candidate needs 7 to 15 digits. North American formats with separators
    and `+`/`00` international numbers that phonenumbers finds possible are
    accepted on their own; everything else (local numbers such as `467 3395`,
    European groupings such as `0490 75 40 81`) needs a phone word before it,
    a signature label (`Tel:`), or a label after it (`office`, `fax`), and no
    other kind of identifier named nearer. Dates, IPv4 addresses and SSN
    shapes are never phone numbers here."""

    entity = "PHONE_NUMBER"

    def find(self, text: str, lowered: str) -> Iterator[Span]:
        for match in _PHONE.finditer(text):
            number = match.group("number")
            start, end = match.span()
            # "(555) 010-0100" keeps its bracket; "(555-0100, ..." does not.
            if number.startswith("(") and ")" not in number[:7]:
                number, start = number[1:], start + 1
            if number.endswith(")") and "(" not in number and end == match.end("number"):
                number, end = number[:-1], end - 1
            digits = sum(c.isdigit() for c in number)
            if not 7 <= digits <= 15:
                continue
            score = self._strong(number, digits)
            if score is None:
                if not self._plausible(number, digits) or not self._in_context(text, start, end):
                    continue
                score = CONTEXT_SCORE
            yield start, end, score

    @staticmethod
    def _strong(number: str, digits: int) -> float | None:
        if _NANP.fullmatch(number):
            return 0.9
        if number.startswith("+") or (number.startswith("00") and not number[2:3].isdigit()):
            candidate = "+" + number.lstrip("+0 ").replace("(0)", "") if number.startswith("00") else number
            try:
                parsed = phonenumbers.parse(candidate.replace("(0)", ""), None)
            except phonenumbers.NumberParseException:
                return None
            if digits >= 8 and phonenumbers.is_possible_number(parsed):
                return 0.85
        return None

    @staticmethod
    def _plausible(number: str, digits: int) -> bool:
        plain = number.replace(" ", "").replace("-", "").replace(".", "")
        if plain.isdigit() and digits > 12:
            return False  # a long bare digit run is an identifier, not a phone number
        if _DATE_LIKE.match(number) or _SSN_SHAPE.fullmatch(number) or _IPV4_SHAPE.fullmatch(number):
            return False
        only_digits = [c for c in number if c.isdigit()]
        return len(set(only_digits)) > 2

    @staticmethod
    def _in_context(text: str, start: int, end: int) -> bool:
        window_start = max(0, start - CONTEXT_BEFORE)
        before = text[window_start:start]
        if _PHONE_LABEL.search(before) or _PHONE_SUFFIX.match(text, end, end + CONTEXT_AFTER):
            return True
        positive = [m.end() for m in _PHONE_WORDS.finditer(before)]
        # Contact details travel together: a number written next to an e-mail
        # address ("Jane (0453 888 891, jane@x.org)") is a phone number.
        if not positive and (_EMAIL_AFTER.match(text, end) or _EMAIL_BEFORE.search(before)):
            positive = [start]
        if not positive:
            return False
        negative = [m.end() for m in _OTHER_NUMBER_WORDS.finditer(before)]
        return not negative or positive[-1] > negative[-1]


# -- spaCy named entities -----------------------------------------------------

_SPACY_LABELS = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "LOCATION", "NORP": "NRP"}


class _SpacyEntities(_Recognizer):
    """Named entities from a spaCy pipeline the deployment installed (a
    package name such as `en_core_web_sm`, or a path). spaCy pipelines are
    not documented as thread-safe, so calls are serialised."""

    entity = "NER"

    def __init__(self, model: str, entities: frozenset[str]) -> None:
        import spacy

        try:
            self._nlp: Any = spacy.load(model, exclude=["parser", "lemmatizer", "textcat"])
        except OSError as error:
            raise ValueError(
                f"FIREWALL_SPACY_MODEL={model!r} cannot be loaded; install the model package "
                "or point the setting at a model directory"
            ) from error
        self._entities = entities
        self._lock = threading.Lock()

    def find_typed(self, text: str) -> Iterator[tuple[str, int, int, float]]:
        with self._lock:
            doc = self._nlp(text)
        for ent in doc.ents:
            entity = _SPACY_LABELS.get(ent.label_)
            if entity in self._entities:
                yield entity, ent.start_char, ent.end_char, 0.85


# -- the detector -------------------------------------------------------------


class PiiDetector:
    """Finds personal data by pattern (and by a spaCy model when one is set)."""

    category = Category.PII

    def __init__(
        self,
        entities: Sequence[str] = DEFAULT_ENTITIES,
        *,
        min_score: float = 0.5,
        spacy_model: str | None = None,
    ) -> None:
        wanted = frozenset(entities)
        unknown = wanted - ALL_ENTITIES
        if unknown:
            raise ValueError(f"unknown PII entities: {', '.join(sorted(unknown))}")
        if wanted & NER_ENTITIES and not spacy_model:
            raise ValueError(f"{', '.join(sorted(wanted & NER_ENTITIES))} need a spaCy model: set FIREWALL_SPACY_MODEL")
        self.entities = wanted
        self._min_score = min_score
        self._recognizers = [r for entity in sorted(wanted - NER_ENTITIES) for r in _FACTORIES[entity]()]
        # Most short texts (a prompt, a window of a streamed answer) hold no
        # digit at all, and then only these can find anything.
        self._without_digits = [r for r in self._recognizers if not _needs_a_digit(r)]
        ner = wanted & NER_ENTITIES if spacy_model else frozenset()
        self._ner = _SpacyEntities(spacy_model, ner or frozenset(("PERSON", "LOCATION"))) if spacy_model else None
        self.detect("warm up: a@b.co +1 (555) 010-0100 4111 1111 1111 1111")

    def detect(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        lowered = text.lower()
        if len(lowered) != len(text):
            lowered = text  # prefilters only; lower() changed the length (İ)
        recognizers = self._recognizers if _DIGIT.search(text) is not None else self._without_digits
        for recognizer in recognizers:
            for start, end, score in recognizer.find(text, lowered):
                if score >= self._min_score:
                    found.append(Finding(Category.PII, recognizer.entity, start=start, end=end, score=score))
        if self._ner is not None:
            for entity, start, end, score in self._ner.find_typed(text):
                found.append(Finding(Category.PII, entity, start=start, end=end, score=score))
        return keep_strongest(found, PRIORITY)


# Entities every match of which holds a digit: each of their patterns (and
# the phone and card parsers) needs one, so a text without any is skipped
# whole. IPv6 (`fe80::`, `abcd::ef`), MAC (`aa:bb:...`), e-mail, URL and UUID
# spans may have none. `\d` without re.ASCII: the phone parser also reads
# full-width and Arabic-Indic digits, which are Unicode decimal digits too.
_DIGIT_ENTITIES = frozenset(
    (
        "CREDIT_CARD",
        "CRYPTO",  # bitcoin addresses start with 1, 3 or bc1
        "DATE_TIME",
        "IBAN_CODE",
        "IP_ADDRESS",  # IPv4 only: see _needs_a_digit
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
_DIGIT = re.compile(r"\d")


def _needs_a_digit(recognizer: _Recognizer) -> bool:
    return recognizer.entity in _DIGIT_ENTITIES and not isinstance(recognizer, _Ipv6)


def _email_domain_valid() -> Callable[[str], bool]:
    # tldextract with no suffix-list URLs uses the snapshot in its wheel: it
    # never goes to the network (Presidio's default instance would).
    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    extract("warm.up.example.com")

    def valid(value: str) -> bool:
        domain = value.rpartition("@")[2]
        return bool(extract(domain).suffix)

    return valid


def _ssn_area_valid(value: str) -> bool | None:
    # Area numbers 900-999 are never issued: those are ITINs, or ISBN-13 prefixes.
    return False if value.lstrip()[:1] == "9" else None


_WEAK_SSN = {"SSN1 (very weak)", "SSN2 (very weak)", "SSN3 (very weak)", "SSN4 (very weak)"}
_ALWAYS_WEAK: Callable[[str, float], bool] = lambda name, score: True  # noqa: E731


class _Ipv6(_Recognizer):
    """IPv6 addresses: runs of hex groups and colons that Python's ipaddress
    accepts. Presidio's IPv6 patterns say the same in one regex that tries
    a dozen alternatives at every position (~2 ms per 10 KB)."""

    entity = "IP_ADDRESS"
    # A run of hex digits, colons and dots that starts like an address.
    _run = re.compile(r"(?<![\w:.%])(?=[0-9A-Fa-f]{0,4}:)[0-9A-Fa-f:.]{2,}(?:%\w+)?(?:/\d{1,3})?", re.ASCII)
    _port = re.compile(r"(.+):\d{1,5}")

    def find(self, text: str, lowered: str) -> Iterator[Span]:
        if "::" not in text and text.count(":") < 7:
            return
        for match in self._run.finditer(text):
            value = match.group().rstrip(".")
            if value.count(":") < 2 or value == "::":
                continue
            # Logs write "address:port" without brackets: the address is
            # then what is left when the last group reads as a port.
            port = self._port.fullmatch(value)
            for candidate in (value, port.group(1) if port else None):
                if candidate and self._valid(candidate):
                    yield match.start(), match.start() + len(candidate), 0.85
                    break

    @staticmethod
    def _valid(value: str) -> bool:
        try:
            address = ipaddress.ip_interface(value).ip
        except ValueError:
            return False
        return address.version == 6 and not (address.is_loopback or address.is_unspecified)


def _ipv4() -> _Recognizer:
    patterns = [p for p in presidio("IpRecognizer").patterns if p.name == "IPv4"]
    # Loopback and the unspecified address identify nobody.
    ip = presidio("IpRecognizer", patterns=patterns)
    return _PresidioPatterns(
        ip,
        prefilter=re.compile(r"\d\.\d+\.\d"),
        validate=_routable_ip,
        reject_after=re.compile(r"(?i)\b(?:version|ver|v|release|build|rev|revision)\.?\s*$"),
    )


def _routable_ip(value: str) -> bool | None:
    try:
        address = ipaddress.ip_interface(value).ip
    except ValueError:
        return False
    return False if address.is_loopback or address.is_unspecified else None


# One factory per entity, so a deployment only compiles what it looks for.
_FACTORIES: dict[str, Callable[[], list[_Recognizer]]] = {
    "CREDIT_CARD": lambda: [_CreditCards()],
    "PHONE_NUMBER": lambda: [_PhoneNumbers()],
    "EMAIL_ADDRESS": lambda: [_Emails()],
    "IBAN_CODE": lambda: [_PresidioPatterns(presidio("IbanRecognizer"), trim_groups=True)],
    "IP_ADDRESS": lambda: [_ipv4(), _Ipv6()],
    # SSNs: the formatted pattern stands alone; bare nine digits, 5-4 and 3-6
    # splits need "ssn" or "social security" nearby.
    "US_SSN": lambda: [
        _PresidioPatterns(
            presidio("UsSsnRecognizer"),
            weak=lambda name, score: name in _WEAK_SSN,
            validate=_ssn_area_valid,
            standalone=True,
        )
    ],
    # ITINs share the SSN shape (and ISBN-13 prefixes): only next to tax words.
    "US_ITIN": lambda: [
        _PresidioPatterns(
            presidio("UsItinRecognizer"),
            weak=_ALWAYS_WEAK,
            context=("itin", "taxpayer", "tax id", "tin", "tax identification"),
            standalone=True,
        )
    ],
    "CRYPTO": lambda: [_PresidioPatterns(presidio("CryptoRecognizer"), flags=re.ASCII)],
    "MAC_ADDRESS": lambda: [
        _PresidioPatterns(
            presidio("MacAddressRecognizer"),
            prefilter=re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}\1[0-9A-Fa-f]{2}\1"),
        )
    ],
    # These match almost any long number or capitalised code: they count only
    # next to their own words (driver, passport, NHS, bank account, DEA).
    "US_BANK_NUMBER": lambda: [
        _PresidioPatterns(
            presidio("UsBankRecognizer"),
            weak=_ALWAYS_WEAK,
            standalone=True,
            context=(
                "account number",
                "account no",
                "account #",
                "account#",
                "acct",
                "bank account",
                "checking account",
                "savings account",
                "routing",
            ),
        )
    ],
    "US_DRIVER_LICENSE": lambda: [
        _PresidioPatterns(
            presidio("UsLicenseRecognizer"),
            weak=_ALWAYS_WEAK,
            standalone=True,
            flags=re.ASCII,
            context=("driver", "drivers", "driver's", "license", "licence", "dl", "lic", "lic#", "driving"),
        )
    ],
    "US_PASSPORT": lambda: [
        _PresidioPatterns(
            presidio("UsPassportRecognizer"),
            weak=_ALWAYS_WEAK,
            standalone=True,
            flags=re.ASCII,
            context=("passport", "passport#"),
        )
    ],
    "UK_NHS": lambda: [
        _PresidioPatterns(
            presidio("NhsRecognizer"), weak=_ALWAYS_WEAK, standalone=True, context=("nhs", "national health service")
        )
    ],
    "MEDICAL_LICENSE": lambda: [
        _PresidioPatterns(
            presidio("MedicalLicenseRecognizer"),
            weak=_ALWAYS_WEAK,
            standalone=True,
            flags=re.ASCII,
            context=("dea", "medical license"),
        )
    ],
    "URL": lambda: [_PresidioPatterns(presidio("UrlRecognizer"), flags=re.IGNORECASE, prefilter=re.compile(r"\w\.\w"))],
    "DATE_TIME": lambda: [_PresidioPatterns(presidio("DateRecognizer"), weak=lambda name, score: False)],
    "UUID": lambda: [_PresidioPatterns(presidio("UuidRecognizer"), prefilter=re.compile("-"))],
}
