"""`pointsman serve` with POINTSMAN_PROCESSES=N, driven as a user would: a real
parent process whose N children share one port (SO_REUSEPORT) and, in
development mode, one JWT secret.

Which process answered a call is not visible over the API (every child has the
same ORCHESTRATOR_ID), so the tests read it from /proc: each call runs on a
fresh TCP connection (a channel with its own subchannel pool), and the child
holding the server end of that connection is the one that answered."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from pointsman.auth.v1 import auth_pb2, auth_pb2_grpc
from pointsman.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from pointsman.server.providers.builtin import BUILTIN_PREAMBLE

from helpers_pb import user

pytestmark = [
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads processes and sockets from /proc (Linux)"),
    pytest.mark.slow,  # starts and kills real server processes
]

POINTSMAN = str(Path(sys.executable).with_name("pointsman"))
PROCESSES = 2
# Generous: each process imports the firewall models, and CI machines are small.
STARTUP_TIMEOUT_SECONDS = 60
# Secrets handed to a server that must refuse to start; none may be printed.
JWT_SECRET = "jwt-secret-that-must-never-be-printed-0123456789"
DATABASE_PASSWORD = "database-password-never-printed"
TCP_LISTEN, TCP_ESTABLISHED = "0A", "01"
T = TypeVar("T")


# -- processes and sockets, from /proc -----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first);
    None if the process is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields


def identity(pid: int) -> tuple[int, str] | None:
    """pid and start time: tells a process from a later one given the same pid."""
    fields = process_stat(pid)
    return None if fields is None else (pid, fields[19])


def descendants(pid: int) -> set[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := process_stat(int(entry.name))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass(frozen=True)
class TcpSocket:
    local_port: int
    remote_port: int
    state: str


def tcp_sockets() -> dict[int, TcpSocket]:
    """Every TCP socket in this network namespace, by inode."""
    table: dict[int, TcpSocket] = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(name)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
            table[int(fields[9])] = TcpSocket(local, remote, fields[3])
    return table


def socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, ProcessLookupError):
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


# -- a running `pointsman serve` -----------------------------------------------


@dataclass
class Cluster:
    parent: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def listeners(self) -> set[int]:
        """The parent and its descendants with a socket listening on the port."""
        table = tcp_sockets()
        return {
            pid
            for pid in {self.parent.pid, *descendants(self.parent.pid)}
            if any(
                (s := table.get(inode)) and s.state == TCP_LISTEN and s.local_port == self.port
                for inode in socket_inodes(pid)
            )
        }

    def _our_client_ports(self) -> set[int]:
        table = tcp_sockets()
        return {
            s.local_port
            for inode in socket_inodes(os.getpid())
            if (s := table.get(inode)) and s.state == TCP_ESTABLISHED and s.remote_port == self.port
        }

    def _server_of(self, client_port: int) -> int:
        table = tcp_sockets()
        for pid in descendants(self.parent.pid):
            for inode in socket_inodes(pid):
                s = table.get(inode)
                if s and s.state == TCP_ESTABLISHED and (s.local_port, s.remote_port) == (self.port, client_port):
                    return pid
        raise AssertionError(f"no server process holds the connection from port {client_port}")

    def on_fresh_connection(self, call: Callable[[grpc.Channel], T]) -> tuple[T, int]:
        """Runs `call` on a new channel over a new TCP connection; returns its
        result and the pid of the server process that holds the connection."""
        before = self._our_client_ports()
        # Without a local subchannel pool, channels to one address share a connection.
        channel = grpc.insecure_channel(self.address, options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            result = call(channel)
            opened = self._our_client_ports() - before
            assert len(opened) == 1, f"expected one new connection, found {sorted(opened)}"
            return result, self._server_of(opened.pop())
        finally:
            channel.close()

    def until_every_worker_answers(
        self, call: Callable[[grpc.Channel], T], workers: set[int], max_connections: int = 200
    ) -> dict[int, list[T]]:
        """Calls over fresh connections until each worker has answered at least
        once; the kernel picks a listener per connection, so this takes a few."""
        answers: dict[int, list[T]] = {}
        for _ in range(max_connections):
            result, pid = self.on_fresh_connection(call)
            assert pid in workers, f"process {pid} answered but is not one of the workers {sorted(workers)}"
            answers.setdefault(pid, []).append(result)
            if answers.keys() == workers:
                return answers
        raise AssertionError(f"{max_connections} connections reached only {sorted(answers)} of {sorted(workers)}")


def server_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any Pointsman settings, in development mode."""
    ours = ("POINTSMAN_", "OPENAI_", "ANTHROPIC_", "REGISTRY_", "JWT_", "FIREWALL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    for name in ("USE_MOCK", "REDIS_URL", "DATABASE_URL", "ORG_ID", "ORCHESTRATOR_ID", "LOG_FORMAT"):
        env.pop(name, None)
    env.update(
        POINTSMAN_DEV_MODE="true",
        POINTSMAN_DATA_DIR=str(data_dir),
        POINTSMAN_SHUTDOWN_GRACE_SECONDS="2",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def health_status(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status)


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports."""
    for _ in range(100):
        first = free_port()
        try:
            for port in range(first, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError(f"found no {count} consecutive free ports")


@contextmanager
def running_cluster(data_dir: Path, processes: int = PROCESSES, **extra_env: str) -> Iterator[Cluster]:
    """Starts `pointsman serve` with `processes` processes and waits until each
    of them answers SERVING; stops them all afterwards."""
    port = free_port()
    log = data_dir / "serve.log"
    env = server_env(data_dir, POINTSMAN_PROCESSES=str(processes), **extra_env)
    with log.open("wb") as out:
        parent = subprocess.Popen(
            [POINTSMAN, "serve", "--address", f"127.0.0.1:{port}"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    cluster = Cluster(parent, port, log)
    seen: set[tuple[int, str]] = set()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        serving: set[int] = set()
        while True:
            assert parent.poll() is None, f"pointsman serve exited with {parent.returncode}:\n{cluster.output()}"
            seen |= {i for pid in descendants(parent.pid) if (i := identity(pid)) is not None}
            workers = cluster.listeners()
            if len(workers) == processes and workers <= serving:
                break
            assert time.monotonic() < deadline, f"not every process became SERVING:\n{cluster.output()}"
            try:
                status, pid = cluster.on_fresh_connection(health_status)
            except grpc.RpcError:
                pass  # that process is still starting
            else:
                if status == health_pb2.HealthCheckResponse.SERVING:
                    serving.add(pid)
            time.sleep(0.05)
        yield cluster
    finally:
        seen |= {i for pid in descendants(parent.pid) if (i := identity(pid)) is not None}
        if parent.poll() is None:
            parent.send_signal(signal.SIGTERM)
            try:
                parent.wait(timeout=30)
            except subprocess.TimeoutExpired:
                parent.kill()
                parent.wait(timeout=10)
        # Whatever a failed test left behind, by pid (and only if it is still the same process).
        for pid, started in seen:
            if identity(pid) == (pid, started):
                os.kill(pid, signal.SIGKILL)


def wait_gone(processes: set[tuple[int, str]], timeout: float = 10) -> set[tuple[int, str]]:
    """Waits until none of `processes` runs any more; returns those still running."""
    deadline = time.monotonic() + timeout
    while (alive := {i for i in processes if identity(i[0]) == i}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


@pytest.fixture(scope="module")
def metrics_port() -> int:
    """Process i serves its metrics on this port + i."""
    return free_ports(PROCESSES)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, metrics_port: int) -> Iterator[Cluster]:
    metrics = {"POINTSMAN_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}"}
    with running_cluster(tmp_path_factory.mktemp("data"), **metrics) as running:
        yield running


# -- serving -------------------------------------------------------------------


def test_each_process_listens_on_the_shared_port(cluster: Cluster) -> None:
    workers = cluster.listeners()
    assert len(workers) == PROCESSES
    assert cluster.parent.pid not in workers  # the parent only supervises
    assert workers <= descendants(cluster.parent.pid)


def test_fresh_connections_reach_every_process_and_all_calls_succeed(cluster: Cluster) -> None:
    def complete(channel: grpc.Channel) -> str:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        request = orchestrator_pb2.CompleteRequest(model="builtin", messages=[user("hello, workers")])
        return str(stub.Complete(request, timeout=10).message.content)

    answers = cluster.until_every_worker_answers(complete, cluster.listeners())
    assert len(answers) == PROCESSES
    for texts in answers.values():
        assert texts and all(text == BUILTIN_PREAMBLE + "hello, workers" for text in texts)


# -- one development secret ------------------------------------------------------


def test_each_process_serves_its_own_metrics_on_its_own_port(cluster: Cluster, metrics_port: int) -> None:
    def complete(channel: grpc.Channel) -> None:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        stub.Complete(orchestrator_pb2.CompleteRequest(model="builtin", messages=[user("count me")]), timeout=10)

    answers = cluster.until_every_worker_answers(complete, cluster.listeners())
    method = "/pointsman.orchestrator.v1.OrchestratorService/Complete"
    counted = []
    for port in range(metrics_port, metrics_port + PROCESSES):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        completes = [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "pointsman_rpc_requests_total" and sample.labels == {"method": method, "code": "OK"}
        ]
        assert completes and completes[0] >= 1, f"process on metrics port {port} counted no Complete"
        counted.append(completes[0])
    # Together they counted every call made here (other tests in this module add more).
    assert sum(counted) >= sum(len(results) for results in answers.values())


def test_a_token_from_one_process_is_accepted_by_every_process(cluster: Cluster) -> None:
    def login(channel: grpc.Channel) -> str:
        request = auth_pb2.LoginRequest(email="viewer@pointsman.dev")
        return str(auth_pb2_grpc.AuthServiceStub(channel).Login(request, timeout=10).access_token)

    token, issuer = cluster.on_fresh_connection(login)

    def whoami(credential: str) -> Callable[[grpc.Channel], auth_pb2.Principal]:
        def call(channel: grpc.Channel) -> auth_pb2.Principal:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            metadata = (("authorization", f"Bearer {credential}"),)
            return stub.WhoAmI(auth_pb2.WhoAmIRequest(), metadata=metadata, timeout=10).principal

        return call

    workers = cluster.listeners()
    answers = cluster.until_every_worker_answers(whoami(token), workers)
    assert workers - {issuer}, "the token must reach a process other than the one that issued it"
    # The viewer, not the development admin that calls without a credential act as.
    for principals in answers.values():
        assert all(p.name == "users/dev-viewer" and p.role == auth_pb2.ROLE_VIEWER for p in principals)

    # The token is verified, not waved through: a forged signature fails everywhere.
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[::-1]}"

    def refused(channel: grpc.Channel) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as caught:
            whoami(forged)(channel)
        return caught.value.code()

    codes = cluster.until_every_worker_answers(refused, workers)
    assert {code for found in codes.values() for code in found} == {grpc.StatusCode.UNAUTHENTICATED}


# -- stopping --------------------------------------------------------------------


def test_sigterm_stops_every_process_and_exits_zero(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        workers = cluster.listeners()
        # The workers and whatever else the parent started (multiprocessing's resource tracker).
        children = {i for pid in descendants(cluster.parent.pid) if (i := identity(pid)) is not None}
        assert {pid for pid, _ in children} >= workers
        cluster.parent.send_signal(signal.SIGTERM)
        assert cluster.parent.wait(timeout=30) == 0, cluster.output()
        assert not wait_gone(children), f"left running after the parent exited: {children}\n{cluster.output()}"
        assert not any(s.local_port == cluster.port and s.state == TCP_LISTEN for s in tcp_sockets().values())


@pytest.mark.parametrize("end", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped-cleanly"])
def test_a_process_ending_stops_the_others_and_the_parent_fails(tmp_path: Path, end: signal.Signals) -> None:
    # Any end the parent did not ask for, even a clean exit, leaves fewer
    # processes than configured: the parent fails so its supervisor restarts it.
    with running_cluster(tmp_path) as cluster:
        victim, *others = sorted(cluster.listeners())
        survivors = {i for pid in others if (i := identity(pid)) is not None}
        os.kill(victim, end)
        assert cluster.parent.wait(timeout=30) == 1, cluster.output()
        assert not wait_gone(survivors), cluster.output()
        assert "stopping the others" in cluster.output()


def test_a_killed_parent_leaves_no_process_serving(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        workers = {i for pid in cluster.listeners() if (i := identity(pid)) is not None}
        cluster.parent.kill()  # SIGKILL: the parent cannot pass anything on
        cluster.parent.wait(timeout=10)
        assert not wait_gone(workers, timeout=30), cluster.output()
        assert not any(s.local_port == cluster.port and s.state == TCP_LISTEN for s in tcp_sockets().values())


# -- refusing to start -------------------------------------------------------------


@pytest.mark.parametrize(
    ("processes", "address", "message"),
    [
        ("0", None, "POINTSMAN_PROCESSES: Input should be greater than or equal to 1"),
        ("two", None, "POINTSMAN_PROCESSES: Input should be a valid integer"),
        ("65", None, "POINTSMAN_PROCESSES: Input should be less than or equal to 64"),
        ("2", "127.0.0.1:0", "POINTSMAN_PROCESSES above 1 needs a fixed port"),
    ],
)
def test_an_invalid_setting_fails_at_start_without_printing_secrets(
    tmp_path: Path, processes: str, address: str | None, message: str
) -> None:
    env = server_env(
        tmp_path,
        POINTSMAN_PROCESSES=processes,
        JWT_SECRET=JWT_SECRET,
        DATABASE_URL=f"postgresql://pointsman:{DATABASE_PASSWORD}@127.0.0.1:1/pointsman",
    )
    address = address or f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [POINTSMAN, "serve", "--address", address], env=env, capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert message in result.stderr
    assert "Traceback" not in output
    assert JWT_SECRET not in output and DATABASE_PASSWORD not in output


def test_a_bad_routes_file_fails_once_before_any_process_starts(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text("models: [not, a, mapping")
    env = server_env(tmp_path, POINTSMAN_PROCESSES="2", POINTSMAN_ROUTES_FILE=str(routes))
    result = subprocess.run(
        [POINTSMAN, "serve", "--address", f"127.0.0.1:{free_port()}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("is not valid YAML") == 1, result.stderr
