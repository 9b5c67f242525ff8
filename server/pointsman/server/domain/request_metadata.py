"""Checks on a request's metadata: the end user it is for and the tags its
spend is attributed by. Both are stored in the request log and grouped by in
stats, so they are bounded, and keys are plain words a query can name."""

from __future__ import annotations

import re

from .chat import RequestMetadata
from .errors import ViolationCollector
from .validation import check_text

# Anthropic's limit on metadata.user_id; OpenAI's `user` is as long.
MAX_END_USER_ID_CHARS = 256
# OpenAI's limits on its own metadata map, so its callers' tags fit.
MAX_TAGS = 16
MAX_TAG_KEY_CHARS = 64
MAX_TAG_VALUE_CHARS = 512
# Letters, digits and a few separators: a key is named in filters and CLI
# flags (`--tag team=search`), where '=' and spaces would be ambiguous.
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:\-]+")
TAG_KEY_CHARSET = "letters, digits, '_', '-', '.' or ':'"


def check_tag_key(key: str, errors: ViolationCollector, path: str) -> None:
    if not key or len(key) > MAX_TAG_KEY_CHARS:
        errors.add(path, f"a tag key must be 1 to {MAX_TAG_KEY_CHARS} characters")
    elif _TAG_KEY.fullmatch(key) is None:
        errors.add(path, f"a tag key may hold only {TAG_KEY_CHARSET}")


def check_tags(tags: dict[str, str], errors: ViolationCollector, path: str, *, max_tags: int = MAX_TAGS) -> None:
    if len(tags) > max_tags:
        errors.add(path, f"at most {max_tags} tags are allowed")
        return
    for key, value in tags.items():
        check_tag_key(key, errors, f"{path}[{key[:MAX_TAG_KEY_CHARS]!r}]")
        check_text(value, errors, f"{path}[{key[:MAX_TAG_KEY_CHARS]!r}]", max_chars=MAX_TAG_VALUE_CHARS)


def check_end_user_id(end_user_id: str, errors: ViolationCollector, path: str) -> None:
    check_text(end_user_id, errors, path, max_chars=MAX_END_USER_ID_CHARS)


def check_metadata(metadata: RequestMetadata | None, errors: ViolationCollector, path: str = "metadata") -> None:
    if metadata is None:
        return
    check_end_user_id(metadata.end_user_id, errors, f"{path}.end_user_id")
    check_tags(metadata.tags, errors, f"{path}.tags")
