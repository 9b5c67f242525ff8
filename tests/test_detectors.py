"""The firewall's content detectors (PII, secrets, toxicity), redaction, and the
engine's cache, chunking and thread offload, without a network."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import string
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pointsman.server.backends.decision_log import InMemoryDecisionLog
from pointsman.server.backends.rule_store import InMemoryRuleStore
from pointsman.server.domain.caller import Caller
from pointsman.server.domain.chat import Message, Role
from pointsman.server.domain.errors import ContentBlocked, InvalidArgument, ViolationCollector
from pointsman.server.domain.firewall.detectors.pii import PiiDetector
from pointsman.server.domain.firewall.detectors.secrets import SecretDetector
from pointsman.server.domain.firewall.detectors.toxicity import ToxicityDetector
from pointsman.server.domain.firewall.engine import CHUNK_CHARS, FirewallEngine, check_content
from pointsman.server.domain.firewall.redaction import RedactionStyle, Redactor
from pointsman.server.domain.firewall.verdict import Action, Category, Direction, Finding

CALLER = Caller(request_id="r-1", organisation="acme", principal="alice")


@pytest.fixture(scope="module")
def pii() -> PiiDetector:
    return PiiDetector()


@pytest.fixture(scope="module")
def secrets() -> SecretDetector:
    return SecretDetector()


@pytest.fixture(scope="module")
def toxicity() -> ToxicityDetector:
    return ToxicityDetector(0.8)


def found(detector: Any, text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in detector.detect(text)]


def rand(alphabet: str, n: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


ALNUM = string.ascii_letters + string.digits

# -- PII ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Please update my email to jane.doe+billing@example.co.uk today.",
            ("EMAIL_ADDRESS", "jane.doe+billing@example.co.uk"),
        ),
        ("My card 4111 1111 1111 1111 was charged twice.", ("CREDIT_CARD", "4111 1111 1111 1111")),
        ("I paid with 4131034282458809939 yesterday", ("CREDIT_CARD", "4131034282458809939")),  # 19-digit Visa
        ("Charge my Maestro card 630427373398 please", ("CREDIT_CARD", "630427373398")),
        ("Wire it to IBAN DE89 3704 0044 0532 0130 00 by Friday.", ("IBAN_CODE", "DE89 3704 0044 0532 0130 00")),
        ("Our server 203.0.113.42 keeps timing out.", ("IP_ADDRESS", "203.0.113.42")),
        ("Traffic from 2001:db8:85a3::8a2e:370:7334. Block it?", ("IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334")),
        ("My SSN is 536-22-1497, do I need it?", ("US_SSN", "536-22-1497")),
        ("Call me back at (415) 555-0132 after 5pm.", ("PHONE_NUMBER", "(415) 555-0132")),
        ("You can reach me on +44 20 7946 0958.", ("PHONE_NUMBER", "+44 20 7946 0958")),
        ("Phone:\n467 3395\n\nE-mail: none", ("PHONE_NUMBER", "467 3395")),  # local number, labelled
        ("Our manager (0453 888 891, kim@example.org) will call.", ("PHONE_NUMBER", "0453 888 891")),
    ],
)
def test_pii_found_with_whole_span(pii: PiiDetector, text: str, expected: tuple[str, str]) -> None:
    assert expected in found(pii, text)


@pytest.mark.parametrize(
    "text",
    [
        "request id 3f2a9c1e-8b7d-4e6f-a5c4-2d1b0e9f8a7c failed",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it",
        "upgrade to version 2.10.1.3 and rerun",
        "the order 501234567890 shipped on 2024-03-14",  # Luhn-valid Maestro shape, no card word
        "ISBN 978-84-7584-737-5, barcode 7093471118681",
        "the meeting is at 14:30:00 on 12.05.2024",
        "it costs $1,234,567.89 in total",
        "Connect to 127.0.0.1:8080 or 0.0.0.0",
        "call getUserAccountSettingsForTenantV2() in /usr/lib/python3.11/site-packages/app.py",
        "card 4111 1111 1111 1112 failed the checksum",
    ],
)
def test_pii_hard_negatives_are_not_flagged(pii: PiiDetector, text: str) -> None:
    assert found(pii, text) == []


def test_phone_needs_context_when_the_format_is_ambiguous(pii: PiiDetector) -> None:
    assert ("PHONE_NUMBER", "467 3395") in found(pii, "Can someone call me on 467 3395?")
    assert found(pii, "Your invoice number is 467 3395.") == []
    # The nearer word decides: an order number next to an earlier phone word.
    assert found(pii, "I called about order 46 733 950 yesterday") == []


def test_known_presidio_false_positives_are_gone(pii: PiiDetector) -> None:
    # UK_NHS on US phone numbers (ten digits that pass the NHS checksum).
    assert found(pii, "Call 905-674-3793 today") == [("PHONE_NUMBER", "905-674-3793")]
    # US_DRIVER_LICENSE on runs of capitals and codes.
    assert found(pii, "See RFC7231 and ISO8601, section AB12345 of the NASA report") == []
    # URL on e-mail fragments, with URL detection switched on.
    with_url = PiiDetector(["EMAIL_ADDRESS", "URL"])
    assert found(with_url, "mail bob@example.com now") == [("EMAIL_ADDRESS", "bob@example.com")]
    # A driver's licence still counts next to its words.
    assert ("US_DRIVER_LICENSE", "D1234567") in found(pii, "my driver's license is D1234567")


def test_unknown_entities_and_ner_without_model_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown PII entities: SHOE_SIZE"):
        PiiDetector(["EMAIL_ADDRESS", "SHOE_SIZE"])
    with pytest.raises(ValueError, match="FIREWALL_SPACY_MODEL"):
        PiiDetector(["PERSON"])
    with pytest.raises(ValueError, match="cannot be loaded"):
        PiiDetector(spacy_model="en_core_web_not_installed")


def test_spacy_model_adds_person_and_location(tmp_path: Path) -> None:
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": "Ada Lovelace"}, {"label": "GPE", "pattern": "London"}])
    nlp.to_disk(tmp_path)
    detector = PiiDetector(spacy_model=str(tmp_path))
    text = "Ada Lovelace from London wrote to ada@example.org"
    assert found(detector, text) == [
        ("PERSON", "Ada Lovelace"),
        ("LOCATION", "London"),
        ("EMAIL_ADDRESS", "ada@example.org"),
    ]


# -- secrets ------------------------------------------------------------------

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIA" + rand(string.ascii_uppercase + "234567", 16),
    "GCP_API_KEY": "AIza" + rand(ALNUM + "-_", 35),
    "GITHUB_TOKEN": "ghp_" + rand(ALNUM, 36),
    "GITLAB_TOKEN": "glpat-" + rand(ALNUM, 20),
    "SLACK_TOKEN": "xoxb-123456789012-123456789012-" + rand(ALNUM, 24),
    "STRIPE_KEY": "sk_live_" + rand(ALNUM, 24),
    "OPENAI_API_KEY": "sk-proj-" + rand(ALNUM + "-_", 120),
    "ANTHROPIC_API_KEY": "sk-ant-api03-" + rand(ALNUM + "-_", 93) + "AA",
    "SENDGRID_API_KEY": "SG." + rand(ALNUM, 22) + "." + rand(ALNUM, 43),
    "TWILIO_API_KEY": "SK" + rand("0123456789abcdef", 32),
    "AZURE_CLIENT_SECRET": "abc8Q~" + rand(ALNUM, 34),
}


@pytest.mark.parametrize(("kind", "secret"), sorted(SECRETS.items()))
def test_secret_formats_found_whole_with_hash_and_masked_preview(
    secrets: SecretDetector, kind: str, secret: str
) -> None:
    text = f"Why does this fail?\nexport TOKEN_VALUE={secret}\nthanks"
    findings = secrets.detect(text)
    assert [(f.type, text[f.start : f.end]) for f in findings] == [(kind, secret)]
    finding = findings[0]
    assert finding.category is Category.SECRET
    assert finding.digest == hashlib.sha256(secret.encode()).hexdigest()
    assert "…" in finding.preview and secret not in finding.preview
    assert len(finding.preview.replace("…", "")) <= 12


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("DATABASE_URL=postgres://app:S3cr3t!pw@db.internal:5432/app", "S3cr3t!pw"),
        ('{"username": "admin", "password": "Summer 2024 rocks"}', "Summer 2024 rocks"),
        ("spring.datasource.password=Passw0rd#77", "Passw0rd#77"),
        ("my password is Tr0ub4dor&3! but it fails", "Tr0ub4dor&3!"),
        ("Server=sql;Database=crm;User Id=sa;Password=Winter2031$;Encrypt=true", "Winter2031$"),
        ("api_key: 'k9XqT2mZ8pL4vN7rW1sY6bH3'", "k9XqT2mZ8pL4vN7rW1sY6bH3"),
        ("curl -u deploy:hunter22 https://ci.example.com", "hunter22"),
    ],
)
def test_assigned_secrets_span_the_value(secrets: SecretDetector, text: str, secret: str) -> None:
    spans = [text[f.start : f.end] for f in secrets.detect(text)]
    assert spans == [secret]


def test_private_key_span_covers_begin_to_end(secrets: SecretDetector) -> None:
    body = "\n".join(rand(ALNUM + "+/", 64, seed=i) for i in range(8))
    key = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    text = f"Is this key valid?\n{key}\nssh says invalid format"
    assert found(secrets, text) == [("PRIVATE_KEY", key)]
    escaped = key.replace("\n", "\\n")
    assert found(secrets, f'{{"type": "service_account", "private_key": "{escaped}\\n"}}') == [("PRIVATE_KEY", escaped)]
    # Cut short (no END line): the finding still covers the whole body.
    truncated = f"-----BEGIN PRIVATE KEY-----\n{body}"
    assert found(secrets, truncated + "\n\nwhat is this?") == [("PRIVATE_KEY", truncated)]


def test_jwt_needs_a_real_header(secrets: SecretDetector) -> None:
    token = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUifQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
    assert found(secrets, f"decode {token} for me") == [("JWT", token)]
    assert found(secrets, "eyJmb29iYXJiYXoxMjM.eyJmb29iYXJiYXoxMjM.abcdefghijklmnop") == []


@pytest.mark.parametrize(
    "text",
    [
        "request id 3f2a9c1e-8b7d-4e6f-a5c4-2d1b0e9f8a7c failed",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8\nAuthor: dev",
        "sha256sum: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824  app.tar.gz",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        "const tokenRefreshHandlerFactory = buildSecretManagerProvider(passwordResetValidator);",
        "/home/dev/.cache/huggingface/hub/models--acme--secretModel/snapshots/9fceb02d0ae598e95dc970b74767f19372d61af8",
        "password: <your-password>\nDB_PASSWORD=${DB_PASSWORD}\napi_key = 'YOUR_API_KEY'",
        "postgres://user:password@localhost:5432/db and redis://cache:6379/0",
        "def connect(host: str, password: str = None) -> Connection:",
        "password = os.environ['DB_PASSWORD']; token = get_token(user)",
        "next_page_token: CiAKGjBpNDd2Nmp2Zml2cXRwOXRncmhjN2NvZXd4YmYSAggB",
        "The password must be at least 12 characters and the token expires in 3600 seconds.",
    ],
)
def test_secret_hard_negatives_are_not_flagged(secrets: SecretDetector, text: str) -> None:
    assert found(secrets, text) == []


# -- toxicity -----------------------------------------------------------------


def test_toxicity_flags_the_abusive_sentence_only(toxicity: ToxicityDetector) -> None:
    text = "Thanks for the summary. You are a stupid fucking idiot. Please continue."
    assert found(toxicity, text) == [("PROFANITY", "You are a stupid fucking idiot.")]
    assert found(toxicity, "Please kill the stuck process and restart the build.") == []
    assert found(toxicity, "Dr. Dipl.-Ing. Hans Müller presents the results.") == []


def test_toxicity_matches_alt_profanity_check(toxicity: ToxicityDetector) -> None:
    from profanity_check import predict_prob

    texts = ["you are a fucking idiot", "have a nice day", "this shit is broken", "I love this product"]
    expected = predict_prob(texts)
    assert [round(toxicity.probability(t), 9) for t in texts] == [round(float(p), 9) for p in expected]


def test_toxicity_threshold_is_configurable() -> None:
    text = "This shit is broken again."
    assert ToxicityDetector(0.5).detect(text)
    assert not ToxicityDetector(1.0).detect(text)
    with pytest.raises(ValueError):
        ToxicityDetector(0)


# -- redaction ------------------------------------------------------------------

TEXT = "Call me at 555-867-5309 or mail bob@example.com today"
FINDINGS = [
    Finding(Category.PII, "PHONE_NUMBER", start=11, end=23),
    Finding(Category.PII, "EMAIL_ADDRESS", start=32, end=47),
]


def test_redaction_styles() -> None:
    assert Redactor(RedactionStyle.REPLACE).redact(TEXT, FINDINGS) == (
        "Call me at <PHONE_NUMBER> or mail <EMAIL_ADDRESS> today"
    )
    assert (
        Redactor(RedactionStyle.MASK).redact(TEXT, FINDINGS) == "Call me at ********5309 or mail ***********.com today"
    )
    salted = Redactor(RedactionStyle.HASH, salt=b"s" * 16)
    hashed = salted.redact(TEXT, FINDINGS)
    assert "555-867-5309" not in hashed and "bob@example.com" not in hashed
    assert hashed == Redactor(RedactionStyle.HASH, salt=b"s" * 16).redact(TEXT, FINDINGS)  # stable with a salt
    assert hashed != Redactor(RedactionStyle.HASH, salt=b"t" * 16).redact(TEXT, FINDINGS)
    with pytest.raises(ValueError, match="16 bytes"):
        Redactor(RedactionStyle.HASH, salt=b"short")


def test_overlapping_findings_are_redacted_once() -> None:
    sentence = Finding(Category.TOXICITY, "PROFANITY", start=0, end=len(TEXT))
    assert Redactor().redact(TEXT, [*FINDINGS, sentence]) == "<PROFANITY>"


# -- bad input ------------------------------------------------------------------


def test_binary_content_is_refused() -> None:
    for bad in ["abc\x00def", "\x01\x02\x03\x04 some \x05\x06\x07\x08"]:
        errors = ViolationCollector()
        check_content(bad, errors, "text")
        assert [v.field for v in errors.violations] == ["text"]
    fine = ViolationCollector()
    check_content("a tab\there, lines\r\n and a bell \x07 once in a long text", fine)
    assert fine.violations == []


def test_enormous_inputs_take_bounded_work(pii: PiiDetector, secrets: SecretDetector) -> None:
    # Inputs built to make naive regexes backtrack: long digit, separator and
    # token runs. Each must finish (no catastrophic backtracking) and find nothing.
    for text in ["1" * 200_000, "1 " * 100_000, "a" * 200_000 + "@", "-" * 100_000 + "password=", "+(" * 50_000]:
        assert pii.detect(text) == [] or all(f.end - f.start < 100 for f in pii.detect(text))
        assert secrets.detect(text) == []


# -- the engine -----------------------------------------------------------------


class Recording:
    """Wraps a detector: counts calls and remembers the threads they ran on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.category = inner.category
        self.texts: list[str] = []
        self.threads: list[str] = []

    def detect(self, text: str) -> list[Finding]:
        self.texts.append(text)
        self.threads.append(threading.current_thread().name)
        return list(self.inner.detect(text))


def engine(*detectors: Any, **options: Any) -> tuple[FirewallEngine, InMemoryDecisionLog]:
    decisions = InMemoryDecisionLog()
    return FirewallEngine(InMemoryRuleStore(), decisions, detectors=detectors, **options), decisions


async def test_conversation_turns_are_scanned_once(pii: PiiDetector) -> None:
    recording = Recording(pii)
    firewall, decisions = engine(recording)
    history = [Message(Role.SYSTEM, "You are helpful."), Message(Role.USER, "Mail me at kim@example.org")]
    first = await firewall.guard_prompt(history, CALLER)
    assert first.action is Action.REDACT
    history += [Message(Role.ASSISTANT, "Sure."), Message(Role.USER, "Thanks!")]
    second = await firewall.guard_prompt(history, CALLER)
    assert recording.texts == ["You are helpful.", "Mail me at kim@example.org", "Sure.", "Thanks!"]
    # Spans are positions in the joined prompt, in both turns.
    joined = "\n".join(m.content for m in history)
    assert [joined[f.start : f.end] for f in second.findings] == ["kim@example.org"]
    assert len((await decisions.list_decisions("acme", _all(), 10, None))[0]) == 2


def _all() -> Any:
    from pointsman.server.domain.ports.stores import DecisionFilter

    return DecisionFilter()


async def test_redacted_prompt_keeps_roles_and_untouched_messages(pii: PiiDetector) -> None:
    firewall, _ = engine(pii)
    messages = [
        Message(Role.SYSTEM, "Be brief."),
        Message(Role.USER, "My SSN is 536-22-1497 and my email kim@example.org", name="kim"),
    ]
    verdict = await firewall.guard_prompt(messages, CALLER)
    assert verdict.action is Action.REDACT
    assert verdict.messages[0] is messages[0]
    assert verdict.messages[1] == Message(Role.USER, "My SSN is <US_SSN> and my email <EMAIL_ADDRESS>", name="kim")
    assert verdict.redacted_text == "Be brief.\nMy SSN is <US_SSN> and my email <EMAIL_ADDRESS>"


async def test_block_wins_and_never_names_the_content(pii: PiiDetector, secrets: SecretDetector) -> None:
    firewall, decisions = engine(pii, secrets)
    token = SECRETS["GITHUB_TOKEN"]
    with pytest.raises(ContentBlocked) as blocked:
        await firewall.guard_prompt([Message(Role.USER, f"mail kim@example.org, token {token}")], CALLER)
    assert blocked.value.metadata["categories"] == "pii,secret"
    assert token not in str(blocked.value) and token not in repr(blocked.value.metadata)
    recorded = (await decisions.list_decisions("acme", _all(), 10, None))[0][0]
    assert recorded.action is Action.BLOCK
    assert {f.type for f in recorded.findings} == {"EMAIL_ADDRESS", "GITHUB_TOKEN"}


async def test_log_only_mode_turns_blocks_into_logs(secrets: SecretDetector) -> None:
    firewall, _ = engine(secrets, block_on_violation=False)
    verdict = await firewall.scan(f"key {SECRETS['STRIPE_KEY']}", Direction.INPUT, CALLER)
    assert verdict.action is Action.LOG and verdict.redacted_text == ""


async def test_large_texts_are_scanned_off_the_event_loop(secrets: SecretDetector) -> None:
    recording = Recording(secrets)
    firewall, _ = engine(recording, offload_chars=1000)
    await firewall.scan("short text", Direction.INPUT, CALLER)
    await firewall.scan("long text " * 200, Direction.INPUT, CALLER)
    assert recording.threads[0] == threading.current_thread().name
    assert recording.threads[1] != threading.current_thread().name


async def test_long_texts_are_chunked_without_losing_or_doubling_findings(secrets: SecretDetector) -> None:
    firewall, _ = engine(secrets)
    token = SECRETS["GITHUB_TOKEN"]
    filler = "lorem ipsum dolor sit amet " * 6000  # ~160 KB, several pieces
    positions = [CHUNK_CHARS - 20, CHUNK_CHARS + 4090, 3 * CHUNK_CHARS // 2, len(filler) - 10]
    text = filler
    for position in sorted(positions, reverse=True):
        text = text[:position] + f" {token} " + text[position:]
    verdict = await firewall.scan(text, Direction.INPUT, CALLER)
    assert [text[f.start : f.end] for f in verdict.findings] == [token] * len(positions)


def test_detectors_are_thread_safe(pii: PiiDetector, secrets: SecretDetector, toxicity: ToxicityDetector) -> None:
    texts = [
        f"Call {i:03d}-555-01{i % 100:02d}, mail u{i}@example.com, key {SECRETS['GITHUB_TOKEN']}, you idiot {i}"
        for i in range(200)
    ]

    def run(text: str) -> list[tuple[str, int, int]]:
        return [(f.type, f.start, f.end) for d in (pii, secrets, toxicity) for f in d.detect(text)]

    sequential = [run(t) for t in texts]
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(run, texts)) == sequential


async def test_cache_is_bounded(pii: PiiDetector) -> None:
    recording = Recording(pii)
    firewall, _ = engine(recording, cache_size=2)
    for text in ["one", "two", "three", "one"]:
        await firewall.scan(text, Direction.INPUT, CALLER)
    assert recording.texts == ["one", "two", "three", "one"]  # "one" was evicted
    await firewall.scan("three", Direction.INPUT, CALLER)
    assert len(recording.texts) == 4


async def test_binary_prompt_is_invalid_even_before_scanning(pii: PiiDetector) -> None:
    firewall, _ = engine(pii)
    with pytest.raises(InvalidArgument) as invalid:
        await firewall.guard_prompt([Message(Role.USER, "ok"), Message(Role.USER, "bin\x00ary")], CALLER)
    assert [v.field for v in invalid.value.violations] == ["messages[1].content"]


def test_engine_without_running_loop_is_not_needed() -> None:
    # The engine holds no loop-bound state at construction: it can be built
    # before the server's loop starts (as PointsmanServer does).
    firewall, _ = engine()
    assert asyncio.run(firewall.scan("hello", Direction.INPUT, CALLER)).action is Action.ALLOW


def _digit_recognizers(pii: PiiDetector) -> list[Any]:
    return [r for r in pii._recognizers if r not in pii._without_digits]


def _corpus_texts() -> list[str]:
    data = Path(__file__).resolve().parent.parent / "bench" / "data"
    return [item["full_text"] for name in ("faker_prompts.json", "faker_heldout.json") for item in _load(data / name)]


def _load(path: Path) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(path.read_text())
    return loaded


def test_pii_recognizers_skipped_without_digits_only_ever_match_digits(pii: PiiDetector) -> None:
    """The detector skips these recognizers on a text with no digit (most
    short prompts and stream windows): every span they find holds one."""
    recognizers = _digit_recognizers(pii)
    assert {r.entity for r in recognizers} >= {"CREDIT_CARD", "PHONE_NUMBER", "US_SSN", "IBAN_CODE"}
    checked = 0
    for text in _corpus_texts():
        for recognizer in recognizers:
            for start, end, _ in recognizer.find(text, text.lower()):
                checked += 1
                assert any(c.isdecimal() for c in text[start:end]), (recognizer.entity, text[start:end])
        # The same text with its digits spelled as letters: nothing for them to find.
        lettered = "".join("x" if c.isdecimal() else c for c in text)
        for recognizer in recognizers:
            assert not list(recognizer.find(lettered, lettered.lower())), (recognizer.entity, lettered)
    assert checked > 100


def test_pii_without_digits_still_finds_what_needs_none(pii: PiiDetector) -> None:
    for text, expected in (
        ("write to kim@example.org now", ("EMAIL_ADDRESS", "kim@example.org")),
        ("block abcd::ef please", ("IP_ADDRESS", "abcd::ef")),
        ("the card aa:bb:cc:dd:ee:ff is", ("MAC_ADDRESS", "aa:bb:cc:dd:ee:ff")),
    ):
        assert expected in found(pii, text)
    # One digit anywhere and every recognizer runs again.
    assert ("PHONE_NUMBER", "(415) 555-0132") in found(pii, "write to kim@example.org or call (415) 555-0132")
