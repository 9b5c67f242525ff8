"""The HTTP door maps OpenAI's `user`, `metadata` and its allow-listed
parameters (presence_penalty, logit_bias, service_tier...) into request
metadata and provider options: driven by the real openai SDK, checked at the
fake upstream and in the request log; bad values are OpenAI-shaped 400s."""

from __future__ import annotations

import openai
import pytest
import test_http_door

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.server import PointsmanServer

from fakes.openai_upstream import FakeOpenAI

# The door's fixtures: a server with the HTTP door on the fake upstream, and an SDK client on it.
upstream, door, sdk = test_http_door.upstream, test_http_door.door, test_http_door.sdk
HELLO = [{"role": "user", "content": "Hello there"}]


async def test_user_metadata_and_pass_through_fields_arrive(
    sdk: openai.AsyncOpenAI, upstream: FakeOpenAI, door: tuple[PointsmanServer, str]
) -> None:
    await sdk.chat.completions.create(
        model="gpt",
        messages=HELLO,  # type: ignore[arg-type]
        user="end-user-3",
        metadata={"team": "search", "feature": "autocomplete"},
        presence_penalty=0.25,
        logit_bias={"50256": -100},
        service_tier="flex",
        extra_body={"verbosity": "low", "not_a_parameter": 1},  # unknown fields are ignored, as before
    )
    sent = upstream.last_request
    assert sent is not None
    assert sent["user"] == "end-user-3"
    assert sent["presence_penalty"] == 0.25 and sent["logit_bias"] == {"50256": -100}
    assert sent["service_tier"] == "flex" and sent["verbosity"] == "low"
    assert "metadata" not in sent and "not_a_parameter" not in sent  # tags stay with the gateway

    server, _ = door
    await server.state.request_log.flushed()
    async with AsyncClient(server.address, timeout=10) as client:
        calls = await client.orchestrator.ListCalls(orch.ListCallsRequest(tags={"team": "search"}))
        stats = await client.orchestrator.GetStats(orch.GetStatsRequest(tag_keys=["feature"], by_end_user=True))
    assert [(c.end_user_id, dict(c.tags)) for c in calls.calls] == [
        ("end-user-3", {"team": "search", "feature": "autocomplete"})
    ]
    assert [(g.tag_key, g.value, g.requests) for g in stats.tags] == [("feature", "autocomplete", 1)]
    assert [(g.value, g.requests) for g in stats.end_users] == [("end-user-3", 1)]


async def test_streamed_calls_carry_them_too(sdk: openai.AsyncOpenAI, upstream: FakeOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="gpt",
        messages=HELLO,
        stream=True,
        user="u-9",
        frequency_penalty=1.0,  # type: ignore[arg-type]
    )
    async for _ in stream:
        pass
    sent = upstream.last_request
    assert sent is not None and sent["user"] == "u-9" and sent["frequency_penalty"] == 1


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"user": "u" * 257}, "user"),
        ({"metadata": {"team name": "x"}}, "metadata['team name']"),
        ({"metadata": {"k": 3}}, "metadata"),
        ({"presence_penalty": 5}, "presence_penalty"),
        ({"logit_bias": {"token": 1}}, "logit_bias.token"),
        ({"service_tier": "cheapest"}, "service_tier"),
    ],
)
async def test_bad_values_are_openai_400s_naming_the_field(
    sdk: openai.AsyncOpenAI, upstream: FakeOpenAI, fields: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await sdk.chat.completions.create(model="gpt", messages=HELLO, extra_body=fields)  # type: ignore[arg-type]
    assert raised.value.status_code == 400
    body = raised.value.body
    assert isinstance(body, dict) and param in str(body.get("param")) + str(body.get("message"))
    assert upstream.requests_total == 0
