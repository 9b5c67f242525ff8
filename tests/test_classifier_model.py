"""A router's optional classifier model, through a real server and a fake small
LLM over real HTTP: asked only about the turns the embeddings are not sure
of, with a short prompt listing the classes; its answer routes the call, and
a timeout, an error or an answer naming no class keeps the embeddings'
choice without failing the call. The classifier call is logged and costed
like any call; ListModels shows router aliases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from test_route_classes import CODE, MATH

from pointsman.cli.main import main as cli_main
from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.routes import RoutesFileError, build_routing
from pointsman.server.domain.classifier_model import read_label
from pointsman.server.domain.classify import NO_CLASS, RouteClass

from fakes.classifier_upstream import FakeClassifier
from helpers_pb import chat_request, user
from server_fixtures import collect, eventually, settings

AMBIGUOUS = "Good morning!"  # the embeddings put it in no class
PRICE = {"input_per_million_tokens": 1000.0, "output_per_million_tokens": 1000.0}


def routes(classifier_url: str, **classifier: Any) -> dict[str, Any]:
    offline = {"endpoint": "offline"}
    return {
        "endpoints": {"offline": {"provider": "builtin"}, "small": {"provider": "openai", "base_url": classifier_url}},
        "models": {
            "coder": {"deployments": [{**offline, "model": "coder"}]},
            "mathematician": {"deployments": [{**offline, "model": "mathematician"}]},
            "general": {"deployments": [{**offline, "model": "general"}]},
            "small": {
                "retry": {"retries": 0},
                "deployments": [{"endpoint": "small", "model": "small-model", "price": PRICE}],
            },
        },
        "routers": {
            "auto": {
                "default": "general",
                "classes": {
                    "code": {"model": "coder", "examples": CODE, "keywords": ["stack trace"]},
                    "math": {"model": "mathematician", "examples": MATH, "description": "Mathematics questions"},
                },
                "classifier": {"model": "small", "timeout_seconds": 5, **classifier},
            }
        },
    }


def write(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest_asyncio.fixture
async def classifier() -> AsyncIterator[FakeClassifier]:
    async with FakeClassifier(reply="math", first_byte_delay_s=30) as fake:
        yield fake


@pytest_asyncio.fixture
async def gateway(start_server: Any, tmp_path: Path, classifier: FakeClassifier) -> AsyncIterator[AsyncClient]:
    server = await start_server(POINTSMAN_ROUTES_FILE=write(tmp_path, routes(classifier.base_url)))
    async with AsyncClient(server.address, timeout=10) as client:
        yield client


def ask(text: str) -> orch.CompleteRequest:
    return orch.CompleteRequest(model="auto", messages=[user(text)])


async def test_an_unclear_turn_is_decided_by_the_classifier_model(
    gateway: AsyncClient, classifier: FakeClassifier
) -> None:
    answer = await gateway.orchestrator.Complete(ask(AMBIGUOUS))
    start = answer.start
    assert (start.model, start.route_class, start.routed_model) == ("auto", "math", "mathematician")
    assert start.route_decision == orch.ROUTE_DECISION_CLASSIFIER_MODEL
    assert start.deployment.name == "offline/mathematician"
    # One short question, all in one user message (some small models drop system messages):
    # the classes with their descriptions (or first examples), then the turn.
    ((system, question),) = classifier.questions
    assert system == ""
    assert "- math: Mathematics questions" in question
    assert f"- code: {CODE[0]}; {CODE[1]}" in question
    assert "or none if" in question
    assert question.endswith(f"\nMessage: {AMBIGUOUS}")
    sent = classifier.last_request
    assert sent is not None
    assert sent["temperature"] == 0
    assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 8

    # Streaming goes the same way.
    events = await collect(gateway.orchestrator.Chat(chat_request(AMBIGUOUS, model="auto")))
    assert events[0].start.route_class == "math"
    assert events[0].start.route_decision == orch.ROUTE_DECISION_CLASSIFIER_MODEL


async def test_none_from_the_classifier_model_is_the_default(gateway: AsyncClient, classifier: FakeClassifier) -> None:
    classifier.reply = "None."
    start = (await gateway.orchestrator.Complete(ask(AMBIGUOUS))).start
    assert (start.route_class, start.routed_model) == ("default", "general")
    assert start.route_decision == orch.ROUTE_DECISION_CLASSIFIER_MODEL


async def test_a_clear_turn_never_asks_the_classifier_model(gateway: AsyncClient, classifier: FakeClassifier) -> None:
    start = (await gateway.orchestrator.Complete(ask("How do I sort a dictionary by value in Python?"))).start
    assert (start.route_class, start.route_decision) == ("code", orch.ROUTE_DECISION_EMBEDDING)
    start = (await gateway.orchestrator.Complete(ask("Here is the stack trace my grandmother sent me"))).start
    assert (start.route_class, start.route_decision) == ("code", orch.ROUTE_DECISION_KEYWORD)
    assert classifier.requests_total == 0
    # A plain model says nothing about routing.
    plain = (await gateway.orchestrator.Complete(orch.CompleteRequest(model="coder", messages=[user("hi")]))).start
    assert (plain.route_class, plain.route_decision) == ("", orch.ROUTE_DECISION_UNSPECIFIED)


@pytest.mark.parametrize(
    "reply",
    ["I think this is about cooking", "code or math", "", "physics", "sure! the class is math, because"],
)
async def test_an_answer_naming_no_class_keeps_the_embeddings_choice(
    gateway: AsyncClient, classifier: FakeClassifier, reply: str
) -> None:
    classifier.reply = reply
    start = (await gateway.orchestrator.Complete(ask(AMBIGUOUS))).start
    assert (start.route_class, start.routed_model) == ("default", "general")
    assert start.route_decision == orch.ROUTE_DECISION_CLASSIFIER_FALLBACK
    assert classifier.requests_total == 1


@pytest.mark.parametrize("fault", ["fault-500", "fault-429", "fault-401", "fault-malformed", "fault-slow-first-byte"])
async def test_a_failing_or_slow_classifier_model_never_fails_the_call(
    start_server: Any, tmp_path: Path, classifier: FakeClassifier, fault: str
) -> None:
    # A tight timeout, far below the fake's 30 s wait before answering.
    server = await start_server(POINTSMAN_ROUTES_FILE=write(tmp_path, routes(classifier.base_url, timeout_seconds=0.3)))
    classifier.set_fault(fault)
    async with AsyncClient(server.address, timeout=10) as client:
        answer = await client.orchestrator.Complete(ask(AMBIGUOUS))
        events = await collect(client.orchestrator.Chat(chat_request(AMBIGUOUS, model="auto")))
    for start in (answer.start, events[0].start):
        assert (start.route_class, start.routed_model) == ("default", "general")
        assert start.route_decision == orch.ROUTE_DECISION_CLASSIFIER_FALLBACK
    assert answer.message.content.endswith(f"You said: {AMBIGUOUS}")  # the built-in model answered the turn
    assert events[-1].WhichOneof("event") == "finish"


async def test_the_classifier_call_is_logged_and_costed_like_any_call(
    gateway: AsyncClient, classifier: FakeClassifier
) -> None:
    answer = await gateway.orchestrator.Complete(ask(AMBIGUOUS))
    request_id = answer.start.request_id

    async def calls() -> list[orch.Call]:
        return list((await gateway.orchestrator.ListCalls(orch.ListCallsRequest())).calls)

    await eventually(lambda: _count(calls(), 2))
    by_model = {c.model: c for c in await calls()}
    asked, routed = by_model["small"], by_model["auto"]
    # The classifier's own row: same request, its deployment, its tokens at its price.
    assert (asked.request_id, asked.deployment, asked.status_code) == (request_id, "small/small-model", "OK")
    assert asked.input_tokens > 0 and asked.cost_usd > 0
    # The user's row: the router alias asked for, the deployment that answered.
    assert (routed.request_id, routed.deployment, routed.status_code) == (request_id, "offline/mathematician", "OK")
    stats = await gateway.orchestrator.GetStats(orch.GetStatsRequest())
    assert stats.requests == 2 and stats.cost_usd == pytest.approx(asked.cost_usd)


async def _count(calls: Any, n: int) -> bool:
    return len(await calls) >= n


async def test_the_classifier_call_takes_no_rate_limit_slot_of_its_own(
    start_server: Any, tmp_path: Path, classifier: FakeClassifier
) -> None:
    server = await start_server(
        POINTSMAN_ROUTES_FILE=write(tmp_path, routes(classifier.base_url)),
        POINTSMAN_RATE_LIMIT_PRINCIPAL_RPS=0.001,
        POINTSMAN_RATE_LIMIT_PRINCIPAL_BURST=1,
    )
    async with AsyncClient(server.address, timeout=10) as client:
        start = (await client.orchestrator.Complete(ask(AMBIGUOUS))).start
    assert start.route_decision == orch.ROUTE_DECISION_CLASSIFIER_MODEL


async def test_list_models_shows_router_aliases(gateway: AsyncClient) -> None:
    models = {m.alias: m for m in (await gateway.orchestrator.ListModels(orch.ListModelsRequest())).models}
    assert list(models) == sorted(models)
    auto = models["auto"]
    assert (auto.name, auto.kind, auto.available, list(auto.deployments)) == (
        "models/auto",
        orch.MODEL_KIND_CHAT,
        True,
        [],
    )
    assert auto.router.default_model == "general"
    assert [(c.name, c.model) for c in auto.router.classes] == [("code", "coder"), ("math", "mathematician")]
    assert auto.router.classifier_model == "small"
    assert not models["coder"].HasField("router")
    # Paging walks over routers and models alike.
    seen, token = [], ""
    while True:
        page = await gateway.orchestrator.ListModels(orch.ListModelsRequest(page_size=2, page_token=token))
        seen += [m.alias for m in page.models]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(models)


async def test_the_cli_lists_a_router(
    start_server: Any, tmp_path: Path, classifier: FakeClassifier, capsys: pytest.CaptureFixture[str]
) -> None:
    server = await start_server(POINTSMAN_ROUTES_FILE=write(tmp_path, routes(classifier.base_url)))
    # The CLI's blocking client runs off the event loop the server is on.
    assert await asyncio.to_thread(cli_main, ["models", "--address", server.address]) == 0
    lines = {line.split("\t")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["auto"] == "auto\trouter\tcode -> coder, math -> mathematician, else general, unsure: ask small"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"model": "ghost"}, "routers.auto.classifier.model: 'ghost' is not in models"),
        ({"timeout_seconds": 0}, "routers.auto.classifier.timeout_seconds"),
        ({"max_tokens": 0}, "routers.auto.classifier.max_tokens"),
        ({"temperature": 1}, "routers.auto.classifier.temperature: Extra inputs are not permitted"),
    ],
)
def test_a_bad_classifier_is_refused_naming_the_place(tmp_path: Path, change: dict[str, Any], expected: str) -> None:
    path = write(tmp_path, routes("http://127.0.0.1:9/v1", **change))
    with pytest.raises(RoutesFileError) as caught:
        build_routing(settings(POINTSMAN_ROUTES_FILE=path))
    assert expected in str(caught.value)


def test_a_class_may_not_be_called_none(tmp_path: Path) -> None:
    config = routes("http://127.0.0.1:9/v1")
    config["routers"]["auto"]["classes"]["None"] = {"model": "coder", "examples": ["x"]}
    with pytest.raises(RoutesFileError, match=r"routers\.auto\.classes\.None: 'None' names the fallback"):
        build_routing(settings(POINTSMAN_ROUTES_FILE=write(tmp_path, config)))


CLASSES = [RouteClass("code", "coder", ("x",)), RouteClass("small-talk", "general", ("y",))]


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("code", "code"),
        ("  Code.\n", "code"),
        ("`small-talk`", "small-talk"),
        ('"CODE"', "code"),
        ("Class: code", "code"),
        ("**code**\nBecause it mentions a loop.", "code"),
        ("none", NO_CLASS),
        ("None of them", None),
        ("code or small-talk", None),
        ("I would say code", None),
        ("math", None),
        ("", None),
        ("\n\n", None),
    ],
)
def test_only_an_answer_that_plainly_names_a_class_is_read(answer: str, label: str | None) -> None:
    assert read_label(answer, CLASSES) == label
