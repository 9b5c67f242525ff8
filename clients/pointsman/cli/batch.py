"""Batch jobs: `batch submit|ls|get|watch|cancel`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from pointsman.orchestrator.v1 import orchestrator_pb2 as pb

from .arguments import command, group
from .connection import connect
from .output import label, name, pages, print_items, print_json


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    batch = group(sub, "batch", "batch jobs", "batch_command")
    p = command(
        batch, "submit", cmd_batch, "submit a JSON Lines file of items ('-' reads stdin); prints the name", [common]
    )
    p.add_argument("file", help='one item per line: {"custom_id", "model", "messages": [{"role", "content"}]}')
    p.add_argument("--max-concurrency", type=int, default=0, help="items at once, 1 to 64 (default 4)")
    command(batch, "ls", cmd_batch, "list batches, newest first", [common])
    for verb, text in (
        ("get", "show a batch's progress"),
        ("watch", "print each result as it completes, then the final state"),
        ("cancel", "cancel: items not yet started never run"),
    ):
        p = command(batch, verb, cmd_batch, text, [common])
        p.add_argument("name", help="batches/{id} or {id}")
        if verb == "watch":
            p.add_argument("--watch-timeout", type=float, default=None, help="stop watching after this many seconds")


class BadBatchFile(ValueError):
    pass


def batch_items(text: str) -> list[pb.BatchItem]:
    """BatchItems from JSON Lines: one object per line in the protobuf JSON
    mapping (`custom_id`, `model`, `messages`, `config`); a message's role may
    also be written plainly ("user", "system", "assistant", "tool")."""
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            for message in data.get("messages") or []:
                role = message.get("role") if isinstance(message, dict) else None
                if isinstance(role, str) and not role.upper().startswith("ROLE_"):
                    message["role"] = "ROLE_" + role.upper()
            items.append(json_format.ParseDict(data, pb.BatchItem()))
        except (ValueError, json_format.ParseError) as error:
            raise BadBatchFile(f"line {number}: {error}") from None
    if not items:
        raise BadBatchFile("no items")
    return items


def _batch_line(batch: Any) -> str:
    state = label(pb.BatchState, batch.state, "BATCH_STATE_")
    return (
        f"{batch.name}\t{state}\t{batch.succeeded_items} succeeded, {batch.failed_items} failed, "
        f"{batch.cancelled_items} cancelled, of {batch.total_items}"
    )


def _result_line(result: Any) -> str:
    from grpc import StatusCode

    if result.HasField("error"):
        code = next((c.name for c in StatusCode if c.value[0] == result.error.code), str(result.error.code))
        return f"{result.custom_id}\terror {code} {result.error.reason}: {result.error.message}"
    return f"{result.custom_id}\tok\t{result.response.message.content!r}"


def cmd_batch(args: argparse.Namespace) -> int:
    if args.batch_command == "submit":
        try:
            items = batch_items(sys.stdin.read() if args.file == "-" else Path(args.file).read_text())
        except (OSError, BadBatchFile) as error:
            print(f"pointsman: {args.file}: {error}", file=sys.stderr)
            return 2
    with connect(args) as client:
        if args.batch_command == "submit":
            request = pb.CreateBatchRequest(items=items, max_concurrency=args.max_concurrency)
            batch = client.orchestrator.CreateBatch(request).batch
            print_json(batch) if args.json else print(batch.name)
            return 0
        if args.batch_command == "ls":
            batches = pages(
                lambda token: client.orchestrator.ListBatches(pb.ListBatchesRequest(page_token=token)), "batches"
            )
            print_items(batches, _batch_line, args.json, "no batches")
            return 0
        resource = name(args.name, "batches")
        if args.batch_command == "watch":
            watch = client.orchestrator.WatchBatch(pb.WatchBatchRequest(name=resource), timeout=args.watch_timeout)
            for event in watch:
                if args.json:
                    print_json(event)
                elif event.HasField("result"):
                    print(_result_line(event.result), flush=True)
                else:
                    print(_batch_line(event.done), flush=True)
            return 0
        if args.batch_command == "cancel":
            batch = client.orchestrator.CancelBatch(pb.CancelBatchRequest(name=resource)).batch
        else:
            batch = client.orchestrator.GetBatch(pb.GetBatchRequest(name=resource)).batch
        print_json(batch) if args.json else print(_batch_line(batch))
    return 0
