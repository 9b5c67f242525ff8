"""How commands print: protobuf JSON, errors with their details, enum labels,
pages of list RPCs."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from ..client import PointsmanError

# ErrorInfo metadata printed under an error, in this order first; other keys follow.
_DETAIL_ORDER = ("categories", "rules", "decision")


def print_json(message: Message) -> None:
    print(json_format.MessageToJson(message, indent=None), flush=True)


def print_error(error: PointsmanError) -> int:
    """The status, the reason, each field violation and each ErrorInfo detail
    (a block names its categories, rules and decision), then the request id.
    Returns the exit status: the gRPC status code's number."""
    print(f"error: {error}", file=sys.stderr)
    for violation in error.field_violations:
        print(f"  {violation.field}: {violation.description}", file=sys.stderr)
    details = {k: v for k, v in error.metadata.items() if k != "request_id" and v}
    for key in sorted(details, key=lambda k: (_DETAIL_ORDER.index(k) if k in _DETAIL_ORDER else 99, k)):
        print(f"  {key.replace('_', ' ')}: {details[key]}", file=sys.stderr)
    if error.retry_delay is not None:
        print(f"  retry after: {error.retry_delay:g} s", file=sys.stderr)
    if error.request_id:
        print(f"  request id: {error.request_id}", file=sys.stderr)
    return int(error.code.value[0])


def label(enum: Any, value: int, prefix: str) -> str:
    """An enum value as a word: CIRCUIT_STATE_OPEN -> open."""
    return str(enum.Name(value)).removeprefix(prefix).lower()


def when(stamp: Timestamp) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M:%SZ") if stamp.seconds or stamp.nanos else "-"


def name(value: str, collection: str) -> str:
    """A resource name from `{id}` or `collection/{id}`."""
    return value if value.startswith(collection + "/") else f"{collection}/{value}"


def pages(fetch: Callable[[str], Any], field: str) -> Iterator[Any]:
    token = ""
    while True:
        response = fetch(token)
        yield from getattr(response, field)
        token = response.next_page_token
        if not token:
            return


def first(limit: int, rpc: Callable[[Any], Any], request: Any, field: str) -> Iterator[Any]:
    """At most `limit` items of a paged list RPC, fetching pages only as needed."""

    def fetch(token: str) -> Any:
        request.page_token = token
        return rpc(request)

    return itertools.islice(pages(fetch, field), limit)


def print_items(items: Iterator[Any], line: Callable[[Any], str], json: bool, empty: str) -> None:
    """One line per item (or its JSON); `empty` on stderr when there is none,
    so that a person sees why nothing came and a pipeline still reads nothing."""
    seen = False
    for item in items:
        seen = True
        print_json(item) if json else print(line(item))
    if not seen and not json:
        print(empty, file=sys.stderr)
