"""The flags every client command shares, and how a command is registered."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from ..client.options import DEFAULT_ADDRESS, DEFAULT_MODEL

Command = Callable[[argparse.Namespace], int]
Subcommands = "argparse._SubParsersAction[argparse.ArgumentParser]"


class AddressAction(argparse.Action):
    """Records that --address was given, so `serve` can tell it from the default."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        namespace.address = values
        namespace.address_given = True


def connection_flags() -> argparse.ArgumentParser:
    """The parent parser of every command that talks to a server."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--address",
        action=AddressAction,
        default=os.environ.get("POINTSMAN_ADDRESS", DEFAULT_ADDRESS),
        help="server host:port (env POINTSMAN_ADDRESS; default %(default)s)",
    )
    common.add_argument(
        "--json", action="store_true", help="print responses in the protobuf JSON mapping, one per line"
    )
    common.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="deadline of each call in seconds, streaming ones included (default: 30, a stream 300)",
    )
    common.add_argument(
        "--api-key", default=os.environ.get("POINTSMAN_API_KEY"), help="API key (env POINTSMAN_API_KEY)"
    )
    common.add_argument(
        "--token", default=os.environ.get("POINTSMAN_TOKEN"), help="bearer token, a JWT (env POINTSMAN_TOKEN)"
    )
    common.add_argument(
        "--tls",
        action="store_true",
        default=os.environ.get("POINTSMAN_TLS", "").lower() in ("1", "true", "yes"),
        help="connect over TLS, trusting the system's roots (env POINTSMAN_TLS=true)",
    )
    for flag, env, text in (
        ("--ca-file", "POINTSMAN_CA_FILE", "connect over TLS, trusting this CA certificate, PEM"),
        ("--tls-server-name", "POINTSMAN_TLS_SERVER_NAME", "check the server's certificate against this name"),
        ("--client-cert", "POINTSMAN_CLIENT_CERT_FILE", "client certificate, PEM, for a server that requires one"),
        ("--client-key", "POINTSMAN_CLIENT_KEY_FILE", "the client certificate's private key, PEM"),
    ):
        common.add_argument(flag, default=os.environ.get(env), help=f"{text} (env {env})")
    return common


def model_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m",
        "--model",
        default=os.environ.get("POINTSMAN_MODEL", DEFAULT_MODEL),
        help="model alias (env POINTSMAN_MODEL; default %(default)s)",
    )


def command(
    sub: Any, name: str, func: Command, help: str, parents: list[argparse.ArgumentParser] | None = None, **kw: Any
) -> argparse.ArgumentParser:
    """A command's parser; it remembers itself so that an unknown flag is
    reported with this command's usage, not the top level's."""
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=parents or [], help=help, **kw)
    parser.set_defaults(func=func, command_parser=parser)
    return parser


def group(sub: Any, name: str, help: str, dest: str) -> Any:
    """A command group (`rules add`, `rules list`, ...): its subcommands."""
    return sub.add_parser(name, help=help).add_subparsers(dest=dest, required=True)


def read_text(value: str) -> str:
    """An argument's text; '-' reads stdin, without the trailing newline that
    `echo` or a file's last line adds."""
    import sys

    return sys.stdin.read().rstrip("\r\n") if value == "-" else value
