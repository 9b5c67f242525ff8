"""The OpenAI-compatible HTTP door end to end: a real server on port 0 (gRPC
and HTTP), the fake OpenAI upstream behind it, and the real `openai` SDK as
the client (sync, async, streaming, tools, embeddings, models), then every
kind of bad input over raw HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import pytest_asyncio
import yaml

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.server import PointsmanServer, open_server
from pointsman.server.auth import ApiKeys
from pointsman.server.backends.stores import User, UserRole

from fakes.openai_upstream import FakeOpenAI, fake_vector
from server_fixtures import settings

UPSTREAM_KEY = "sk-http-door-0123456789abcdef"
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "looks a word up",
        "parameters": {"type": "object", "properties": {"echo": {"type": "string"}}},
    },
}


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(first_byte_delay_s=5.0) as fake:
        yield fake


def routes_file(tmp_path: Path, upstream: FakeOpenAI) -> str:
    path = tmp_path / "routes.yaml"
    fake = {"endpoint": "fake", "model": "gpt-fake"}
    path.write_text(
        yaml.safe_dump(
            {
                "defaults": {"retry": {"retries": 0}},
                "endpoints": {
                    "fake": {"provider": "openai", "base_url": upstream.base_url, "api_key_env": "OPENAI_API_KEY"},
                },
                "models": {
                    "gpt": {"deployments": [fake]},
                    "down": {"deployments": [{"endpoint": "fake", "model": "fault-500"}]},
                    "broken": {"deployments": [{"endpoint": "fake", "model": "fault-cut"}]},
                    "slow": {"deployments": [{"endpoint": "fake", "model": "long-40+slow-20"}]},
                    "endless": {"deployments": [{"endpoint": "fake", "model": "long-1000+slow-50"}]},
                    "embed": {
                        "kind": "embedding",
                        "dimensions": 16,
                        "deployments": [{"endpoint": "fake", "model": "text-embedding-fake"}],
                    },
                },
                "routers": {
                    "auto": {
                        "default": "gpt",
                        "classes": {"slow": {"model": "slow", "examples": ["Take your time over this one."]}},
                    }
                },
            }
        )
    )
    return str(path)


async def start_door(start_server: Any, tmp_path: Path, upstream: FakeOpenAI, **env: Any) -> PointsmanServer:
    server: PointsmanServer = await start_server(
        POINTSMAN_ROUTES_FILE=routes_file(tmp_path, upstream),
        OPENAI_API_KEY=UPSTREAM_KEY,
        POINTSMAN_HTTP_ADDRESS="127.0.0.1:0",
        POINTSMAN_HTTP_MAX_BODY_BYTES=64 * 1024,
        **env,
    )
    return server


async def api_key(server: PointsmanServer, role: UserRole = UserRole.DEVELOPER) -> str:
    """A real API key of a user in the server's organisation."""
    email = f"{role.value}@http-door.test"
    user = await server.stores.users.create_user(User("", server.settings.org_id, email, role))
    _, key = await ApiKeys(server.stores.users).create_api_key(server.settings.org_id, user.id, "http")
    return key


def base_url(server: PointsmanServer) -> str:
    return f"http://{server.http_address}/v1"


@pytest_asyncio.fixture
async def door(start_server: Any, tmp_path: Path, upstream: FakeOpenAI) -> tuple[PointsmanServer, str]:
    server = await start_door(start_server, tmp_path, upstream)
    return server, await api_key(server)


@pytest_asyncio.fixture
async def sdk(door: tuple[PointsmanServer, str]) -> AsyncIterator[openai.AsyncOpenAI]:
    server, key = door
    async with openai.AsyncOpenAI(base_url=base_url(server), api_key=key, max_retries=0, timeout=20) as client:
        yield client


# -- the openai SDK -------------------------------------------------------------


async def test_sync_sdk_completes_through_the_door(door: tuple[PointsmanServer, str], upstream: FakeOpenAI) -> None:
    server, key = door
    client = openai.OpenAI(base_url=base_url(server), api_key=key, max_retries=0, timeout=20)
    raw = await _in_thread(
        lambda: client.chat.completions.with_raw_response.create(
            model="gpt",
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello door"}],
            temperature=0.25,
            top_p=0.5,
            max_completion_tokens=50,
            stop=["never"],
            seed=7,
            user="end-user-1",  # OpenAI fields the door has no use for are tolerated
        )
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Echo: hello door"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 3
    request_id = raw.headers["x-request-id"]
    assert completion.id == f"chatcmpl-{request_id}"
    # The generation settings reach the upstream, and its key is the gateway's, not the caller's.
    sent = upstream.last_request
    assert sent is not None
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["seed"]) == (0.25, 0.5, ["never"], 7)
    assert upstream.auth_headers[-1] == f"Bearer {UPSTREAM_KEY}"
    client.close()


async def _in_thread(call: Any) -> Any:
    return await asyncio.to_thread(call)


async def test_max_tokens_cuts_the_answer_with_finish_reason_length(sdk: openai.AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "one two three four"}], max_tokens=2
    )
    assert completion.choices[0].message.content == "Echo: one "
    assert completion.choices[0].finish_reason == "length"


async def test_async_sdk_streams_sse_chunks_with_usage(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="gpt",
        messages=[{"role": "user", "content": [{"type": "text", "text": "stream "}, {"type": "text", "text": "me"}]}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: stream me"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    assert len({c.id for c in chunks}) == 1


async def test_a_stream_without_include_usage_has_no_usage_chunk(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.choices and c.usage is None for c in chunks)


async def test_tools_come_back_as_tool_calls(sdk: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "find cats"}]
    completion = await sdk.chat.completions.create(model="gpt", messages=messages, tools=[TOOL])  # type: ignore[list-item]
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"echo": "find cats"}  # type: ignore[union-attr]

    stream = await sdk.chat.completions.create(model="gpt", messages=messages, tools=[TOOL], stream=True)  # type: ignore[list-item]
    deltas = [c.choices[0].delta for c in [chunk async for chunk in stream] if c.choices]
    pieces = [t for d in deltas for t in d.tool_calls or ()]
    assert pieces[0].id == call.id and pieces[0].function is not None and pieces[0].function.name == "lookup"
    assert json.loads("".join(p.function.arguments or "" for p in pieces if p.function)) == {"echo": "find cats"}

    # The tool's result goes back as a tool message, with the assistant's call before it.
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "cats are cats"},
    ]
    answer = await sdk.chat.completions.create(model="gpt", messages=messages, tools=[TOOL])  # type: ignore[list-item]
    assert answer.choices[0].message.content == "Echo: tool said: cats are cats"


async def test_models_and_embeddings(sdk: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in sdk.models.list()]
    assert {"down", "embed", "gpt", "auto"} <= set(models)  # router aliases too
    assert (await sdk.models.retrieve("gpt")).id == "gpt"
    assert (await sdk.models.retrieve("auto")).id == "auto"
    routed = await sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    assert routed.choices[0].message.content == "Echo: hi"
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("nope")
    # The SDK asks for base64 unless told; both encodings give the fake's vectors.
    for encoding in (openai.NOT_GIVEN, "float"):
        result = await sdk.embeddings.create(model="embed", input=["a cat", "a dog"], encoding_format=encoding)  # type: ignore[arg-type]
        assert [d.index for d in result.data] == [0, 1]
        vector = result.data[0].embedding
        assert vector == pytest.approx(fake_vector("a cat", len(vector)), abs=1e-6)
        assert result.usage.prompt_tokens > 0
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.embeddings.create(model="gpt", input="chat models do not embed")
    assert caught.value.status_code == 400


async def test_jwts_work_as_bearer_tokens_and_calls_reach_the_request_log(door: tuple[PointsmanServer, str]) -> None:
    server, _ = door
    user = await server.stores.users.create_user(
        User("", server.settings.org_id, "jwt@http-door.test", UserRole.DEVELOPER)
    )
    token, _ = server.authenticator.issue(user)
    async with openai.AsyncOpenAI(base_url=base_url(server), api_key=token, max_retries=0) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt", messages=[{"role": "user", "content": "logged"}]
        )
    request_id = raw.headers["x-request-id"]
    await server.state.request_log.flushed()
    async with AsyncClient(server.address, timeout=10) as grpc_client:
        calls = await grpc_client.orchestrator.ListCalls(orch.ListCallsRequest(model="gpt"))
    assert request_id in [c.request_id for c in calls.calls]


# -- errors as OpenAI reports them ----------------------------------------------


async def test_credentials_are_checked(door: tuple[PointsmanServer, str]) -> None:
    server, _ = door
    for bad in ("pm_not-a-real-key", "not-a-jwt"):
        async with openai.AsyncOpenAI(base_url=base_url(server), api_key=bad, max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError) as caught:
                await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 401
        assert bad not in caught.value.message
    # The credential is checked first: a refused caller learns nothing about its body.
    assert (await _post(server, "pm_not-a-real-key", "/chat/completions", b"{not json"))[0] == 401
    viewer = await api_key(server, UserRole.VIEWER)
    async with openai.AsyncOpenAI(base_url=base_url(server), api_key=viewer, max_retries=0) as client:
        assert [m.id async for m in client.models.list()]  # viewers may list models
        with pytest.raises(openai.PermissionDeniedError):  # but not chat
            await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])


async def test_domain_errors_have_openai_statuses_and_shape(sdk: openai.AsyncOpenAI) -> None:
    user = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as not_found:
        await sdk.chat.completions.create(model="no-such-model", messages=user)  # type: ignore[arg-type]
    assert not_found.value.code == "model_not_found" and not_found.value.param == "model"
    with pytest.raises(openai.PermissionDeniedError) as blocked:
        await sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "my PASSWORD = hunter2"}])
    assert blocked.value.code == "content_blocked" and "hunter2" not in blocked.value.message
    with pytest.raises(openai.InternalServerError) as down:
        await sdk.chat.completions.create(model="down", messages=user)  # type: ignore[arg-type]
    assert down.value.status_code == 503 and down.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.BadRequestError) as invalid:
        await sdk.chat.completions.create(model="gpt", messages=user, temperature="hot")  # type: ignore[arg-type]
    assert invalid.value.param == "temperature" and invalid.value.type == "invalid_request_error"


async def test_rate_limits_answer_429_with_retry_after(start_server: Any, tmp_path: Path, upstream: FakeOpenAI) -> None:
    server = await start_door(
        start_server,
        tmp_path,
        upstream,
        POINTSMAN_RATE_LIMIT_PRINCIPAL_RPS=0.01,
        POINTSMAN_RATE_LIMIT_PRINCIPAL_BURST=1,
    )
    key = await api_key(server)
    async with openai.AsyncOpenAI(base_url=base_url(server), api_key=key, max_retries=0) as client:
        await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "one"}])
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "two"}])
    assert caught.value.status_code == 429 and int(caught.value.response.headers["retry-after"]) >= 1


# -- malformed HTTP ---------------------------------------------------------------


async def _post(
    server: PointsmanServer, key: str, path: str, data: bytes, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base_url(server)}{path}",
            data=data,
            headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
        ) as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()


async def test_malformed_bodies_get_clear_json_errors(door: tuple[PointsmanServer, str]) -> None:
    server, key = door
    cases = [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        (b'{"model": "gpt"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"model": "gpt", "pad": "' + b"x" * 70_000 + b'"}', "application/json", 413, "request_too_large"),
    ]
    for data, content_type, status, code in cases:
        got_status, body = await _post(server, key, "/chat/completions", data, content_type)
        assert (got_status, body["error"]["code"]) == (status, code), data[:20]
        assert set(body["error"]) == {"message", "type", "param", "code"}
    # Every problem at once, each named by its JSON path.
    bad = {"model": 5, "messages": [{"role": "wizard", "content": {"x": 1}}], "max_tokens": "many", "stop": [1]}
    status, body = await _post(server, key, "/chat/completions", json.dumps(bad).encode())
    assert status == 400
    for path in ("model", "messages[0].role", "messages[0].content", "max_tokens", "stop"):
        assert path in body["error"]["message"]
    image = {"type": "image_url", "image_url": {"url": "http://x/cat.png"}}
    status, body = await _post(
        server,
        key,
        "/chat/completions",
        json.dumps({"model": "gpt", "messages": [{"role": "user", "content": [image]}]}).encode(),
    )
    # Images are taken (tests/test_images.py), but by https or data: URL only.
    # Named as the client sent it: OpenAI's content part, not the gRPC contract's path.
    assert status == 400 and body["error"]["param"] == "messages[0].content[0].image_url.url"
    status, body = await _post(server, key, "/embeddings", json.dumps({"model": "embed", "input": [[1, 2]]}).encode())
    assert status == 400 and body["error"]["param"] == "input"
    # Unknown fields are tolerated, as OpenAI tolerates them.
    fine = {"model": "gpt", "messages": [{"role": "user", "content": "ok"}], "some_new_field": {"a": 1}}
    status, body = await _post(server, key, "/chat/completions", json.dumps(fine).encode())
    assert status == 200 and body["choices"][0]["message"]["content"] == "Echo: ok"


async def test_unknown_paths_and_methods_answer_json(door: tuple[PointsmanServer, str]) -> None:
    server, _ = door
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url(server)}/nothing-here") as response:
            assert response.status == 404 and (await response.json())["error"]["code"] == "unknown_url"
        async with session.get(f"{base_url(server)}/chat/completions") as response:
            assert response.status == 405 and (await response.json())["error"]["type"] == "invalid_request_error"


async def test_the_door_is_off_unless_configured(start_server: Any) -> None:
    server: PointsmanServer = await start_server()
    assert server.http_address is None


# -- failures mid-stream and shutdown ----------------------------------------------


async def test_a_failure_mid_stream_is_an_error_frame_the_sdk_raises(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="broken", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            text.append(chunk.choices[0].delta.content or "")
    assert "".join(text)  # what arrived before the cut was passed on
    assert "Traceback" not in str(caught.value)


LONG_GRACE = 120.0


async def _stopping_server(tmp_path: Path, upstream: FakeOpenAI) -> tuple[PointsmanServer, str]:
    server = await open_server(
        settings(
            POINTSMAN_ROUTES_FILE=routes_file(tmp_path, upstream),
            OPENAI_API_KEY=UPSTREAM_KEY,
            POINTSMAN_HTTP_ADDRESS="127.0.0.1:0",
        )
    )
    await server.start()
    return server, await api_key(server)


async def test_shutdown_drains_streams_in_flight_and_refuses_new_calls(tmp_path: Path, upstream: FakeOpenAI) -> None:
    server, key = await _stopping_server(tmp_path, upstream)
    async with openai.AsyncOpenAI(base_url=base_url(server), api_key=key, max_retries=0, timeout=30) as client:
        stream = await client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": "x"}], stream=True
        )
        chunks = [await anext(aiter(stream))]
        stopping = asyncio.create_task(server.stop(grace=LONG_GRACE))
        with pytest.raises(openai.InternalServerError) as refused:
            while True:  # the door refuses new calls once the drain has begun
                await client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "y"}])
                await asyncio.sleep(0.01)
        assert refused.value.status_code == 503 and refused.value.code == "server_shutting_down"
        chunks += [chunk async for chunk in stream]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        await stopping


async def test_a_stream_cut_at_the_end_of_the_grace_period_ends_with_an_error(
    tmp_path: Path, upstream: FakeOpenAI
) -> None:
    server, key = await _stopping_server(tmp_path, upstream)
    async with openai.AsyncOpenAI(base_url=base_url(server), api_key=key, max_retries=0, timeout=30) as client:
        stream = await client.chat.completions.create(
            model="endless", messages=[{"role": "user", "content": "x"}], stream=True
        )
        iterator = aiter(stream)
        await anext(iterator)
        await anext(iterator)
        await server.stop(grace=0)
        with pytest.raises(openai.APIError) as caught:
            async for _ in iterator:
                pass
    assert "shutting down" in caught.value.message
    await upstream.wait_for(lambda: upstream.streams_open == 0)
