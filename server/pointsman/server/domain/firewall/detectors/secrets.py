"""Credentials, keys and tokens: a rule per format users leak most, each behind
a keyword prefilter, plus keyword-anchored high-entropy values.

A rule only runs when one of its keywords occurs in the lower-cased text, so
a prompt without `akia`, `ghp_`, `://`, `password`... costs a handful of
substring searches. Findings carry the span of the whole secret, a sha256
digest of it and a masked preview (`ghp_…9f2c`); never the secret."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..verdict import Category, Finding
from .base import keep_strongest, shannon_entropy

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class SecretRule:
    """One secret format. The span is the `secret` group when the pattern has
    one (the value of `password=...`), else the whole match."""

    type: str
    pattern: re.Pattern[str]
    keywords: tuple[str, ...]  # lower-case; the rule runs only if one occurs
    prefix: int = 0  # characters of the public, fixed prefix the preview may show
    min_entropy: float = 0.0
    check: Callable[[str], bool] | None = None
    priority: int = 5
    score: float = 0.95
    # The match must not follow a token character. Checked here rather than
    # by a leading lookbehind, which would stop `re` from jumping straight to
    # the rule's literal prefix (AKIA, ghp_, sk-...).
    boundary: bool = False
    # (before, after): search only this window around each keyword, for
    # rules that start with a free-form key name rather than a literal.
    anchor: tuple[int, int] | None = None
    # With an anchor: the pattern begins with the key's name (`db_password=`),
    # so it is tried once, at the start of the name around each keyword.
    key_first: bool = False

    def find(self, text: str, lowered: str) -> Iterator[Span]:
        has_group = "secret" in self.pattern.groupindex
        seen: set[tuple[int, int]] = set()
        for match in self._matches(text, lowered):
            if self.boundary and match.start() > 0 and _TOKEN_CHAR.match(text, match.start() - 1):
                continue
            start, end = match.span("secret") if has_group else match.span()
            if start < 0 or (start, end) in seen:
                continue
            seen.add((start, end))
            value = text[start:end]
            if self.min_entropy and shannon_entropy(value) < self.min_entropy:
                continue
            if self.check is not None and not self.check(value):
                continue
            yield start, end

    def _matches(self, text: str, lowered: str) -> Iterator[re.Match[str]]:
        if self.anchor is None:
            yield from self.pattern.finditer(text)
            return
        before, after = self.anchor
        for keyword in self.keywords:
            position = lowered.find(keyword)
            while position >= 0:
                stop = position + len(keyword) + after
                if self.key_first:
                    # The pattern starts at the start of the key's name: one
                    # match attempt there instead of a search of the window.
                    start = position
                    while start > 0 and position - start < before and _KEY_CHAR.match(text, start - 1):
                        start -= 1
                    match = self.pattern.match(text, start, stop)
                    if match is not None:
                        yield match
                else:
                    yield from self.pattern.finditer(text, max(0, position - before), stop)
                position = lowered.find(keyword, position + len(keyword))


_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_\-]")
_KEY_CHAR = re.compile(r"[\w.\-]")


@dataclass(frozen=True, slots=True)
class _PrivateKeyRule:
    """PEM private key blocks, BEGIN to END, also when JSON-escaped (`\\n`)
    inside a service-account file; a block cut short ends with its body."""

    type: str = "PRIVATE_KEY"
    keywords: tuple[str, ...] = ("private key",)
    prefix: int = 0
    priority: int = 10
    score: float = 1.0
    _begin: re.Pattern[str] = field(
        default=re.compile(r"-----BEGIN ((?:[A-Z0-9]+ ){0,3})PRIVATE KEY(?: BLOCK)?-----"), repr=False
    )
    _body: re.Pattern[str] = field(
        default=re.compile(r"(?:(?:\s|\\n)*(?:[A-Za-z0-9+/=]{8,}+|(?:Proc-Type|DEK-Info):[^\n\\]*))*"), repr=False
    )

    def find(self, text: str, lowered: str) -> Iterator[Span]:
        position = 0
        while True:
            begin = self._begin.search(text, position)
            if begin is None:
                return
            end_marker = re.compile(r"-----END " + re.escape(begin.group(1)) + r"PRIVATE KEY(?: BLOCK)?-----")
            end = end_marker.search(text, begin.end(), begin.end() + 32_768)
            if end is not None:
                stop = end.end()
            else:
                body = self._body.match(text, begin.end())
                stop = body.end() if body is not None else begin.end()
                while stop > begin.end() and text[stop - 1].isspace():
                    stop -= 1
            yield begin.start(), stop
            position = stop


# Values that stand where a secret would in docs, templates and code: never a secret.
_PLACEHOLDERS = re.compile(
    r"""(?ix)^(?:
        [*x.•#_-]+                                  # ******** xxxxxx ....
      | <[^>]*>? | \[[^\]]*\]? | \{\{?[^}]*\}?\}?    # <password> [secret] {{ token }}
      | \$\{?[\w.:-]*\}? | %\(?\w*\)?s? | %\w+%    # $DB_PASSWORD ${TOKEN} %(pw)s %PW%
      | (?:your|my|the|some|a|an|new|old|db|user|app|example|sample|dummy|fake|test|placeholder)
        [_-]?(?:pass(?:word)?|pwd|secret|token|key|api[_-]?key|value|here)s?(?:[_-]?here)?
      | pass(?:word)?\d{0,3} | passwd | pwd | secret | token | changeme | change[_-]?me | redacted | hidden
      | none | null | nil | undefined | true | false | required | optional | empty | string | str | bytes
      | text | varchar | char | int | bool | any | object | env | environ | getenv | input | prompt | os
      | process\.env.* | os\.environ.* | os\.getenv.* | env\(.* | config\..* | settings\..* | self\..*
      | [a-z_]+\(.*                                  # a call: get_password(...)
    )$""",
)
_IDENTIFIER = re.compile(r"[a-z]+(?:_[a-z]+)+|[a-z]+(?:\.[a-z_]+)+|[a-z]+[A-Z][A-Za-z]*")


def _literal_password(value: str) -> bool:
    """A value after `password=` that is a real literal, not a placeholder, a
    type name or a reference to a variable."""
    stripped = value.strip("'\"`")
    if len(stripped) < 4 or _PLACEHOLDERS.match(stripped):
        return False
    return not (value == stripped and _IDENTIFIER.fullmatch(stripped))


def _strong_password(value: str) -> bool:
    """For passwords named in prose ("my password is ..."): only values that
    look like passwords (a digit or a symbol), so "is stored" is not one."""
    if not _literal_password(value):
        return False
    return any(c.isdigit() for c in value) or any(not c.isalnum() for c in value)


def _random_looking(value: str) -> bool:
    """A generic secret value: letters and digits mixed like a random string,
    not a word, an identifier, a path or a version. Entropy is checked apart."""
    if _PLACEHOLDERS.match(value) or _IDENTIFIER.fullmatch(value) or value.count("/") > 2:
        return False
    digits = sum(c.isdigit() for c in value)
    letters = sum(c.isalpha() for c in value)
    if letters < 4:
        return False
    if digits >= 2:
        return True
    # Few digits: random strings still switch between upper and lower case
    # every other character or so; camelCase words switch once per word.
    switches = sum(1 for a, b in itertools.pairwise(value) if a.isupper() != b.isupper())
    return switches / len(value) > 0.3


def _jwt(value: str) -> bool:
    try:
        header = value.split(".", 1)[0]
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except ValueError:
        return False
    return isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded)


def _rule(
    type_: str,
    pattern: str,
    keywords: Sequence[str],
    *,
    prefix: int = 0,
    flags: int = 0,
    min_entropy: float = 0.0,
    check: Callable[[str], bool] | None = None,
    priority: int = 8,
    score: float = 0.95,
    anchor: tuple[int, int] | None = None,
    key_first: bool = False,
) -> SecretRule:
    boundary = pattern.startswith(_START)
    if boundary:
        pattern = pattern[len(_START) :]
    return SecretRule(
        type_,
        re.compile(pattern, flags),
        tuple(keywords),
        prefix,
        min_entropy,
        check,
        priority,
        score,
        boundary,
        anchor,
        key_first,
    )


# The end of a token: not followed by more token characters.
_END = r"(?![A-Za-z0-9_\-])"
_START = r"(?<![A-Za-z0-9_\-])"
# Where an assignment's value is: `key = value`, `"key": "value"`, `KEY: value`, `key => value`.
_ASSIGN = r"""["']?\s*(?:=|:=|=>|:)\s*["'`]?"""

RULES: tuple[SecretRule | _PrivateKeyRule, ...] = (
    _PrivateKeyRule(),
    # Cloud providers.
    _rule(
        "AWS_ACCESS_KEY_ID",
        _START + r"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}" + _END,
        ("akia", "asia", "abia", "acca", "a3t"),
        prefix=4,
    ),
    _rule(
        "AWS_SECRET_ACCESS_KEY",
        r"(?i)(?:aws[_\-.]?secret[_\-.]?(?:access[_\-.]?)?key|secret[_\-.]?access[_\-.]?key|aws[_\-.]?sk)"
        + _ASSIGN
        + r"(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        ("secret", "aws_sk"),
        min_entropy=3.5,
        priority=9,
        anchor=(40, 120),
    ),
    _rule("GCP_API_KEY", _START + r"AIza[0-9A-Za-z_\-]{35}" + _END, ("aiza",), prefix=4),
    _rule("GCP_OAUTH_CLIENT_SECRET", _START + r"GOCSPX-[A-Za-z0-9_\-]{28}" + _END, ("gocspx-",), prefix=7),
    _rule("GCP_OAUTH_TOKEN", _START + r"ya29\.[0-9A-Za-z_\-]{30,}" + _END, ("ya29.",), prefix=5),
    _rule(
        "AZURE_STORAGE_KEY",
        r"(?i)AccountKey=(?P<secret>[A-Za-z0-9+/]{86}==)",
        ("accountkey",),
        priority=9,
    ),
    _rule(
        "AZURE_SAS_SIGNATURE",
        r"[?&]sig=(?P<secret>[A-Za-z0-9%+/]{40,120}(?:={0,2}|(?:%3D){0,2}))",
        ("sig=",),
    ),
    _rule(
        "AZURE_CLIENT_SECRET",
        r"(?<![\w~.\-])[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}(?![\w~.\-])",
        ("q~",),
        anchor=(6, 40),
    ),
    # Code hosting and chat.
    _rule(
        "GITHUB_TOKEN",
        _START + r"gh[pousr]_[A-Za-z0-9]{36,255}" + _END,
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        prefix=4,
    ),
    _rule("GITHUB_TOKEN", _START + r"github_pat_[A-Za-z0-9_]{60,255}" + _END, ("github_pat_",), prefix=11),
    _rule(
        "GITLAB_TOKEN",
        _START + r"(?:glpat|glptt|gldt|glrt|glcbt|glimt|glft|glsoat|gloas)-[A-Za-z0-9_\-]{20,}" + _END,
        ("glpat-", "glptt-", "gldt-", "glrt-", "glcbt-", "glimt-", "glft-", "glsoat-", "gloas-"),
        prefix=6,
    ),
    _rule("GITLAB_TOKEN", _START + r"GR1348941[A-Za-z0-9_\-]{20,}" + _END, ("gr1348941",), prefix=9),
    _rule("SLACK_TOKEN", _START + r"(?:xox[abposre]|xapp)-[A-Za-z0-9\-]{20,}" + _END, ("xox", "xapp-"), prefix=5),
    _rule(
        "SLACK_WEBHOOK",
        r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{20,}" + _END,
        ("hooks.slack.com",),
        prefix=0,
    ),
    _rule(
        "DISCORD_WEBHOOK",
        r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]{60,}" + _END,
        ("discord",),
    ),
    _rule("TELEGRAM_BOT_TOKEN", r"(?<!\d)\d{8,10}:AA[A-Za-z0-9_\-]{33}" + _END, (":aa",), anchor=(10, 40)),
    # Payments and messaging.
    _rule(
        "STRIPE_KEY",
        _START + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,247}" + _END,
        ("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
        prefix=8,
    ),
    _rule("STRIPE_WEBHOOK_SECRET", _START + r"whsec_[A-Za-z0-9]{32,}" + _END, ("whsec_",), prefix=6),
    _rule("TWILIO_API_KEY", _START + r"SK[0-9a-f]{32}" + _END, ("sk",), prefix=2),
    _rule(
        "TWILIO_AUTH_TOKEN",
        r"(?i)twilio[\w\-. ]{0,30}?(?:auth|token|secret)[\w\-]{0,20}" + _ASSIGN + r"(?P<secret>[0-9a-f]{32})" + _END,
        ("twilio",),
        priority=9,
        anchor=(0, 140),
    ),
    _rule("SENDGRID_API_KEY", _START + r"SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}" + _END, ("sg.",), prefix=3),
    _rule("MAILGUN_API_KEY", _START + r"key-[0-9a-f]{32}" + _END, ("key-",), prefix=4),
    _rule(
        "SHOPIFY_TOKEN",
        _START + r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}" + _END,
        ("shpat_", "shpca_", "shppa_", "shpss_"),
        prefix=6,
    ),
    # AI providers and package registries.
    _rule(
        "ANTHROPIC_API_KEY",
        _START + r"sk-ant-(?:api|admin|oat|sid)\d\d-[A-Za-z0-9_\-]{80,120}" + _END,
        ("sk-ant-",),
        prefix=7,
        priority=10,
    ),
    _rule(
        "OPENAI_API_KEY",
        _START + r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{40,200}" + _END,
        ("sk-proj-", "sk-svcacct-", "sk-admin-", "sk-none-"),
        prefix=8,
        priority=9,
    ),
    _rule(
        "OPENAI_API_KEY",
        _START + r"sk-(?:[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|[A-Za-z0-9]{48})" + _END,
        ("sk-",),
        prefix=3,
        priority=9,
    ),
    _rule("HUGGINGFACE_TOKEN", _START + r"hf_[A-Za-z]{34}" + _END, ("hf_",), prefix=3),
    _rule("NPM_TOKEN", _START + r"npm_[A-Za-z0-9]{36}" + _END, ("npm_",), prefix=4),
    _rule("PYPI_TOKEN", _START + r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}" + _END, ("pypi-",), prefix=5),
    _rule(
        "DIGITALOCEAN_TOKEN", _START + r"do[por]_v1_[a-f0-9]{64}" + _END, ("dop_v1_", "doo_v1_", "dor_v1_"), prefix=7
    ),
    _rule("DATABRICKS_TOKEN", _START + r"dapi[a-f0-9]{32}(?:-\d)?" + _END, ("dapi",), prefix=4),
    # Tokens and credentials by shape.
    _rule(
        "JWT",
        _START + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{10,}" + _END,
        ("eyj",),
        prefix=3,
        check=_jwt,
    ),
    _rule(
        "CONNECTION_STRING_PASSWORD",
        r"(?i)\b[a-z][a-z0-9+.\-]{1,20}://[^\s:/@'\"<>]*:(?P<secret>[^\s/'\"<>]{1,200})@[A-Za-z0-9.\-\[\]:_]+"
        r"(?=[/\s'\"?,;)>]|$)",
        ("://",),
        check=_literal_password,
        priority=7,
        anchor=(24, 460),
    ),
    _rule(
        "HTTP_AUTHORIZATION",
        r"(?i)\b(?:authorization\s*[:=]\s*[\"']?|-H\s*[\"']?authorization:\s*)(?:bearer|basic|token|apikey)\s+"
        r"(?P<secret>[A-Za-z0-9._~+/\-]{12,}=*)",
        ("authorization",),
        check=_literal_password,
        priority=6,
        anchor=(4, 300),
    ),
    _rule(
        "HTTP_AUTHORIZATION",
        r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/\-]{20,}=*)",
        ("bearer",),
        check=_random_looking,
        min_entropy=3.0,
        priority=5,
        anchor=(0, 300),
    ),
    _rule(
        "BASIC_AUTH_PASSWORD",
        r"(?:\s-u|--user)\s+[\"']?[^\s:'\"]+:(?P<secret>[^\s'\"/][^\s'\"]{3,127})",
        ("-u ", "--user"),
        check=_literal_password,
        priority=6,
        anchor=(4, 300),
    ),
    _rule(
        "PASSWORD",
        # The key ends with the word: db_password, DB_PASS, dbPassword, pwd; not bypass or passenger.
        r"(?i)(?<![A-Za-z0-9])(?:[\w.\-]{0,30}?(?:password|passwd|passphrase|pwd)|(?:[\w.\-]{0,30}?[_\-.])?pass)"
        r"(?:[_\-]?\d)?"
        + r"""(?:"\s*(?:=|:|=>)\s*"(?P<secret>[^"\n]{4,128})"|'\s*(?:=|:|=>)\s*'(?P<s2>[^'\n]{4,128})'"""
        + r"""|\s*(?:=|:=|=>|:)\s*(?:"(?P<s3>[^"\n]{4,128})"|'(?P<s4>[^'\n]{4,128})'"""
        + r"""|(?P<s5>[^\s"',;<>()\[\]{}]{4,128})))""",
        ("pass", "pwd"),
        check=_literal_password,
        priority=6,
        score=0.9,
        anchor=(40, 300),
        key_first=True,
    ),
    _rule(
        "PASSWORD",
        r"(?<![\w-])--pass(?:word)?[= ](?P<secret>[^\s\"']{4,128})",
        ("--pass",),
        check=_literal_password,
        priority=6,
        score=0.9,
        anchor=(2, 200),
    ),
    _rule(
        "PASSWORD",
        r"(?i)\b(?:password|passcode|passphrase|pw)\b[^.\n]{0,24}?\b(?:is|was|to)\b\s*:?\s*"
        # Greedy to the next space: better to cover a trailing "!" than to leave part of a password.
        r"""["'`]?(?P<secret>[^\s"'`]{4,64}?)["'`]?(?=\s|[.,;](?:\s|$)|$)""",
        ("pass", "pw"),
        check=_strong_password,
        priority=4,
        score=0.8,
        anchor=(0, 200),
    ),
    _rule(
        "GENERIC_SECRET",
        r"(?i)(?<![\w.\-])(?![\w.\-]{0,30}?(?:page|cursor|continuation|next|csrf|xsrf|nonce|idempoten))"
        r"[\w.\-]{0,30}?(?:api[_\-.]?key|apikey|secret|token|access[_\-.]?key|auth[_\-.]?key"
        r"|credential|client[_\-.]?secret|private[_\-.]?key|signing[_\-.]?key|encryption[_\-.]?key)s?[\w\-]{0,10}"
        + _ASSIGN
        + r"(?P<secret>[A-Za-z0-9_\-+/=.~]{16,256})"
        + r"(?![A-Za-z0-9_\-+/=.~])",
        ("key", "secret", "token", "credential"),
        min_entropy=3.2,
        check=_random_looking,
        priority=3,
        score=0.8,
        anchor=(45, 330),
        key_first=True,
    ),
)

# The PASSWORD rule's value can land in any of its alternatives' groups.
_VALUE_GROUPS = ("secret", "s2", "s3", "s4", "s5")


def _spans(rule: SecretRule | _PrivateKeyRule, text: str, lowered: str) -> Iterator[Span]:
    if isinstance(rule, SecretRule) and "s5" in rule.pattern.groupindex:
        for match in rule._matches(text, lowered):
            group = next((g for g in _VALUE_GROUPS if match.start(g) >= 0), None)
            if group is None:
                continue
            # A quoted value is a literal; an unquoted one must look like a
            # password, or `password: hunter` in prose would be one.
            check = _strong_password if group == "s5" else _literal_password
            if check(match.group(group)):
                yield match.span(group)
        return
    yield from rule.find(text, lowered)


def mask(secret: str, prefix: int) -> str:
    """A preview that identifies a secret without revealing it: its public
    prefix and, when long enough that they give nothing away, the last four
    characters (`sk-…cdef`, `AKIA…MPLE`)."""
    shown = secret[:prefix] if prefix and len(secret) > prefix + 12 else ""
    tail = secret[-4:] if len(secret) >= 20 else ""
    return f"{shown}…{tail}"


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class SecretDetector:
    """Runs the rules whose keywords occur in the text; overlapping findings
    resolve to the most specific rule."""

    category = Category.SECRET

    def __init__(self, rules: Sequence[SecretRule | _PrivateKeyRule] = RULES) -> None:
        self._rules = tuple((rule, frozenset(rule.keywords)) for rule in rules)
        # Each distinct keyword looked for once per text, not once per rule naming it.
        self._keywords = tuple(sorted({keyword for rule in rules for keyword in rule.keywords}))

    def detect(self, text: str) -> list[Finding]:
        lowered = text.lower()
        if len(lowered) != len(text):
            lowered = text.translate(_ASCII_LOWER)  # lower() changed the length (İ); keywords are ASCII
        present = {keyword for keyword in self._keywords if keyword in lowered}
        if not present:
            return []
        found: list[Finding] = []
        priority: dict[str, int] = {}
        for rule, keywords in self._rules:
            if present.isdisjoint(keywords):
                continue
            priority[rule.type] = max(priority.get(rule.type, 0), rule.priority)
            for start, end in _spans(rule, text, lowered):
                secret = text[start:end]
                found.append(
                    Finding(
                        Category.SECRET,
                        rule.type,
                        start=start,
                        end=end,
                        score=rule.score,
                        preview=mask(secret, rule.prefix),
                        digest=hashlib.sha256(secret.encode()).hexdigest(),
                    )
                )
        return keep_strongest(found, priority) if len(found) > 1 else found
