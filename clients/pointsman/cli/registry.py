"""Orchestrator instances: `registry ls`, `registry watch`."""

from __future__ import annotations

import argparse
from typing import Any

from pointsman.registry.v1 import registry_pb2 as pb

from .arguments import command, group
from .connection import connect
from .output import label, pages, print_items, print_json


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    registry = group(sub, "registry", "orchestrator instances", "registry_command")
    for verb, text in (("ls", "list live instances"), ("watch", "print instances, then every change")):
        p = command(registry, verb, cmd_registry, text, [common])
        p.add_argument(
            "--watch-timeout",
            type=float,
            default=None,
            help=argparse.SUPPRESS if verb == "ls" else "stop watching after this many seconds",
        )


def _line(instance: Any) -> str:
    expires = instance.lease_expire_time.ToDatetime().strftime("%H:%M:%S")
    return f"{instance.name}\t{instance.address}\t{instance.version}\tlease until {expires}Z"


def cmd_registry(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.registry_command == "ls":
            instances = pages(
                lambda token: client.registry.ListInstances(pb.ListInstancesRequest(page_token=token)), "instances"
            )
            print_items(instances, _line, args.json, "no live instances (none has registered with this registry)")
            return 0
        for event in client.registry.WatchInstances(pb.WatchInstancesRequest(), timeout=args.watch_timeout):
            if args.json:
                print_json(event)
            elif event.HasField("snapshot"):
                print(f"snapshot: {len(event.snapshot.instances)} instances", flush=True)
                for instance in event.snapshot.instances:
                    print(f"  {_line(instance)}", flush=True)
            else:
                change = label(pb.InstanceChangeType, event.change.change_type, "INSTANCE_CHANGE_TYPE_")
                print(f"{change}: {_line(event.change.instance)}", flush=True)
    return 0
