"""Image parts end to end: a real server on port 0 with the real SDKs inside,
the fake OpenAI and Anthropic upstreams asserting what they received, the
checks on bad images, deployments without vision, the firewall on text
parts, the response cache, and the HTTP door with the real openai SDK."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import openai
import pytest
import pytest_asyncio
import yaml

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.server import PointsmanServer
from pointsman.server.auth import ApiKeys
from pointsman.server.backends.stores import User, UserRole
from pointsman.type.v1 import chat_pb2

from fakes.anthropic_upstream import FakeAnthropic
from fakes.openai_upstream import FakeOpenAI
from server_fixtures import raises

OPENAI_KEY = "sk-test-0123456789abcdef0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 500
PHOTO_URL = "https://images.example.com/cat.jpg"


@pytest_asyncio.fixture
async def openai_upstream() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture
async def anthropic_upstream() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as fake:
        yield fake


def routes_file(tmp_path: Path, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic) -> str:
    path = tmp_path / "routes.yaml"
    gpt = {"endpoint": "oai", "model": "gpt-fake"}
    text_only = {"endpoint": "oai", "model": "gpt-text", "vision": False}
    routes = {
        "defaults": {"retry": {"retries": 0}},
        "endpoints": {
            "oai": {"provider": "openai", "base_url": openai_upstream.base_url, "api_key_env": "OPENAI_API_KEY"},
            "ant": {
                "provider": "anthropic",
                "base_url": anthropic_upstream.base_url,
                "api_key_env": "ANTHROPIC_API_KEY",
            },
        },
        "models": {
            "gpt": {"deployments": [gpt]},
            "claude": {"deployments": [{"endpoint": "ant", "model": "claude-fake"}]},
            "text-only": {"deployments": [text_only]},
            "mixed": {"deployments": [text_only, gpt]},
            "cached": {"cache_ttl_seconds": 60, "deployments": [gpt]},
        },
    }
    path.write_text(yaml.safe_dump(routes))
    return str(path)


async def start(
    start_server: Any, tmp_path: Path, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic, **env: Any
) -> PointsmanServer:
    server: PointsmanServer = await start_server(
        POINTSMAN_ROUTES_FILE=routes_file(tmp_path, openai_upstream, anthropic_upstream),
        OPENAI_API_KEY=OPENAI_KEY,
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        **env,
    )
    return server


@pytest_asyncio.fixture
async def gateway(
    start_server: Any, tmp_path: Path, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> AsyncIterator[AsyncClient]:
    server = await start(start_server, tmp_path, openai_upstream, anthropic_upstream)
    async with AsyncClient(server.address, timeout=10, retry=None) as client:
        yield client


def image(data: bytes = PNG, mime_type: str = "image/png", **fields: Any) -> chat_pb2.ContentPart:
    return chat_pb2.ContentPart(image=chat_pb2.ImagePart(data=data, mime_type=mime_type, **fields))


def url_image(url: str = PHOTO_URL, **fields: Any) -> chat_pb2.ContentPart:
    return chat_pb2.ContentPart(image=chat_pb2.ImagePart(url=url, **fields))


def looking_at(model: str, *parts: chat_pb2.ContentPart, content: str = "What is in these?") -> orch.CompleteRequest:
    message = chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content=content, parts=list(parts))
    return orch.CompleteRequest(model=model, messages=[message])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- providers


async def test_openai_gets_a_content_array_with_data_and_https_urls(
    gateway: AsyncClient, openai_upstream: FakeOpenAI
) -> None:
    request = looking_at(
        "gpt",
        image(),
        chat_pb2.ContentPart(text="and this one"),
        url_image(detail=chat_pb2.IMAGE_DETAIL_LOW),
    )
    answer = await gateway.orchestrator.Complete(request)
    assert answer.message.content  # the fake answered
    sent = openai_upstream.last_request
    assert sent is not None
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
        {"type": "text", "text": "and this one"},
        {"type": "image_url", "image_url": {"url": PHOTO_URL, "detail": "low"}},
    ]


async def test_anthropic_gets_image_blocks_with_base64_and_url_sources(
    gateway: AsyncClient, anthropic_upstream: FakeAnthropic
) -> None:
    request = looking_at("claude", image(JPEG, "image/jpeg", detail=chat_pb2.IMAGE_DETAIL_HIGH), url_image())
    await gateway.orchestrator.Complete(request)
    sent = anthropic_upstream.last_request
    assert sent is not None
    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": b64(JPEG)}},
        {"type": "image", "source": {"type": "url", "url": PHOTO_URL}},
    ]


async def test_a_message_of_parts_only_needs_no_content(gateway: AsyncClient, openai_upstream: FakeOpenAI) -> None:
    await gateway.orchestrator.Complete(looking_at("gpt", chat_pb2.ContentPart(text="Describe:"), image(), content=""))
    assert openai_upstream.last_request is not None
    assert [p["type"] for p in openai_upstream.last_request["messages"][0]["content"]] == ["text", "image_url"]


# --------------------------------------------------------------------------- deployments without vision


async def test_the_builtin_model_refuses_images_before_any_call(gateway: AsyncClient) -> None:
    error = await raises(gateway.orchestrator.Complete(looking_at("builtin", image())))
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "IMAGES_NOT_SUPPORTED"
    assert "cannot take images" in error.message


async def test_a_route_without_vision_refuses_and_a_mixed_one_uses_only_vision_deployments(
    gateway: AsyncClient, openai_upstream: FakeOpenAI
) -> None:
    error = await raises(gateway.orchestrator.Complete(looking_at("text-only", url_image())))
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert openai_upstream.requests_total == 0
    answer = await gateway.orchestrator.Complete(looking_at("mixed", url_image()))
    assert answer.start.deployment.name == "oai/gpt-fake"
    assert openai_upstream.last_request is not None and openai_upstream.last_request["model"] == "gpt-fake"
    # Text alone still goes to the route's first deployment.
    text = orch.CompleteRequest(
        model="mixed", messages=[chat_pb2.ChatMessage(role=chat_pb2.ROLE_USER, content="hello")]
    )
    assert (await gateway.orchestrator.Complete(text)).start.deployment.name == "oai/gpt-text"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("part", "field"),
    [
        (image(JPEG, "image/png"), "messages[0].parts[0].image.data"),
        (image(b"not an image at all", "image/png"), "messages[0].parts[0].image.data"),
        (image(PNG, "image/tiff"), "messages[0].parts[0].image.mime_type"),
        (image(PNG, ""), "messages[0].parts[0].image.mime_type"),
        (url_image("http://images.example.com/cat.jpg"), "messages[0].parts[0].image.url"),
        (url_image("data:image/png;base64,AAAA"), "messages[0].parts[0].image.url"),
        (url_image("https://"), "messages[0].parts[0].image.url"),
        (chat_pb2.ContentPart(image=chat_pb2.ImagePart(mime_type="image/png")), "messages[0].parts[0].image"),
        (chat_pb2.ContentPart(text=""), "messages[0].parts[0].text"),
        (chat_pb2.ContentPart(), "messages[0].parts[0]"),
        (image(detail=99), "messages[0].parts[0].image.detail"),
    ],
)
async def test_bad_images_are_invalid_arguments_naming_the_field(
    gateway: AsyncClient, openai_upstream: FakeOpenAI, part: chat_pb2.ContentPart, field: str
) -> None:
    error = await raises(gateway.orchestrator.Complete(looking_at("gpt", part)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == [field]
    assert openai_upstream.requests_total == 0


async def test_images_only_in_user_messages(gateway: AsyncClient) -> None:
    system = chat_pb2.ChatMessage(role=chat_pb2.ROLE_SYSTEM, content="look", parts=[image()])
    request = orch.CompleteRequest(model="gpt", messages=[system, chat_pb2.ChatMessage(role=2, content="hi")])
    error = await raises(gateway.orchestrator.Complete(request))
    assert [v.field for v in error.field_violations] == ["messages[0].parts[0].image"]
    assert "user messages" in error.field_violations[0].description


async def test_size_and_count_limits(
    start_server: Any, tmp_path: Path, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    server = await start(
        start_server,
        tmp_path,
        openai_upstream,
        anthropic_upstream,
        POINTSMAN_IMAGE_MAX_BYTES=2000,
        POINTSMAN_IMAGE_MAX_REQUEST_BYTES=3000,
        POINTSMAN_IMAGE_MAX_PER_REQUEST=3,
    )
    big = PNG + b"\x00" * 1000  # over the image limit, under the request limit
    async with AsyncClient(server.address, timeout=10, retry=None) as client:
        error = await raises(client.orchestrator.Complete(looking_at("gpt", image(big))))
        assert [v.field for v in error.field_violations] == ["messages[0].parts[0].image.data"]
        assert "limit is 2000 per image" in error.field_violations[0].description
        error = await raises(client.orchestrator.Complete(looking_at("gpt", image(), image(), image())))
        assert [v.field for v in error.field_violations] == ["messages"]
        assert "3000 per request" in error.field_violations[0].description
        error = await raises(client.orchestrator.Complete(looking_at("gpt", *[url_image()] * 4)))
        assert [v.field for v in error.field_violations] == ["messages"]
        assert "at most 3" in error.field_violations[0].description
        assert (await client.orchestrator.Complete(looking_at("gpt", image(), url_image()))).message.content


def test_image_limits_must_fit_a_grpc_message() -> None:
    from server_fixtures import settings

    with pytest.raises(ValueError, match="POINTSMAN_MAX_MESSAGE_BYTES"):
        settings(POINTSMAN_MAX_MESSAGE_BYTES=1024 * 1024, POINTSMAN_IMAGE_MAX_REQUEST_BYTES=2 * 1024 * 1024)
    small = settings(POINTSMAN_MAX_MESSAGE_BYTES=1024 * 1024)  # the defaults shrink to fit
    assert small.image_max_request_bytes < small.max_message_bytes


# --------------------------------------------------------------------------- firewall and cache


async def test_the_firewall_scans_text_parts_and_redacts_them_leaving_images(
    start_server: Any, tmp_path: Path, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    secret = "AKIAIOSFODNN7EXAMPLE"
    server = await start(start_server, tmp_path, openai_upstream, anthropic_upstream, FIREWALL_SECRET_ACTION="redact")
    async with AsyncClient(server.address, timeout=10, retry=None) as client:
        request = looking_at("gpt", chat_pb2.ContentPart(text=f"my key is {secret}"), image(), content="")
        answer = await client.orchestrator.Complete(request)
    assert answer.firewall_notices  # the input firewall redacted
    sent = openai_upstream.last_request
    assert sent is not None
    text_part, image_part = sent["messages"][0]["content"]
    assert secret not in text_part["text"] and text_part["text"].startswith("my key is ")
    assert image_part["image_url"]["url"] == f"data:image/png;base64,{b64(PNG)}"


async def test_a_secret_in_a_text_part_is_blocked(gateway: AsyncClient, openai_upstream: FakeOpenAI) -> None:
    request = looking_at("gpt", url_image(), chat_pb2.ContentPart(text="key AKIAIOSFODNN7EXAMPLE"))
    error = await raises(gateway.orchestrator.Complete(request))
    assert error.code is grpc.StatusCode.PERMISSION_DENIED and error.reason == "CONTENT_BLOCKED"
    assert openai_upstream.requests_total == 0


async def test_the_response_cache_tells_images_apart(gateway: AsyncClient, openai_upstream: FakeOpenAI) -> None:
    complete = gateway.orchestrator.Complete
    assert not (await complete(looking_at("cached", image()))).start.cached
    assert (await complete(looking_at("cached", image()))).start.cached
    assert not (await complete(looking_at("cached", image(PNG + b"\x01")))).start.cached
    assert not (await complete(looking_at("cached", url_image()))).start.cached
    assert not (await complete(looking_at("cached", url_image(detail=chat_pb2.IMAGE_DETAIL_HIGH)))).start.cached
    assert openai_upstream.requests_total == 4


# --------------------------------------------------------------------------- the HTTP door


@pytest_asyncio.fixture
async def door(
    start_server: Any, tmp_path: Path, openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> tuple[str, str]:
    """The door's base URL and a real API key for it."""
    server = await start(
        start_server, tmp_path, openai_upstream, anthropic_upstream, POINTSMAN_HTTP_ADDRESS="127.0.0.1:0"
    )
    organisation = server.settings.org_id
    user = await server.stores.users.create_user(User("", organisation, "dev@images.test", UserRole.DEVELOPER))
    _, key = await ApiKeys(server.stores.users).create_api_key(organisation, user.id, "images")
    return f"http://{server.http_address}/v1", key


async def test_the_openai_sdk_sends_an_image_content_array_through_the_door(
    door: tuple[str, str], openai_upstream: FakeOpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    base_url, key = door
    data_url = f"data:image/png;base64,{b64(PNG)}"
    content: Any = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "high"}},
        {"type": "image_url", "image_url": {"url": PHOTO_URL}},
    ]
    async with openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=20) as sdk:
        answer = await sdk.chat.completions.create(model="gpt", messages=[{"role": "user", "content": content}])
        assert answer.choices[0].message.content
        assert openai_upstream.last_request is not None
        assert openai_upstream.last_request["messages"][0]["content"] == content
        await sdk.chat.completions.create(model="claude", messages=[{"role": "user", "content": content}])
        assert anthropic_upstream.last_request is not None
        blocks = anthropic_upstream.last_request["messages"][0]["content"]
        assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)}}
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(model="builtin", messages=[{"role": "user", "content": content}])
        assert caught.value.code == "images_not_supported"


@pytest.mark.parametrize(
    ("image_url", "param"),
    [
        ({"url": "data:image/png,notbase64"}, "messages[0].content[1].image_url.url"),
        ({"url": "data:image/png;base64,@@@@"}, "messages[0].content[1].image_url.url"),
        ({"url": PHOTO_URL, "detail": "ultra"}, "messages[0].content[1].image_url.detail"),
        ("not an object", "messages[0].content[1].image_url"),
        ({"url": f"data:image/gif;base64,{b64(PNG)}"}, "messages[0].content[1].image_url.url"),
        ({"url": "ftp://example.com/a.png"}, "messages[0].content[1].image_url.url"),
    ],
)
async def test_bad_images_at_the_door_are_400_naming_the_field(
    door: tuple[str, str], image_url: Any, param: str
) -> None:
    base_url, key = door
    body = {
        "model": "gpt",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": image_url}]}
        ],
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as response,
    ):
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
