"""Several server processes on one port: the kernel spreads incoming
connections over them (SO_REUSEPORT, which gRPC turns on by default), so one
machine's cores all serve. The parent only starts the children, passes
SIGTERM/SIGINT on, and stops them all when one of them dies, so whatever
supervises the parent (compose, systemd, Kubernetes) sees the failure."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import secrets
import signal
from multiprocessing.process import BaseProcess

from pydantic import SecretStr

from .settings import Settings

log = logging.getLogger(__name__)


def _child(settings: Settings) -> None:
    import sys

    from .app import serve
    from .logs import configure_logging
    from .routes import RoutesFileError

    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except RoutesFileError as error:
        print(f"pointsman: {error}", file=sys.stderr)
        sys.exit(2)


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
    if settings.dev_mode and settings.jwt_secret is None:
        # One development secret for all processes, so a token from Login works on each.
        settings = settings.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(48))})
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: gRPC must not be forked
    children: list[BaseProcess] = [
        context.Process(target=_child, args=(settings,), name=f"pointsman-{i}") for i in range(settings.processes)
    ]
    for child in children:
        child.start()
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: each child shuts down gracefully

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while any(child.is_alive() for child in children):
        for child in children:
            child.join(timeout=0.5)
            if not child.is_alive() and child.exitcode not in (0, None) and not stopping:
                log.error("server process %s exited with %s; stopping the others", child.name, child.exitcode)
                status = 1
                stop(signal.SIGTERM, None)
    return status
