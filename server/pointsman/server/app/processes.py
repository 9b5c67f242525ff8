"""Several server processes on one port: the kernel spreads incoming
connections over them (SO_REUSEPORT, which gRPC turns on by default), so one
machine's cores all serve. Here the settings are checked once, then this
process becomes the small supervisor (`supervisor.py`, standard library only)
that starts the children, each running `child_main`."""

from __future__ import annotations

import asyncio
import base64
import ctypes
import json
import logging
import os
import pickle
import secrets
import signal
import socket
import sys
import tempfile

from pydantic import SecretStr

from ..settings import Settings
from . import supervisor
from .routes import load_routes_file
from .tls import server_credentials

log = logging.getLogger(__name__)

# After the shutdown grace, time for a child to write what its buffers hold.
_FLUSH_MARGIN_SECONDS = 10.0
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stop_with_parent(parent_pid: int) -> None:
    """Asks the kernel for SIGTERM when the parent dies (Linux), so a parent
    killed with SIGKILL leaves no server behind; elsewhere, nothing."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the request
        os.kill(os.getpid(), signal.SIGTERM)


def child_main() -> None:
    """One server process: its settings arrive pickled on stdin from the
    supervisor, whose pid is argv[1]."""
    from ..logs import configure_logging
    from .routes import RoutesFileError
    from .server import serve
    from .tls import TlsConfigError

    settings: Settings = pickle.loads(sys.stdin.buffer.read())  # from our own parent only
    _stop_with_parent(int(sys.argv[1]))
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except (RoutesFileError, TlsConfigError, OSError) as error:  # OSError: a port already taken
        print(f"pointsman: {error}", file=sys.stderr)
        sys.exit(2)


def _nth(settings: Settings, index: int) -> Settings:
    """Process `index`'s settings: its own metrics port (port + index), since
    each process counts its own calls."""
    if not settings.metrics_address or index == 0:
        return settings
    host, _, port = settings.metrics_address.rpartition(":")
    if port == "0":
        return settings
    return settings.model_copy(update={"metrics_address": f"{host}:{int(port) + index}"})


def refuse_a_taken_port(address: str) -> None:
    """Raises OSError when something already listens on `address`. The
    children share the port among themselves (SO_REUSEPORT), so they would
    also join another server's; a probe bound without SO_REUSEPORT fails on
    any listener, ours or not."""
    host, _, port = address.rpartition(":")
    try:
        found = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)
        family, kind, proto, _, where = found[0]
    except (socket.gaierror, ValueError) as error:
        raise OSError(f"could not listen on {address}: {error}") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            probe.bind(where)
        except OSError as error:
            raise OSError(f"could not listen on {address}: {error.strerror} (is another server running?)") from None


def serve_processes(settings: Settings) -> int:
    """Checks the settings once, then becomes the supervisor of
    `settings.processes` servers (exec: returns only by raising, when a check
    fails); the process's exit status is the supervisor's."""
    if settings.address.rsplit(":", 1)[-1] == "0":
        raise ValueError("POINTSMAN_PROCESSES above 1 needs a fixed port: port 0 would give each process its own")
    if settings.redis_url is None:
        log.warning(
            "%d processes without REDIS_URL: each has its own response cache and conversations,"
            " and rule changes reach the others within a second (docs/deployment.md)",
            settings.processes,
        )
    refuse_a_taken_port(settings.address)
    if settings.routes_file is not None:
        load_routes_file(settings.routes_file)  # one clear error here, not one per child
    server_credentials(settings)  # likewise for the TLS files
    if settings.dev_mode and settings.jwt_secret is None:
        # One development secret for all processes, so a token from Login works on each.
        settings = settings.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(48))})
    handover = {
        "log_level": settings.log_level,
        "log_format": settings.log_format,
        "kill_after": settings.shutdown_grace_seconds + _FLUSH_MARGIN_SECONDS,
        "payloads": [base64.b64encode(pickle.dumps(_nth(settings, i))).decode() for i in range(settings.processes)],
    }
    # The instructions go in an unlinked file (mode 0600) the supervisor
    # inherits: unlike a pipe, it cannot fill up before the reader exists.
    handover_file = tempfile.TemporaryFile()
    handover_file.write(json.dumps(handover).encode())
    handover_file.flush()
    handover_file.seek(0)
    os.set_inheritable(handover_file.fileno(), True)
    sys.stdout.flush()
    sys.stderr.flush()
    # Exec, not a child: the pid that compose or systemd watches stays the
    # same, and nothing imported so far (the whole server, for the checks)
    # stays in memory.
    # -P: the script's directory (this package) is not put on sys.path.
    os.execv(sys.executable, [sys.executable, "-P", supervisor.__file__, str(handover_file.fileno())])
