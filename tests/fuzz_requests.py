"""Hostile requests for every RPC of Pointsman's services, generated from the
service descriptors in gen/: NUL and other control characters, huge strings,
invalid UTF-8 on the wire, extreme integers and floats, out-of-range
Timestamps and Durations, huge repeated fields, bogus page tokens and
resource names, unknown enum values. Seeded, so a run is repeatable.

Used by tests/test_fuzz.py (which fails on INTERNAL or UNKNOWN) and
bench/fuzz_report.py (which prints the statuses seen)."""

from __future__ import annotations

import asyncio
import base64
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
from google.protobuf import descriptor, message_factory
from google.protobuf.descriptor import FieldDescriptor

from pointsman.auth.v1 import auth_pb2
from pointsman.firewall.v1 import firewall_pb2
from pointsman.orchestrator.v1 import orchestrator_pb2
from pointsman.registry.v1 import registry_pb2

SERVICES = (
    orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"],
    firewall_pb2.DESCRIPTOR.services_by_name["FirewallService"],
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
)
# Statuses that mean the server did not foresee the request; and UNAVAILABLE,
# since nothing is down during a run: it would be a permanent error that
# tells the caller to retry.
FORBIDDEN = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE})
MAX_DEPTH = 4
HUGE_REPEATED = 3000
# A huge repeated field of messages stops near this many encoded bytes: past
# the server's 16 MiB limit is enough to test the refusal, and nested huge
# fields (3000 x 3000 image parts) would otherwise build gigabytes here.
HUGE_FIELD_BYTES = 20 * 1024 * 1024


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


HOSTILE_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "\x01\x02\x1b[31m\x7f",
    "line\nbreak\r\n",
    "\u2028\u2029",
    "\x85\x9f",
    "\ufffd\ufeff",
    "😀" * 50,
    "é" * 5000,
    "x" * 100_000,
    " ",
    "../../etc/passwd",
    "'; DROP TABLE rules; --",
    "%s%n{0}",
    "(a+)+$",
    "[",
]
PAGE_TOKENS = [
    _b64("²"),
    _b64("١٢٣"),
    _b64("\uff11\uff12"),  # fullwidth digits
    _b64("9" * 5000),
    _b64("\x00"),
    _b64("-1"),
    _b64("1:\x00"),
    _b64("99999999999999999999:abc"),
    _b64("0" * 24),
    _b64("g" * 24),
    "!!!not-base64",
    "é",
    "A" * 3000,
    _b64("10"),
]
COLLECTIONS = ("rules", "batches", "instances", "conversations", "users", "apiKeys", "models", "calls")
PLAUSIBLE = {
    "model": ["builtin", "gpt-99", "builtin\x00x"],
    "judge_model": ["builtin", "nope"],
    "models": ["builtin", "gpt-99"],
    "content": ["hello", "mail me at a@b.example", "x"],
    "text": ["hello", "my card is 4111 1111 1111 1111"],
    "custom_id": ["a", "b", "a\x00"],
    "pattern": ["secret", "(a|b)+c", "["],
    "keywords": ["weather", "\x00"],
    "description": ["a rule"],
    "address": ["127.0.0.1:9", "host:1\x00"],
    "instance_id": ["inst-1", "Inst_1"],
    "email": ["developer@pointsman.dev", "nobody@example.com"],
    "display_name": ["ci key"],
    "version": ["1.0"],
    "status_code": ["OK", "INTERNAL"],
    "principal": ["users/dev-admin"],
    "paths": ["pattern", "description", "enabled", "bogus", "rule.pattern"],
    "token": ["not.a.jwt", "a.b.c"],
    "tool_call_id": ["call_1"],
    "conversation_id": ["abc"],
}


def _names(rng: random.Random) -> str:
    collection = rng.choice(COLLECTIONS)
    return collection + "/" + rng.choice(["abc", "\x00", "a/b", "x" * 300, "0123456789abcdef", "\u2028", ""])


def _string(rng: random.Random, fd: FieldDescriptor) -> str:
    name = fd.name
    roll = rng.random()
    if name == "page_token" and roll < 0.8:
        return rng.choice(PAGE_TOKENS)
    if name in ("name", "user", "parent") and roll < 0.7:
        return _names(rng)
    if name in PLAUSIBLE and roll < 0.6:
        return rng.choice(PLAUSIBLE[name])
    return rng.choice(HOSTILE_STRINGS)


INT32 = [0, 1, -1, 2**31 - 1, -(2**31), 7, 100_000]
INT64 = [0, 1, -1, 2**62, -(2**62), 2**63 - 1, -(2**63), 253_402_300_800, -62_135_596_801]
UINT32 = [0, 1, 2**32 - 1]
UINT64 = [0, 1, 2**64 - 1]
FLOATS = [0.0, -0.0, -1.0, 1e308, -1e308, float("inf"), float("-inf"), float("nan"), 0.5, 3.0]
_SIGNED32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_SIGNED64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_UNSIGNED32 = {FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32}
_UNSIGNED64 = {FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64}


def _scalar(rng: random.Random, fd: FieldDescriptor) -> object:
    kind = fd.type
    if kind == FieldDescriptor.TYPE_STRING:
        return _string(rng, fd)
    if kind == FieldDescriptor.TYPE_BYTES:
        return rng.choice([b"", b"\x00", b"\xff\xfe\xfd", b"x" * 100_000])
    if kind == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in fd.enum_type.values]
        return rng.choice(known) if rng.random() < 0.7 else rng.choice([99, -1, 2**31 - 1, -(2**31)])
    if kind in _SIGNED32:
        return rng.choice(INT32)
    if kind in _SIGNED64:
        return rng.choice(INT64)
    if kind in _UNSIGNED32:
        return rng.choice(UINT32)
    if kind in _UNSIGNED64:
        return rng.choice(UINT64)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        value = rng.choice(FLOATS)
        return (
            max(min(value, 3e38), -3e38) if kind == FieldDescriptor.TYPE_FLOAT and abs(value) != float("inf") else value
        )
    raise AssertionError(f"unexpected field type {kind}")


def fill(rng: random.Random, message: object, depth: int = 0) -> None:
    """Sets a random selection of the message's fields to hostile values."""
    desc: descriptor.Descriptor = message.DESCRIPTOR  # type: ignore[attr-defined]
    chosen_oneofs: set[str] = set()
    for fd in desc.fields:
        if rng.random() > (0.7 if depth == 0 else 0.5):
            continue
        if fd.containing_oneof is not None:
            if fd.containing_oneof.name in chosen_oneofs:
                continue
            chosen_oneofs.add(fd.containing_oneof.name)
        is_message = fd.type == FieldDescriptor.TYPE_MESSAGE
        if fd.is_repeated:
            target = getattr(message, fd.name)
            if is_message and fd.message_type.GetOptions().map_entry:
                key_fd = fd.message_type.fields_by_name["key"]
                value_fd = fd.message_type.fields_by_name["value"]
                for _ in range(rng.choice([1, 2, 40])):
                    key = _scalar(rng, key_fd)
                    if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
                        if depth < MAX_DEPTH:
                            fill(rng, target[key], depth + 1)
                    else:
                        target[key] = _scalar(rng, value_fd)
                continue
            count = rng.choice([0, 1, 2, 3]) if rng.random() < 0.9 else HUGE_REPEATED
            if is_message:
                if depth >= MAX_DEPTH:
                    continue
                if count == HUGE_REPEATED:
                    element = target.add()
                    fill(rng, element, depth + 1)
                    count = min(count, max(1, HUGE_FIELD_BYTES // max(1, element.ByteSize())))
                    for _ in range(count - 1):
                        target.add().CopyFrom(element)
                else:
                    for _ in range(count):
                        fill(rng, target.add(), depth + 1)
            else:
                value = _scalar(rng, fd)
                target.extend([value] * count if count == HUGE_REPEATED else [_scalar(rng, fd) for _ in range(count)])
        elif is_message:
            if depth < MAX_DEPTH:
                child = getattr(message, fd.name)
                child.SetInParent()
                fill(rng, child, depth + 1)
        else:
            setattr(message, fd.name, _scalar(rng, fd))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def with_invalid_utf8(rng: random.Random, message: object) -> bytes | None:
    """The message's encoding with one top-level string field holding bytes
    that are not UTF-8 (which no protobuf library lets one set)."""
    strings = [fd for fd in message.DESCRIPTOR.fields if fd.type == FieldDescriptor.TYPE_STRING]  # type: ignore[attr-defined]
    if not strings:
        return None
    fd = rng.choice(strings)
    junk = rng.choice([b"\xff", b"\xc3\x28", b"ok\xed\xa0\x80", b"\x80" * 10])
    return message.SerializeToString() + _varint(fd.number << 3 | 2) + _varint(len(junk)) + junk  # type: ignore[attr-defined]


@dataclass
class Case:
    method: str  # /package.Service/Method
    kind: str  # unary_unary, unary_stream, stream_unary, stream_stream
    payloads: list[bytes]


def _kind(method: descriptor.MethodDescriptor) -> str:
    return f"{'stream' if method.client_streaming else 'unary'}_{'stream' if method.server_streaming else 'unary'}"


def methods() -> Iterator[descriptor.MethodDescriptor]:
    for service in SERVICES:
        yield from service.methods


def cases(seed: int, per_method: int) -> Iterator[Case]:
    rng = random.Random(seed)
    for method in methods():
        request_class = message_factory.GetMessageClass(method.input_type)
        path = f"/{method.containing_service.full_name}/{method.name}"
        for _ in range(per_method):
            payloads = []
            for _ in range(rng.choice([1, 1, 2, 3]) if method.client_streaming else 1):
                request = request_class()
                fill(rng, request)
                raw = with_invalid_utf8(rng, request) if rng.random() < 0.1 else None
                payloads.append(raw if raw is not None else request.SerializeToString())
            yield Case(path, _kind(method), payloads)


@dataclass
class Outcome:
    statuses: Counter[str] = field(default_factory=Counter)
    forbidden: list[tuple[str, str, str]] = field(default_factory=list)  # method, code, details
    cases: int = 0


STREAM_READS = 3
CLIENT_CORE_ERROR = "Internal error from Core"
STREAM_PAUSE = 0.05
CALL_TIMEOUT = 10.0


async def _run_case(channel: grpc.aio.Channel, case: Case) -> tuple[grpc.StatusCode, str]:
    """Sends the case, reads at most a few responses (watches never end by
    themselves), and returns the status: OK when it answered that far."""
    identity = None  # payloads are encoded already; responses are not decoded
    try:
        if case.kind == "unary_unary":
            await channel.unary_unary(case.method, identity, identity)(case.payloads[0], timeout=CALL_TIMEOUT)
            return grpc.StatusCode.OK, ""
        if case.kind == "stream_unary":
            await channel.stream_unary(case.method, identity, identity)(iter(case.payloads), timeout=CALL_TIMEOUT)
            return grpc.StatusCode.OK, ""
        if case.kind == "unary_stream":
            call = channel.unary_stream(case.method, identity, identity)(case.payloads[0], timeout=CALL_TIMEOUT)
        else:
            call = channel.stream_stream(case.method, identity, identity)(iter(case.payloads), timeout=CALL_TIMEOUT)
        try:
            for read in range(STREAM_READS):
                try:
                    # A watch answers its snapshot, then waits for changes:
                    # past the first response, a pause means it is still open.
                    response = await (call.read() if read == 0 else asyncio.wait_for(call.read(), STREAM_PAUSE))
                except TimeoutError:
                    return grpc.StatusCode.OK, "(still streaming; stopped reading)"
                if response is grpc.aio.EOF:
                    break
            else:
                return grpc.StatusCode.OK, "(more responses; stopped reading)"
            return await call.code(), await call.details() or ""
        finally:
            call.cancel()
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""


async def run(address: str, seed: int, per_method: int, concurrency: int = 4) -> Outcome:
    """Runs every case against the server at `address`, a few at a time."""
    outcome = Outcome()
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        # Cases are made as the workers take them, not all first: a few hold
        # tens of megabytes each.
        queue = cases(seed, per_method)

        async def worker() -> None:
            for case in queue:
                outcome.cases += 1
                code, details = await _run_case(channel, case)
                outcome.statuses[code.name] += 1
                # "Internal error from Core" is the client library's own: its
                # writer met a stream the server had already ended (seen on
                # Converse, rarely); the server's INTERNAL always quotes a request id.
                if code in FORBIDDEN and details != CLIENT_CORE_ERROR:
                    outcome.forbidden.append((case.method, code.name, details))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcome
