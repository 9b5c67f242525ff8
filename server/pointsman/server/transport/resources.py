"""Resource names and page tokens, checked at the edge."""

from __future__ import annotations

import base64
import binascii
import re

from ..domain.errors import InvalidArgument
from ..domain.validation import has_control_characters

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_TOKEN_CHARS = 1024
# ASCII digits only: str.isdigit() also takes '²' and other scripts' digits,
# which int() refuses, and int() refuses more than 4,300 digits.
_OFFSET = re.compile(r"[0-9]{1,15}")
_RECORD_ID = re.compile(r"[0-9a-f]{24}")  # new_record_id(): what a request log or decision page token carries


def page_size(value: int) -> int:
    """AIP-158: 0 means the default; above the maximum is coerced down."""
    if value < 0:
        raise InvalidArgument.one("page_size", "must not be negative")
    return DEFAULT_PAGE_SIZE if value == 0 else min(value, MAX_PAGE_SIZE)


def encode_token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode()


def not_issued() -> InvalidArgument:
    return InvalidArgument.one("page_token", "is not a token this server issued")


def decode_token(token: str) -> str | None:
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise not_issued()
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument.one("page_token", "is not a token this server issued") from None


def decode_offset(token: str) -> int:
    cursor = decode_token(token)
    if cursor is None:
        return 0
    if not _OFFSET.fullmatch(cursor):
        raise not_issued()
    return int(cursor)


def decode_record_cursor(token: str) -> str | None:
    """The id of the last record of a previous page (request log, decisions)."""
    cursor = decode_token(token)
    if cursor is not None and not _RECORD_ID.fullmatch(cursor):
        raise not_issued()
    return cursor


def resource_id(name: str, collection: str, field: str = "name") -> str:
    """`rules/abc` -> `abc`; anything else is an invalid argument."""
    prefix = collection + "/"
    if (
        not name.startswith(prefix)
        or len(name) == len(prefix)
        or "/" in name[len(prefix) :]
        or len(name) > 256
        or has_control_characters(name)  # ids reach the database and the log
    ):
        raise InvalidArgument.one(field, f"must be a resource name of the form {collection}/{{id}}")
    return name[len(prefix) :]
