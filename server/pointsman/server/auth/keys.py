"""API keys: minted with 256 bits of randomness, stored as a SHA-256 digest.
A fast hash is enough for a key this random (guessing it is hopeless either
way); slow hashes are for passwords people choose."""

from __future__ import annotations

import hashlib
import re
import secrets

_KEY = re.compile(r"^pm_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$")


def mint_api_key() -> tuple[str, str]:
    """A new key's id (its non-secret lookup part) and its plaintext."""
    key_id = secrets.token_hex(8)
    return key_id, f"pm_{key_id}_{secrets.token_urlsafe(32)}"


def api_key_id(plaintext: str) -> str | None:
    """The id inside a well-formed key; None for anything else."""
    match = _KEY.match(plaintext)
    return match.group(1) if match else None


def api_key_digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()
