"""Resource names and page tokens, checked at the edge."""

from __future__ import annotations

import base64
import binascii

from ..domain.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(value: int) -> int:
    """AIP-158: 0 means the default; above the maximum is coerced down."""
    if value < 0:
        raise InvalidArgument.one("page_size", "must not be negative")
    return DEFAULT_PAGE_SIZE if value == 0 else min(value, MAX_PAGE_SIZE)


def encode_token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode()


def decode_token(token: str) -> str | None:
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument.one("page_token", "is not a token this server issued") from None


def decode_offset(token: str) -> int:
    cursor = decode_token(token)
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise InvalidArgument.one("page_token", "is not a token this server issued")
    return int(cursor)


def resource_id(name: str, collection: str, field: str = "name") -> str:
    """`rules/abc` -> `abc`; anything else is an invalid argument."""
    prefix = collection + "/"
    if not name.startswith(prefix) or len(name) == len(prefix) or "/" in name[len(prefix) :] or len(name) > 256:
        raise InvalidArgument.one(field, f"must be a resource name of the form {collection}/{{id}}")
    return name[len(prefix) :]
