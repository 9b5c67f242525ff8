"""The PII detector runs Presidio's recognizers without importing Presidio's
package (which imports spaCy): each one must be the same as Presidio's own,
in its patterns, context words, checksums and invalidation."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from pointsman.server.domain.firewall.detectors import presidio_patterns

# Values of every kind the recognizers see, valid and not: each recognizer's
# checks run on these and on whatever its patterns find in them.
SAMPLES = [
    "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    "1BoatSLRHtKNngkdXEeobR76b53LETtpyX",
    "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdz",
    "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432",
    "GB82WEST12345698765433",
    "DE89 3704 0044 0532 0130 00",
    "ES91 2100 0418 4502 0005 1332",
    "192.168.1.1",
    "10.0.0.256",
    "2001:db8::ff00:42:8329",
    "::1",
    "00:1A:2B:3C:4D:5E",
    "FF:FF:FF:FF:FF:FF",
    "0123.4567.89ab",
    "https://example.com/path?q=1",
    "www.example.org",
    "123e4567-e89b-12d3-a456-426614174000",
    "00000000-0000-0000-0000-000000000000",
    "123e4567-e89b-02d3-a456-426614174000",
    "2024-01-31",
    "01/31/2024",
    "12-JAN-2024",
    "943 476 5919",
    "9434765919",
    "401 023 2137",
    "AB1234563",
    "BB1388568",
    "078-05-1120",
    "123-45-6789",
    "000-12-3456",
    "666-12-3456",
    "911-70-1234",
    "912-91-3457",
    "A12345678",
    "123456789",
    "D1234567",
    "945-2234-34567",
    "X1234567",
    "ab123456",
]


def matches(recognizer: presidio_patterns.PatternRecognizer) -> list[str]:
    """What the recognizer's patterns find in the samples: the values its
    checks are given in use."""
    text = "  ".join(SAMPLES)
    found = {m.group(0) for p in recognizer.patterns for m in re.finditer(p.regex, text, re.IGNORECASE)}
    return sorted(found)


def outcome(check: Callable[[str], object], value: str) -> object:
    try:
        return check(value)
    except Exception as error:
        return type(error)


@pytest.mark.parametrize("name", sorted(presidio_patterns.FILES))
def test_each_recognizer_is_presidios_own(name: str) -> None:
    import presidio_analyzer.predefined_recognizers as real_module

    real = getattr(real_module, name)()
    ours = presidio_patterns.recognizer(name)
    assert ours.supported_entities == real.supported_entities
    assert ours.context == real.context
    assert [(p.name, p.regex, p.score) for p in ours.patterns] == [(p.name, p.regex, p.score) for p in real.patterns]
    values = matches(real)
    assert values, f"no sample matches {name}"
    for value in values:
        assert outcome(ours.validate_result, value) == outcome(real.validate_result, value), value
        assert outcome(ours.invalidate_result, value) == outcome(real.invalidate_result, value), value


def test_the_pii_detector_does_not_import_presidio_or_spacy() -> None:
    code = (
        "import sys\n"
        "from pointsman.server.domain.firewall.detectors.pii import PiiDetector\n"
        "found = PiiDetector().detect('mail me at someone@example.com, IBAN GB82 WEST 1234 5698 7654 32')\n"
        "print(sorted({f.type for f in found}))\n"
        "print(sorted(m for m in ('spacy', 'presidio_analyzer') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found, imported = result.stdout.splitlines()
    assert found == "['EMAIL_ADDRESS', 'IBAN_CODE']"
    assert imported == "[]"


@pytest.mark.parametrize("value", ["", "abc", "someone@example.com", "4111 1111 1111 1111", "çà€ unicode 🙂 value"])
def test_redaction_gives_what_presidio_anonymizers_operators_give(value: str) -> None:
    from presidio_anonymizer.operators import Hash, Mask, Replace

    from pointsman.server.domain.firewall.redaction import MASK_KEEP, MASK_MIN_CHARS, RedactionStyle, Redactor

    salt = b"a salt of sixteen bytes"
    keep = MASK_KEEP if len(value) >= MASK_MIN_CHARS else 0
    mask = {"masking_char": "*", "chars_to_mask": len(value) - keep, "from_end": False}
    assert Redactor(RedactionStyle.REPLACE).replacement("EMAIL", value) == Replace().operate(
        value, {"new_value": "<EMAIL>"}
    )
    assert Redactor(RedactionStyle.MASK).replacement("EMAIL", value) == Mask().operate(value, mask)
    assert Redactor(RedactionStyle.HASH, salt=salt).replacement("EMAIL", value) == Hash().operate(
        value, {"hash_type": "sha256", "salt": salt}
    )
