"""The Python client as a library: the short path, the environment, retries,
against a real server on port 0 and the fake OpenAI upstream."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from pointsman.client import DEFAULT_RETRY, AsyncClient, Client, PointsmanError, RetryPolicy
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.providers.builtin import BUILTIN_PREAMBLE
from pointsman.type.v1 import chat_pb2

from fakes.openai_upstream import FakeOpenAI
from server_fixtures import collect, raises


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def test_chat_text_and_stream_text_from_plain_strings_and_dicts(server: Any) -> None:
    async with AsyncClient(server.address) as client:
        assert await client.chat_text("hello") == BUILTIN_PREAMBLE + "hello"
        messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "from dicts"}]
        parts = [text async for text in client.stream_text(messages, model="builtin")]
        assert len(parts) > 1 and "".join(parts) == BUILTIN_PREAMBLE + "from dicts"
        with pytest.raises(ValueError, match=r"messages\[0\].role"):
            await client.chat_text([{"role": "wizard", "content": "x"}])


async def test_the_blocking_client_has_the_same_short_path(server: Any) -> None:
    def ask() -> tuple[str, list[str]]:
        with Client(server.address) as client:
            typed = client.orchestrator.Chat(
                orch.ChatRequest(
                    model="builtin", messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="typed")]
                )
            )
            return client.chat_text("short"), [e.WhichOneof("event") for e in typed]

    text, kinds = await asyncio.to_thread(ask)
    assert text == BUILTIN_PREAMBLE + "short"
    assert kinds[0] == "start" and kinds[-1] == "finish"


async def test_address_key_and_model_come_from_the_environment_and_arguments_win(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POINTSMAN_ADDRESS", server.address)
    monkeypatch.setenv("POINTSMAN_MODEL", "no-such-model")
    monkeypatch.setenv("POINTSMAN_API_KEY", "pm_not_a_real_key")
    async with AsyncClient() as client:
        assert client.address == server.address
        refused = await raises(client.chat_text("hi", model="builtin"))
        assert refused.code == grpc.StatusCode.UNAUTHENTICATED  # the variable's key was sent
    async with AsyncClient(api_key="") as client:  # "" sends none, whatever the variable says
        missing = await raises(client.chat_text("hi"))
        assert missing.reason == "MODEL_NOT_FOUND"  # the variable's model
        assert await client.chat_text("hi", model="builtin") == BUILTIN_PREAMBLE + "hi"


async def test_resource_exhausted_is_retried_after_the_delay_retry_info_asks_for(start_server: Any) -> None:
    # One call, then one every two seconds.
    server = await start_server(POINTSMAN_RATE_LIMIT_PRINCIPAL_RPS=0.5, POINTSMAN_RATE_LIMIT_PRINCIPAL_BURST=1)
    async with AsyncClient(server.address, retry=None) as once, AsyncClient(server.address) as retrying:
        assert await once.chat_text("first")
        limited = await raises(once.chat_text("second"))
        assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED and limited.retry_delay
        # The same call with the default policy waits as RetryInfo says, then succeeds.
        assert await retrying.chat_text("third") == BUILTIN_PREAMBLE + "third"


async def test_a_retry_info_longer_than_the_cap_is_raised_at_once(start_server: Any) -> None:
    server = await start_server(POINTSMAN_RATE_LIMIT_PRINCIPAL_RPS=0.001, POINTSMAN_RATE_LIMIT_PRINCIPAL_BURST=1)
    async with AsyncClient(server.address) as client:  # the default policy: at most 10 s between tries
        assert await client.chat_text("first")
        limited = await raises(client.chat_text("second"))
    assert limited.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert limited.retry_delay is not None and limited.retry_delay > DEFAULT_RETRY.max_delay


async def test_unavailable_is_retried_but_never_after_the_stream_began(start_server: Any, upstream: FakeOpenAI) -> None:
    server = await start_server(
        OPENAI_API_KEY="k",
        OPENAI_BASE_URL=upstream.base_url,
        OPENAI_MODELS=["fault-500", "fault-cut+slow-20"],
        POINTSMAN_UPSTREAM_RETRIES=0,
        FIREWALL_OUTPUT_HOLDBACK_CHARS=0,
    )
    policy = RetryPolicy(attempts=3, initial_backoff=0.01)
    async with AsyncClient(server.address, retry=policy) as client:
        failed = await raises(client.chat_text("x", model="fault-500"))
        assert failed.code == grpc.StatusCode.UNAVAILABLE
        assert upstream.requests_total == 3  # bounded: the policy's three attempts
        seen: list[Any] = []

        async def read() -> None:
            async for event in client.orchestrator.Chat(chat(model="fault-cut+slow-20")):
                seen.append(event)

        cut = await raises(read())
        assert cut.code == grpc.StatusCode.UNAVAILABLE and seen[0].WhichOneof("event") == "start"
        assert upstream.requests_total == 4  # once: part of the answer had arrived
    async with AsyncClient(server.address, retry=None) as client:
        await raises(client.chat_text("x", model="fault-500"))
        assert upstream.requests_total == 5  # retry=None: one try


async def test_a_server_that_is_not_there_is_tried_a_bounded_number_of_times() -> None:
    policy = RetryPolicy(attempts=2, initial_backoff=0.01)
    async with AsyncClient("127.0.0.1:1", retry=policy, timeout=5) as client:
        unary = await raises(client.orchestrator.ListModels(orch.ListModelsRequest()))
        streamed = await raises(collect(client.orchestrator.Chat(chat(model="builtin"))))
    assert unary.code == streamed.code == grpc.StatusCode.UNAVAILABLE


def test_the_policy_is_bounded_capped_and_honours_retry_info() -> None:
    unavailable = PointsmanError(grpc.StatusCode.UNAVAILABLE, "down")
    policy = RetryPolicy(attempts=3, initial_backoff=1.0, multiplier=10, max_delay=5.0, jitter=0.2)
    first = policy.delay(1, unavailable)
    assert first is not None and 0.8 <= first <= 1.2
    assert policy.delay(2, unavailable) == 5.0  # 10 s of backoff, capped
    assert policy.delay(3, unavailable) is None  # the third attempt was the last
    assert policy.delay(1, PointsmanError(grpc.StatusCode.INVALID_ARGUMENT, "bad")) is None
    asked = PointsmanError(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", retry_delay=2.0)
    honoured = policy.delay(1, asked)
    assert honoured is not None and 2.0 <= honoured <= 2.4  # never earlier than asked
    too_long = PointsmanError(grpc.StatusCode.RESOURCE_EXHAUSTED, "budget", retry_delay=3600.0)
    assert policy.delay(1, too_long) is None  # raised at once rather than retried early
    assert DEFAULT_RETRY.attempts > 1
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_the_client_and_cli_import_nothing_of_the_server() -> None:
    code = (
        "import sys\n"
        "from pointsman.cli import main\n"
        "from pointsman.client import Client\n"
        "main.build_parser()\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('pointsman.server') or m.split('.')[0] == 'pydantic')\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def chat(model: str) -> orch.ChatRequest:
    message = chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="a b c d e f")
    return orch.ChatRequest(model=model, messages=[message])
