"""The `pointsman` command: runs the server, and talks to one through the
Python client. Exit status: 0 on success, the gRPC status code number on an
RPC error (5 NOT_FOUND, 14 UNAVAILABLE, ...), 1 when `health` is not SERVING,
2 for a usage error.

This module only builds the parser and dispatches; each command group lives in
its own module, registered by COMMANDS below (add a module there to add one)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable

from ..client import PointsmanError
from . import agents, auth, batch, chat, conversation, embed, firewall, operations, registry, serve, workflows
from .arguments import connection_flags
from .output import print_error

# Each module's `register(subcommands, connection_flags)` adds its commands, in help order.
COMMANDS = [serve, chat, embed, conversation, firewall, registry, batch, auth, operations, agents, workflows]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pointsman")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    common = connection_flags()
    parser = argparse.ArgumentParser(prog="pointsman", description="Pointsman LLM gateway")
    parser.add_argument("--version", action="version", version=f"pointsman {_version()}")
    parser.set_defaults(address_given=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.register(sub, common)
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(list(argv) if argv is not None else None)
    if unknown:  # with the command's usage, not the top level's
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except PointsmanError as error:
        if error.code.name == "DEADLINE_EXCEEDED" and getattr(args, "watch_timeout", None):
            return 0  # a watch that ran for the time asked for ended normally
        return print_error(error)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as a command killed by
        # SIGPIPE would; stdout goes to /dev/null so the exit flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    return code


if __name__ == "__main__":
    sys.exit(main())
