"""`pointsman serve` and `pointsman worker`: the only CLI module that imports
the server (lazily, inside each command), so the client-only install runs
every other command. Also signs tokens locally for `token create`, which
needs the server's settings and signer."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
import textwrap
from typing import Any

from .arguments import AddressAction, command

_NO_SERVER = "the server is not installed here: pip install 'pointsman[server]'"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    # Not the client's flags: serve is configured from the environment, and its
    # help lists every setting with its variable (read when --help is asked).
    p = command(
        sub,
        "serve",
        cmd_serve,
        "run the server (configured from the environment)",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs the gateway. Every setting comes from an environment variable (listed below).",
    )
    p.add_argument("-h", "--help", action=_ServeHelp, nargs=0, help="show this help, with every setting, and exit")
    p.add_argument(
        "--address",
        action=AddressAction,
        default=os.environ.get("POINTSMAN_ADDRESS", "127.0.0.1:50051"),
        help="host:port to listen on; overrides POINTSMAN_ADDRESS (port 0 picks a free port)",
    )
    command(sub, "worker", cmd_worker, "run batch items from Redis (configured like serve; needs REDIS_URL)")


class _ServeHelp(argparse.Action):
    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        parser.epilog = settings_help()
        parser.print_help()
        parser.exit()


def settings_help() -> str:
    """Each setting's variable, default and the first sentence of its comment
    in the settings module (so the help cannot drift from the code)."""
    try:
        from pointsman.server.settings import Settings
    except ImportError:
        return _NO_SERVER
    comments = _field_comments(inspect.getsource(Settings))
    lines = ["settings (environment variables):"]
    for field_name, info in Settings.model_fields.items():
        variable = info.validation_alias if isinstance(info.validation_alias, str) else field_name.upper()
        default = "" if info.is_required() else _default(info)
        lines.append(f"  {variable}{'  [default ' + default + ']' if default else ''}")
        if comments.get(field_name):
            lines.extend(textwrap.wrap(comments[field_name], 76, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines)


def _default(info: Any) -> str:
    if info.default_factory is not None:
        try:
            value = info.default_factory()
        except TypeError:
            return ""
    else:
        value = info.default
    if value is None or value == "" or value == []:
        return ""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value.value if hasattr(value, "value") else value)


def _field_comments(source: str) -> dict[str, str]:
    """The comment block above each field, up to its first sentence."""
    out: dict[str, str] = {}
    block: list[str] = []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"(\w+)\s*:", stripped)
        if match and block:
            text = " ".join(block)
            out[match.group(1)] = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
        block = []
    return out


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    try:
        from pydantic import ValidationError

        from pointsman.server.app.agents_config import AgentsFileError
        from pointsman.server.app.routes import RoutesFileError
        from pointsman.server.app.server import serve
        from pointsman.server.app.tls import TlsConfigError
        from pointsman.server.auth import WeakSecret
        from pointsman.server.logs import configure_logging
        from pointsman.server.settings import Settings, describe_invalid
    except ImportError:
        print(f"pointsman: {_NO_SERVER}", file=sys.stderr)
        return 2

    overrides = {"POINTSMAN_ADDRESS": args.address} if args.address_given else {}
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        print(f"pointsman: invalid settings: {describe_invalid(error)}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    if settings.processes > 1:
        from pointsman.server.app.processes import serve_processes

        try:
            return serve_processes(settings)
        except ValueError as error:
            print(f"pointsman: {error}", file=sys.stderr)
            return 2
    try:
        asyncio.run(serve(settings))
    except (RoutesFileError, AgentsFileError, WeakSecret, TlsConfigError, OSError) as error:  # OSError: port taken
        print(f"pointsman: {error}", file=sys.stderr)
        return 2
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    try:
        from pointsman.server.app.worker import main as worker_main
    except ImportError:
        print(f"pointsman: {_NO_SERVER}", file=sys.stderr)
        return 2
    return worker_main()


def sign_token(args: argparse.Namespace) -> int:
    """`token create`: signs a token locally with JWT_SECRET; whoever holds the
    secret can speak for anyone, as an admin if they like."""
    import hashlib

    try:
        from pydantic import ValidationError

        from pointsman.server.auth import WeakSecret, issue_token
        from pointsman.server.domain.ports.stores import UserRole
        from pointsman.server.settings import Settings, describe_invalid
    except ImportError:
        print(f"pointsman: {_NO_SERVER}", file=sys.stderr)
        return 2

    try:
        settings = Settings()  # every field comes from the environment
    except ValidationError as error:
        print(f"pointsman: invalid settings: {describe_invalid(error)}", file=sys.stderr)
        return 2
    if settings.jwt_secret is None:
        print("pointsman: JWT_SECRET is not set", file=sys.stderr)
        return 2
    if args.ttl is not None and args.ttl < 1:
        print("pointsman: --ttl must be at least 1 second", file=sys.stderr)
        return 2
    organisation = args.org or settings.org_id
    email = args.email.strip().lower()
    # The same email in the same organisation always gets the same user id.
    user_id = args.user_id or hashlib.sha256(f"{organisation}\0{email}".encode()).hexdigest()[:16]
    try:
        token, _ = issue_token(
            settings.jwt_secret.get_secret_value(),
            subject=user_id,
            organisation=organisation,
            role=UserRole(args.role),
            email=email,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=args.ttl or settings.jwt_ttl_seconds,
        )
    except WeakSecret as error:
        print(f"pointsman: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0
