"""`pointsman agent run` and `pointsman tools ls` against a real `pointsman
serve` process, which also rereads its agents file on SIGHUP and refuses to
start on a mistake in it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_cli import POINTSMAN, free_port, run

TOOL_SERVER = str(Path(__file__).resolve().parent / "mcp_tools_server.py")


def write(directory: Path, agents: dict[str, object]) -> dict[str, str]:
    tools_file, agents_file = directory / "tools.yaml", directory / "agents.yaml"
    tools_file.write_text(yaml.safe_dump({"servers": {"calc": {"command": sys.executable, "args": [TOOL_SERVER]}}}))
    agents_file.write_text(yaml.safe_dump({"agents": agents}))
    return {
        "POINTSMAN_TOOLS_FILE": str(tools_file),
        "POINTSMAN_AGENTS_FILE": str(agents_file),
        "POINTSMAN_AGENTS_RELOAD_SECONDS": "0",  # only SIGHUP rereads them here
    }


def environment(directory: Path, agents: dict[str, object]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REGISTRY_", "USE_MOCK"))}
    env.update(POINTSMAN_DEV_MODE="true", POINTSMAN_DATA_DIR=str(directory), POINTSMAN_SHUTDOWN_GRACE_SECONDS="2")
    env.update(write(directory, agents))
    return env


HELPER = {"model": "builtin", "tools": ["calc__*"], "description": "adds numbers"}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [*POINTSMAN, "serve", "--address", address],
        env=environment(tmp_path, {"helper": HELPER}),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while run("health", address=address).returncode != 0:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        assert time.monotonic() < deadline, "server did not become SERVING"
        time.sleep(0.1)
    yield address, server, tmp_path
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=15) == 0


def test_agent_run_shows_each_step_and_prints_the_answer(served: tuple[str, subprocess.Popen[str], Path]) -> None:
    address, _, _ = served
    result = run("agent", "run", "helper", 'call tool calc__add {"a": 20, "b": 22}', address=address)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "The tools said: 42\n"
    assert '[step 1] -> calc__add {"a": 20, "b": 22}' in result.stderr
    assert "[step 1] <- calc__add ok in " in result.stderr and ": 42" in result.stderr
    assert "[answered: 2 step(s), 1 tool call(s)," in result.stderr


def test_tools_ls_and_agent_ls(served: tuple[str, subprocess.Popen[str], Path]) -> None:
    address, _, _ = served
    tools = run("tools", "ls", address=address)
    assert tools.returncode == 0 and "calc__add\tAdds two integers." in tools.stdout.splitlines()
    agents = run("agent", "ls", address=address)
    assert agents.stdout == "helper\tbuiltin\tcalc__*\tadds numbers\n"
    missing = run("agent", "run", "nobody", "hi", address=address)
    assert missing.returncode == 5 and "agents/nobody" in missing.stderr  # NOT_FOUND


def test_sighup_rereads_the_agents_file_and_a_mistake_keeps_the_old(
    served: tuple[str, subprocess.Popen[str], Path],
) -> None:
    address, server, directory = served
    write(directory, {"helper": HELPER, "second": HELPER})
    server.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "second" not in run("agent", "ls", address=address).stdout:
        assert time.monotonic() < deadline, "SIGHUP did not reload"
        time.sleep(0.1)
    write(directory, {"third": {**HELPER, "max_steps": 0}})
    server.send_signal(signal.SIGHUP)
    time.sleep(0.5)  # nothing to wait for: the definitions must stay as they were
    assert [line.split("\t")[0] for line in run("agent", "ls", address=address).stdout.splitlines()] == [
        "helper",
        "second",
    ]


def test_serve_refuses_to_start_with_a_mistake_naming_the_place(tmp_path: Path) -> None:
    env = environment(tmp_path, {"helper": {**HELPER, "tools": ["nowhere__x"]}})
    result = subprocess.run(
        [*POINTSMAN, "serve", "--address", f"127.0.0.1:{free_port()}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "agents.helper.tools[0]" in result.stderr and "agents.yaml" in result.stderr
    assert "Traceback" not in result.stderr
