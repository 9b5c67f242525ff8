"""The parent of POINTSMAN_PROCESSES servers, kept small: it imports the
standard library only (run as a script, so not even its own package), since
it does nothing but start the children, pass SIGTERM/SIGINT on, and stop
them all when one ends. `processes.serve_processes` checks the settings and
then replaces itself with this (exec), handing over on an inherited pipe
what each child receives on its stdin (its pickled settings), so no secret
travels in the environment or on a command line.

A child that does not stop within the shutdown grace (plus a margin for the
final writes) is killed; a child whose parent dies (even by SIGKILL) stops
(each child asks the kernel for that itself)."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import time

log = logging.getLogger("pointsman.server.app.processes")

# What each child runs: it reads its settings from stdin.
CHILD_CODE = "from pointsman.server.app.processes import child_main; child_main()"


class _JsonLines(logging.Formatter):
    """The fields LOG_FORMAT=json writes, without its formatter's imports."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": "-",
        }
        return json.dumps(fields)


def _configure_logging(level: str, form: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if form == "json":
        handler.setFormatter(_JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [-] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    chosen = getattr(logging, level.upper(), None)
    root.setLevel(chosen if isinstance(chosen, int) else logging.INFO)


def supervise(payloads: list[bytes], names: list[str], kill_after: float) -> int:
    """Runs one child per payload until a signal or a child's death; returns
    the exit status."""
    children: list[subprocess.Popen[bytes]] = []
    stopping_since: float | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping_since
        if stopping_since is None:
            stopping_since = time.monotonic()
        for child in children:
            if child.poll() is None:
                child.terminate()  # SIGTERM: each child shuts down gracefully

    # Before any child starts: a signal from now on reaches every child.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for payload in payloads:
        child = subprocess.Popen([sys.executable, "-c", CHILD_CODE, str(os.getpid())], stdin=subprocess.PIPE)
        assert child.stdin is not None
        child.stdin.write(payload)
        child.stdin.close()
        children.append(child)
    status = 0
    running = set(range(len(children)))
    while running:
        time.sleep(0.2)
        for index in sorted(running):
            if children[index].poll() is None:
                continue
            running.discard(index)
            if stopping_since is None:
                # Any end the parent did not ask for is a failure, even a clean exit.
                log.error(
                    "server process %s exited with %s; stopping the others", names[index], children[index].returncode
                )
                status = 1
                stop(signal.SIGTERM, None)
        if stopping_since is not None and time.monotonic() - stopping_since > kill_after:
            for index in sorted(running):
                log.error("server process %s did not stop within %.0f s; killing it", names[index], kill_after)
                children[index].kill()
            status = status or 1
            for index in running:
                children[index].wait()
            running.clear()
    return status


def main() -> int:
    """Reads its instructions from the file descriptor named in argv[1]."""
    with os.fdopen(int(sys.argv[1]), "rb") as handover:
        config = json.loads(handover.read())
    _configure_logging(config["log_level"], config["log_format"])
    payloads = [base64.b64decode(p) for p in config["payloads"]]
    names = [f"pointsman-{i}" for i in range(len(payloads))]
    return supervise(payloads, names, float(config["kill_after"]))


if __name__ == "__main__":
    sys.exit(main())
