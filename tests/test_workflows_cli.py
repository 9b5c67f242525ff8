"""`pointsman workflow run` and `pointsman workflow ls` against a real
`pointsman serve` process."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_agents_cli import HELPER, environment
from test_cli import POINTSMAN, free_port, run
from test_workflows import TRIAGE


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    env = environment(tmp_path, {"helper": HELPER})
    agents_file = Path(env["POINTSMAN_AGENTS_FILE"])
    agents_file.write_text(yaml.safe_dump({"agents": {"helper": HELPER}, "workflows": {"triage": TRIAGE}}))
    server = subprocess.Popen([*POINTSMAN, "serve", "--address", address], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while run("health", address=address).returncode != 0:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        assert time.monotonic() < deadline, "server did not become SERVING"
        time.sleep(0.1)
    yield address
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=15) == 0


def test_workflow_run_shows_each_step_and_prints_the_answer(served: str) -> None:
    result = run("workflow", "run", "triage", 'call tool calc__add {"a": 20, "b": 22}', address=served)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "The tools said: 42\n"
    assert "[kind] classify ..." in result.stderr and "[solve] done in" in result.stderr
    assert "[answered: 3 step(s)" in result.stderr

    default = run("workflow", "run", "", "owls", address=served)
    assert default.returncode == 0 and "### builtin" in default.stdout  # the comparative analysis

    listing = run("workflow", "ls", address=served)
    lines = listing.stdout.splitlines()
    assert lines[0].startswith("comparative (default)\tcompare:compare")
    assert lines[1].startswith("triage\tkind:classify,route:branch,solve:agent,talk:chat")
