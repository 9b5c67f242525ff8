"""Embed end to end: a real server on port 0, the built-in WordLlama model,
an OpenAI-compatible upstream (the fake, over real HTTP), the routes file,
ListModels, the request log, and every kind of bad input."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import pytest_asyncio
import yaml

from pointsman.client import AsyncClient, Client
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch

from fakes.openai_upstream import FakeOpenAI, fake_vector
from helpers_pb import chat_request
from server_fixtures import collect, eventually, raises

API_KEY = "sk-embeddings-0123456789abcdef"


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(first_byte_delay_s=5.0) as fake:
        yield fake


@pytest_asyncio.fixture
async def gateway(start_server: Any, tmp_path: Path, upstream: FakeOpenAI) -> AsyncIterator[AsyncClient]:
    """A server with embedding and chat aliases on the fake upstream and the built-in models."""
    fallback = {"endpoint": "fake", "model": "text-embedding-fake"}
    models = {
        "embed": {"kind": "embedding", "dimensions": 16, "deployments": [fallback]},
        "embed-fallback": {
            "kind": "embedding",
            "deployments": [{"endpoint": "fake", "model": "fault-500"}, fallback],
        },
        "embed-no-usage": {"kind": "embedding", "deployments": [{"endpoint": "fake", "model": "no-usage"}]},
        "embed-broken": {"kind": "embedding", "deployments": [{"endpoint": "fake", "model": "fault-malformed"}]},
        "priced": {
            "kind": "embedding",
            "deployments": [{**fallback, "price": {"input_per_million_tokens": 1_000_000}}],
        },
        "offline-embed": {"kind": "embedding", "deployments": [{"endpoint": "offline", "model": "wordllama"}]},
        "chatty": {"deployments": [{"endpoint": "fake", "model": "gpt-fake"}]},
    }
    path = tmp_path / "routes.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {"retry": {"retries": 0}},
                "endpoints": {
                    "fake": {"provider": "openai", "base_url": upstream.base_url, "api_key_env": "OPENAI_API_KEY"},
                    "offline": {"provider": "builtin"},
                },
                "models": models,
            }
        )
    )
    server = await start_server(
        POINTSMAN_ROUTES_FILE=str(path),
        OPENAI_API_KEY=API_KEY,
        POINTSMAN_EMBED_MAX_INPUTS=8,
        POINTSMAN_EMBED_MAX_INPUT_CHARS=100,
    )
    async with AsyncClient(server.address, timeout=20) as client:
        yield client


def vectors(response: orch.EmbedResponse) -> np.ndarray:
    return np.array([list(e.values) for e in response.embeddings], dtype=np.float32)


async def test_builtin_model_gives_deterministic_unit_vectors_that_mean_something(client: AsyncClient) -> None:
    texts = ["How do I reset my password?", "How can I reset the password?", "The weather in Lisbon is sunny."]
    response = await client.embed(texts)
    assert response.model == "builtin-embedding"
    assert response.deployment.name == "builtin-embedding" and response.deployment.provider == orch.PROVIDER_BUILTIN
    assert [e.index for e in response.embeddings] == [0, 1, 2]
    question, paraphrase, unrelated = vectors(response)
    assert question.shape == (256,)
    assert np.allclose(np.linalg.norm(vectors(response), axis=1), 1.0, atol=1e-5)
    assert question @ paraphrase > question @ unrelated + 0.2
    assert response.usage.input_tokens > 0 and response.usage.output_tokens == 0
    again = await client.embed(texts[:1])
    assert np.array_equal(vectors(again)[0], question)


async def test_builtin_model_gives_shorter_vectors_on_request(client: AsyncClient) -> None:
    response = await client.embed(["a shorter vector"], dimensions=64)
    (vector,) = vectors(response)
    assert vector.shape == (64,) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
    error = await raises(client.embed(["x"], dimensions=32))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == ["dimensions"]


async def test_a_big_batch_is_embedded_off_the_event_loop_and_kept_in_order(client: AsyncClient) -> None:
    texts = [f"sentence number {i} about {'cats' if i % 2 else 'databases'}" for i in range(200)]
    response = await client.embed(texts)
    assert [e.index for e in response.embeddings] == list(range(200))
    single = await client.embed([texts[7]])
    assert np.allclose(vectors(response)[7], vectors(single)[0])


async def test_the_sync_client_embeds_too(server: Any) -> None:
    def embed() -> orch.EmbedResponse:
        with Client(server.address, timeout=20) as client:
            return client.embed(["hello world"])

    response = await asyncio.to_thread(embed)  # the server runs on this test's event loop
    assert len(response.embeddings) == 1 and len(response.embeddings[0].values) == 256


async def test_openai_compatible_upstream_receives_the_request_and_its_vectors_come_back(
    gateway: AsyncClient, upstream: FakeOpenAI
) -> None:
    response = await gateway.embed(["first text", "second one here"], model="embed", dimensions=12)
    assert upstream.last_request == {
        "model": "text-embedding-fake",
        "input": ["first text", "second one here"],
        "encoding_format": "float",
        "dimensions": 12,
    }
    assert upstream.auth_headers[-1] == f"Bearer {API_KEY}"
    assert response.deployment.name == "fake/text-embedding-fake"
    assert np.allclose(vectors(response)[1], fake_vector("second one here", 12), atol=1e-6)
    assert (response.usage.input_tokens, response.usage.estimated) == (5, False)


async def test_an_upstream_without_usage_gets_an_estimate(gateway: AsyncClient) -> None:
    response = await gateway.embed(["twelve chars"], model="embed-no-usage")
    assert (response.usage.input_tokens, response.usage.estimated) == (3, True)


async def test_falls_back_to_the_next_deployment_and_counts_the_failure(
    gateway: AsyncClient, upstream: FakeOpenAI
) -> None:
    response = await gateway.embed(["fall back"], model="embed-fallback")
    assert response.deployment.name == "fake/text-embedding-fake"
    models = {m.alias: m for m in (await gateway.orchestrator.ListModels(orch.ListModelsRequest())).models}
    states = {d.name: d.state for d in models["embed-fallback"].deployments}
    assert states["fake/fault-500"].consecutive_failures == 1


async def test_a_malformed_upstream_answer_is_unavailable(gateway: AsyncClient) -> None:
    error = await raises(gateway.embed(["x"], model="embed-broken"))
    assert error.code is grpc.StatusCode.UNAVAILABLE and error.reason == "UPSTREAM_MALFORMED"


async def test_list_models_shows_kinds_and_dimensions(gateway: AsyncClient) -> None:
    models = {m.alias: m for m in (await gateway.orchestrator.ListModels(orch.ListModelsRequest())).models}
    assert models["builtin-embedding"].kind == orch.MODEL_KIND_EMBEDDING
    assert models["builtin-embedding"].dimensions == 256 and models["builtin-embedding"].builtin
    assert (models["embed"].kind, models["embed"].dimensions) == (orch.MODEL_KIND_EMBEDDING, 16)
    assert models["offline-embed"].dimensions == 256
    assert (models["chatty"].kind, models["chatty"].dimensions) == (orch.MODEL_KIND_CHAT, 0)
    assert models["builtin"].kind == orch.MODEL_KIND_CHAT


async def test_the_call_is_in_the_request_log_with_its_model_usage_and_cost(gateway: AsyncClient) -> None:
    response = await gateway.embed(["one two three"], model="priced", request_id="embed-logged")

    async def logged() -> list[orch.Call]:
        page = await gateway.orchestrator.ListCalls(orch.ListCallsRequest(model="priced"))
        return list(page.calls)

    await eventually(lambda: _nonempty(logged()))
    [call] = await logged()
    assert (call.request_id, call.deployment, call.status_code) == ("embed-logged", "fake/text-embedding-fake", "OK")
    assert call.input_tokens == response.usage.input_tokens == 3 and call.output_tokens == 0
    assert call.cost_usd == pytest.approx(3.0)
    refused = await raises(gateway.embed([""], model="priced", request_id="embed-refused"))
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT
    await eventually(lambda: _has(logged(), "embed-refused"))


async def _nonempty(calls: Any) -> bool:
    return bool(await calls)


async def _has(calls: Any, request_id: str) -> bool:
    return any(c.request_id == request_id for c in await calls)


@pytest.mark.parametrize(
    ("inputs", "extra", "fields"),
    [
        ([], {}, ["inputs"]),
        (["fine", "", "also fine", ""], {}, ["inputs[1]", "inputs[3]"]),
        (["x"] * 9, {}, ["inputs"]),
        (["fine", "y" * 101], {}, ["inputs[1]"]),
        (["fine"], {"dimensions": -1}, ["dimensions"]),
        (["fine"], {"dimensions": 17}, ["dimensions"]),  # the route says 16
        (["fine"], {"model": ""}, ["model"]),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    gateway: AsyncClient, inputs: list[str], extra: dict[str, Any], fields: list[str]
) -> None:
    request = orch.EmbedRequest(model=extra.pop("model", "embed"), inputs=inputs, **extra)
    error = await raises(gateway.orchestrator.Embed(request))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == fields
    assert "y" * 20 not in str(error)  # the input's text is never echoed


async def test_an_unknown_embedding_model_is_not_found(gateway: AsyncClient) -> None:
    error = await raises(gateway.embed(["x"], model="no-such-model"))
    assert error.code is grpc.StatusCode.NOT_FOUND and error.reason == "MODEL_NOT_FOUND"


async def test_a_chat_model_named_for_embed_and_an_embedding_model_named_for_chat_are_refused(
    gateway: AsyncClient, upstream: FakeOpenAI
) -> None:
    error = await raises(gateway.embed(["x"], model="chatty"))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT and error.reason == "MODEL_KIND_MISMATCH"
    assert [v.field for v in error.field_violations] == ["model"]
    assert "'chatty' is a chat model; Embed needs an embedding model" in error.field_violations[0].description
    error = await raises(collect(gateway.orchestrator.Chat(chat_request("hi", model="embed"))))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT and error.reason == "MODEL_KIND_MISMATCH"
    assert "'embed' is an embedding model" in str(error)
    error = await raises(gateway.orchestrator.Complete(orch.CompleteRequest(**_chat("builtin-embedding"))))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    compare = orch.CompareRequest(models=["chatty", "embed"], messages=chat_request("hi").messages)
    error = await raises(collect(gateway.orchestrator.Compare(compare)))
    assert [v.field for v in error.field_violations] == ["models[1]"]
    assert upstream.requests_total == 0  # nothing reached the upstream


def _chat(model: str) -> dict[str, Any]:
    return {"model": model, "messages": chat_request("hi").messages}


async def test_rate_limits_apply_to_embed(start_server: Any) -> None:
    server = await start_server(POINTSMAN_RATE_LIMIT_PRINCIPAL_RPS=0.001, POINTSMAN_RATE_LIMIT_PRINCIPAL_BURST=1)
    async with AsyncClient(server.address, timeout=20) as client:
        await client.embed(["first"])
        error = await raises(client.embed(["second"]))
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == "RATE_LIMITED"


async def test_a_viewer_may_not_embed(start_server: Any) -> None:
    server = await start_server()
    async with AsyncClient(server.address, timeout=20) as anonymous:
        login = await anonymous.auth.Login(_login("viewer@pointsman.dev"))
    async with AsyncClient(server.address, timeout=20, token=login.access_token) as viewer:
        error = await raises(viewer.embed(["x"]))
    assert error.code is grpc.StatusCode.PERMISSION_DENIED


def _login(email: str) -> Any:
    from pointsman.auth.v1 import auth_pb2

    return auth_pb2.LoginRequest(email=email)


async def test_the_cli_prints_json_lines_reads_stdin_and_summarises(
    server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pointsman.cli.main import main

    async def cli(*argv: str) -> tuple[int, list[dict[str, Any]]]:
        code = await asyncio.to_thread(main, ["embed", *argv, "--address", server.address])
        return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    code, lines = await cli("first text", "second text")
    assert code == 0
    assert [(line["index"], line["dimensions"], len(line["first_values"])) for line in lines] == [
        (0, 256, 4),
        (1, 256, 4),
    ]
    monkeypatch.setattr(sys, "stdin", io.StringIO("one\n\ntwo\nthree\n"))
    code, [summary] = await cli("--summary", "-", "--dimensions", "128")
    assert summary == {
        "model": "builtin-embedding",
        "deployment": "builtin-embedding",
        "embeddings": 3,
        "dimensions": 128,
        "input_tokens": summary["input_tokens"],
    }
    code = await asyncio.to_thread(main, ["embed", "-m", "builtin", "x", "--address", server.address])
    assert code == 3  # INVALID_ARGUMENT: a chat model
    assert "MODEL_KIND_MISMATCH" in capsys.readouterr().err


def test_vectors_listed_out_of_order_come_back_in_the_inputs_order() -> None:
    from pointsman.server.providers.openai_embeddings import _vectors

    answer = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]}
    assert _vectors(answer, ["a", "b"]).vectors == [[1.0, 0.0], [0.0, 1.0]]
    for broken in ({"data": [{"index": 0, "embedding": [1.0]}]}, {"data": [{"index": 2, "embedding": [1.0]}] * 2}):
        with pytest.raises(ValueError):
            _vectors(broken, ["a", "b"])
