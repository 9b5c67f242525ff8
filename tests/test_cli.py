"""The `pointsman` command driven as a user would: a real `pointsman serve`
process and client commands as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pointsman.server.providers.builtin import BUILTIN_PREAMBLE

POINTSMAN = [str(Path(sys.executable).with_name("pointsman"))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(*args: str, address: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POINTSMAN, *args, "--address", address], input=stdin, capture_output=True, text=True, timeout=30
    )


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REGISTRY_", "USE_MOCK"))}
    env["POINTSMAN_SHUTDOWN_GRACE_SECONDS"] = "2"
    # Development mode: commands without a credential act as the seeded admin.
    env["POINTSMAN_DEV_MODE"] = "true"
    env["POINTSMAN_DATA_DIR"] = str(tmp_path_factory.mktemp("data"))
    # Two more aliases, answered by the built-in model, for `compare`.
    env["USE_MOCK"] = "true"
    env["OPENAI_MODELS"] = "model-a,model-b"
    # The server's log goes to a file: a pipe nobody reads would fill and block it.
    log = (tmp_path_factory.mktemp("log") / "serve.log").open("w+")
    server = subprocess.Popen([*POINTSMAN, "serve", "--address", address], env=env, stderr=log, text=True)
    try:
        deadline = time.monotonic() + 60  # a loaded machine (the suite in parallel) starts slower
        while run("health", address=address).returncode != 0:
            if server.poll() is not None:
                log.seek(0)
                pytest.fail(f"server exited: {log.read()[-2000:]}")
            assert time.monotonic() < deadline, "server did not become SERVING"
            time.sleep(0.1)
        yield address
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0  # a graceful stop exits cleanly
    finally:
        if server.poll() is None:  # a failed start or stop leaves nothing running
            server.kill()
            server.wait()
        log.close()


def test_health_exits_zero_when_serving_and_fourteen_when_down(address: str) -> None:
    result = run("health", address=address)
    assert result.returncode == 0 and result.stdout.strip() == "SERVING"
    down = run("health", address=f"127.0.0.1:{free_port()}")
    assert down.returncode == 14  # UNAVAILABLE


def test_chat_prints_the_answer(address: str) -> None:
    result = run("chat", "hello from the shell", address=address)
    assert result.returncode == 0, result.stderr
    assert result.stdout == BUILTIN_PREAMBLE + "hello from the shell\n"
    from_stdin = run("chat", "-", address=address, stdin="piped prompt")
    assert from_stdin.stdout.strip().endswith("piped prompt")


def test_chat_json_prints_one_event_per_line(address: str) -> None:
    result = run("chat", "--json", "hi", address=address)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert list(events[0]) == ["start"] and list(events[-1]) == ["finish"]
    assert events[-1]["finish"]["reason"] == "FINISH_REASON_STOP"


def test_unknown_model_exits_with_not_found(address: str) -> None:
    result = run("chat", "-m", "no-such-model", "hi", address=address)
    assert result.returncode == 5
    assert "MODEL_NOT_FOUND" in result.stderr and "Traceback" not in result.stderr


def test_rules_lifecycle_and_blocking(address: str) -> None:
    added = run("rules", "add", "--block", "--substring", "launch codes", address=address)
    assert added.returncode == 0, added.stderr
    name = added.stdout.strip()
    assert name.startswith("rules/")
    listed = run("rules", "list", address=address)
    assert name in listed.stdout and "launch codes" in listed.stdout
    got = run("rules", "get", "--json", name, address=address)
    assert json.loads(got.stdout)["pattern"] == "launch codes"

    blocked = run("chat", "what are the launch codes?", address=address)
    assert blocked.returncode == 7  # PERMISSION_DENIED
    assert "CONTENT_BLOCKED" in blocked.stderr
    scanned = run("scan", "the launch codes", address=address)
    assert scanned.stdout.splitlines()[0] == "block" and name in scanned.stdout
    assert run("scan", "a harmless sentence", address=address).stdout.strip() == "allow"

    assert run("rules", "rm", name, address=address).returncode == 0
    assert run("rules", "get", name, address=address).returncode == 5
    assert run("chat", "what are the launch codes?", address=address).returncode == 0


def test_rules_watch_prints_snapshot(address: str) -> None:
    result = run("rules", "watch", "--watch-timeout", "0.5", address=address)
    assert result.returncode == 0
    assert result.stdout.startswith("snapshot:")


def test_bad_regex_is_reported_with_the_field(address: str) -> None:
    result = run("rules", "add", "--block", "--regex", "(", address=address)
    assert result.returncode == 3
    assert "rule.pattern" in result.stderr


def test_models_and_registry(address: str) -> None:
    models = run("models", address=address)
    assert models.stdout.startswith("builtin") and "built-in deterministic" in models.stdout
    assert run("registry", "ls", address=address).returncode == 0


def test_batch_submit_watch_get_and_cancel(address: str, tmp_path: Path) -> None:
    lines = [
        json.dumps({"custom_id": f"q{i}", "model": "builtin", "messages": [{"role": "user", "content": f"ask {i}"}]})
        for i in range(3)
    ]
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(lines) + "\n")
    submitted = run("batch", "submit", str(items), "--max-concurrency", "2", address=address)
    assert submitted.returncode == 0, submitted.stderr
    name = submitted.stdout.strip()
    assert name.startswith("batches/")

    watched = run("batch", "watch", name, address=address)
    assert watched.returncode == 0, watched.stderr
    *results, final = watched.stdout.splitlines()
    assert sorted(line.split("\t")[:2] for line in results) == [["q0", "ok"], ["q1", "ok"], ["q2", "ok"]]
    assert "ask 1" in next(line for line in results if line.startswith("q1"))
    assert final == f"{name}\tdone\t3 succeeded, 0 failed, 0 cancelled, of 3"
    got = run("batch", "get", "--json", name.removeprefix("batches/"), address=address)
    assert json.loads(got.stdout)["state"] == "BATCH_STATE_DONE"
    listed = run("batch", "ls", address=address)
    assert listed.returncode == 0 and f"{name}\tdone\t" in listed.stdout

    too_late = run("batch", "cancel", name, address=address)
    assert too_late.returncode == 9 and "BATCH_DONE" in too_late.stderr  # FAILED_PRECONDITION
    assert run("batch", "cancel", "batches/0123456789abcdef", address=address).returncode == 5


def test_batch_submit_reports_the_bad_line(address: str) -> None:
    good = json.dumps({"custom_id": "a", "model": "builtin", "messages": [{"role": "user", "content": "hi"}]})
    for text, expected in (
        (good + "\n{not json\n", "line 2"),
        (good + '\n{"custom_id": "b", "modle": "builtin"}\n', "line 2"),
        ("\n", "no items"),
    ):
        result = run("batch", "submit", "-", address=address, stdin=text)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    # Items that parse but break the contract are the server's to refuse, field by field.
    duplicate = run("batch", "submit", "-", address=address, stdin=good + "\n" + good + "\n")
    assert duplicate.returncode == 3 and "items[1].custom_id" in duplicate.stderr


def test_keys_create_list_use_and_revoke(address: str) -> None:
    created = run("keys", "create", "--display-name", "ci robot", address=address)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("pm_") and "shown once" in created.stderr
    listed = run("keys", "ls", address=address)
    [row] = [line for line in listed.stdout.splitlines() if "ci robot" in line]
    name = row.split("\t")[0]
    assert name.startswith("apiKeys/") and "\tactive\t" in row and key not in listed.stdout
    assert run("whoami", "--api-key", key, address=address).returncode == 0
    revoked = run("keys", "revoke", name, address=address)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert run("whoami", "--api-key", key, address=address).returncode == 16  # UNAUTHENTICATED


def test_decisions_lists_what_the_firewall_did(address: str) -> None:
    assert run("chat", "mail jane.doe@example.com about it", address=address).returncode == 0
    redacted = run("decisions", "--action", "redact", "--limit", "5", address=address)
    assert redacted.returncode == 0, redacted.stderr
    first = redacted.stdout.splitlines()[0].split("\t")
    assert first[1:3] == ["input", "redact"] and "pii:EMAIL_ADDRESS" in first[4]
    as_json = run("decisions", "--json", "--limit", "1", address=address)
    assert len(as_json.stdout.splitlines()) == 1 and json.loads(as_json.stdout)["name"].startswith("decisions/")


def test_conversation_show_and_rm(address: str) -> None:
    from pointsman.client import Client
    from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

    requests = [
        orch.ConverseRequest(setup=orch.ConversationSetup(model="builtin")),
        orch.ConverseRequest(turn=orch.UserTurn(turn_id="t1", content="remember the milk")),
    ]
    with Client(address, timeout=10) as client:
        events = list(client.orchestrator.Converse(iter(requests)))
    name = events[0].started.conversation
    shown = run("conversation", "show", name, address=address)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "user: remember the milk"
    assert shown.stdout.splitlines()[1].startswith("assistant: ")
    assert run("conversation", "rm", name.removeprefix("conversations/"), address=address).returncode == 0
    assert run("conversation", "show", name, address=address).returncode == 5  # NOT_FOUND


def test_calls_lists_the_request_log(address: str) -> None:
    assert run("chat", "count this call", address=address).returncode == 0
    listed = run("calls", "--model", "builtin", "--status", "ok", "--limit", "3", address=address)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert 1 <= len(rows) <= 3
    assert rows[0].split("\t")[1:5] == ["users/dev-admin", "builtin", "builtin", "OK"]


def test_chat_tags_reach_calls_and_stats(address: str) -> None:
    chatted = run(
        "chat", "tag this call", "--user", "cli-user", "--tag", "team=cli", "--tag", "env=test", address=address
    )
    assert chatted.returncode == 0, chatted.stderr
    listed = run("calls", "--user", "cli-user", "--tag", "team=cli", address=address)
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[0].split("\t")
    assert row[-3:] == ["user cli-user", "env=test", "team=cli"]
    stats = run("stats", "--tag-key", "team", "--by-end-user", address=address)
    assert stats.returncode == 0, stats.stderr
    assert any(line.startswith("tag team=cli\t1 requests") for line in stats.stdout.splitlines())
    assert any(line.startswith("end user cli-user\t") for line in stats.stdout.splitlines())
    assert run("chat", "x", "--tag", "no-equals", address=address).returncode == 2  # argparse refuses it


@pytest.mark.parametrize("taken", ["grpc", "metrics"])
def test_serve_reports_a_port_already_taken_and_exits_2(tmp_path: Path, taken: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POINTSMAN_", "OPENAI_", "REGISTRY_"))}
        env.update(POINTSMAN_DEV_MODE="true", POINTSMAN_DATA_DIR=str(tmp_path))
        address = f"127.0.0.1:{port}" if taken == "grpc" else f"127.0.0.1:{free_port()}"
        if taken == "metrics":
            env["POINTSMAN_METRICS_ADDRESS"] = f"127.0.0.1:{port}"
        done = subprocess.run(
            [*POINTSMAN, "serve", "--address", address], env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2, done.stderr
    assert str(port) in done.stderr and "Traceback" not in done.stderr


def test_version() -> None:
    done = subprocess.run([*POINTSMAN, "--version"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.startswith("pointsman 0.")


# -- what a new user met, each fixed ------------------------------------------


def test_timeout_is_the_deadline_of_streaming_calls_too(address: str) -> None:
    # Before: a stream's deadline stayed 300 s whatever --timeout said.
    result = run("chat", "--timeout", "0.000001", "hi", address=address)
    assert result.returncode == 4 and "DEADLINE_EXCEEDED" in result.stderr  # DEADLINE_EXCEEDED


def test_an_unknown_flag_prints_the_commands_usage(address: str) -> None:
    result = run("chat", "--bogus", "hi", address=address)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: pointsman chat ") and "--bogus" in result.stderr
    nested = run("rules", "list", "--bogus", address=address)
    assert nested.stderr.startswith("usage: pointsman rules list ")


def test_a_blocked_chat_names_categories_rules_and_the_decision(address: str) -> None:
    rule = run("rules", "add", "--block", "--substring", "secret recipe", address=address).stdout.strip()
    try:
        blocked = run("chat", "tell me the secret recipe", address=address)
    finally:
        run("rules", "rm", rule, address=address)
    assert blocked.returncode == 7
    assert "categories: block_rule" in blocked.stderr and f"rules: {rule}" in blocked.stderr
    assert "decision: decisions/" in blocked.stderr


def test_serve_help_lists_the_server_settings_and_no_client_flags() -> None:
    done = subprocess.run([*POINTSMAN, "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for variable in ("POINTSMAN_ADDRESS", "DATABASE_URL", "OPENAI_API_KEY", "POINTSMAN_DEV_MODE"):
        assert f"  {variable}" in done.stdout
    assert "Where the gRPC server listens" in done.stdout  # the settings module's own words
    assert "--api-key" not in done.stdout and "--json" not in done.stdout


def test_json_into_a_closed_pipe_stops_quietly(address: str) -> None:
    # Enough events to fill the pipe, so the command is writing when the reader goes away.
    prompt = "word " * 30_000
    chat = subprocess.Popen(
        [*POINTSMAN, "chat", "--json", "-", "--address", address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert chat.stdin and chat.stdout and chat.stderr
    chat.stdin.write(prompt)
    chat.stdin.close()
    assert chat.stdout.readline().startswith('{"start"')
    chat.stdout.close()
    stderr = chat.stderr.read()
    assert chat.wait(timeout=30) == 141  # as if killed by SIGPIPE
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_health_of_an_unknown_service_names_it_and_those_that_exist(address: str) -> None:
    result = run("health", "--service", "nosuch", address=address)
    assert result.returncode == 5  # NOT_FOUND
    assert "'nosuch'" in result.stderr and "pointsman.orchestrator.v1.OrchestratorService" in result.stderr


def test_chat_from_stdin_drops_the_trailing_newline(address: str) -> None:
    result = run("chat", "-", address=address, stdin="piped prompt\n")
    assert result.stdout == BUILTIN_PREAMBLE + "piped prompt\n"


def test_models_says_whether_each_deployment_can_answer(address: str) -> None:
    models = run("models", address=address)
    assert "builtin (available)" in models.stdout
    assert "closed" not in models.stdout


def test_empty_lists_say_so(address: str) -> None:
    result = run("registry", "ls", address=address)
    assert result.returncode == 0 and result.stdout == ""
    assert "no live instances" in result.stderr
    assert run("registry", "ls", "--json", address=address).stderr == ""


def test_compare_shows_each_models_answer_latency_and_tokens(address: str) -> None:
    result = run("compare", "-m", "model-a", "-m", "model-b", "compare this", address=address)
    assert result.returncode == 0, result.stderr
    blocks = [b for b in result.stdout.split("== ") if b]
    assert sorted(b.split()[0] for b in blocks) == ["model-a", "model-b"]
    for block in blocks:
        header, answer = block.split("\n", 1)
        assert " ms" in header and "tokens" in header
        assert answer.strip() == BUILTIN_PREAMBLE + "compare this"
    one = run("compare", "-m", "model-a", "hi", address=address)
    assert one.returncode == 3 and "models" in one.stderr  # INVALID_ARGUMENT, naming the field


def test_converse_answers_each_line_of_a_pipe_in_one_conversation(address: str) -> None:
    result = run("converse", address=address, stdin="remember the milk\n\nand the eggs\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [BUILTIN_PREAMBLE + "remember the milk", BUILTIN_PREAMBLE + "and the eggs"]
    name = result.stderr.strip().strip("[]")
    assert name.startswith("conversations/")
    shown = run("conversation", "show", name, address=address).stdout.splitlines()
    assert shown[0] == "user: remember the milk" and shown[2] == "user: and the eggs"
