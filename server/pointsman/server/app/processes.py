"""Several server processes on one port: the kernel spreads incoming
connections over them (SO_REUSEPORT, which gRPC turns on by default), so one
machine's cores all serve. The parent only starts the children, passes
SIGTERM/SIGINT on, and stops them all when one of them ends, so whatever
supervises the parent (compose, systemd, Kubernetes) sees the failure. A
child that does not stop within the shutdown grace (plus a margin for the
final writes) is killed; a child whose parent dies (even by SIGKILL) stops."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import secrets
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess

from pydantic import SecretStr

from ..settings import Settings
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


def _child(settings: Settings, parent_pid: int) -> None:
    from ..logs import configure_logging
    from .routes import RoutesFileError
    from .server import serve
    from .tls import TlsConfigError

    _stop_with_parent(parent_pid)
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
    """Runs `settings.processes` servers until a signal or a child's death;
    returns the exit status."""
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
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: gRPC must not be forked
    children: list[BaseProcess] = [
        context.Process(target=_child, args=(_nth(settings, i), os.getpid()), name=f"pointsman-{i}")
        for i in range(settings.processes)
    ]
    stopping_since: float | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping_since
        if stopping_since is None:
            stopping_since = time.monotonic()
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: each child shuts down gracefully

    # Before any child starts: a signal from now on reaches every child.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start()
    status = 0
    kill_after = settings.shutdown_grace_seconds + _FLUSH_MARGIN_SECONDS
    while any(child.is_alive() for child in children):
        for child in children:
            child.join(timeout=0.5)
            if stopping_since is None and not child.is_alive():
                # Any end the parent did not ask for is a failure, even a clean exit.
                log.error("server process %s exited with %s; stopping the others", child.name, child.exitcode)
                status = 1
                stop(signal.SIGTERM, None)
        if stopping_since is not None and time.monotonic() - stopping_since > kill_after:
            for child in children:
                if child.is_alive():
                    log.error("server process %s did not stop within %.0f s; killing it", child.name, kill_after)
                    child.kill()
            status = status or 1
    return status
