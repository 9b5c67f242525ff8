"""Routing by meaning through a real server: a router alias (`auto`) puts the
last user turn in a class by its examples (or keywords) and answers from that
class's model; ChatStart names the class and the model. Unclear questions go
to the default; a routes file naming an unknown model, or a class without
examples, is refused with the place named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from pointsman.client import AsyncClient
from pointsman.orchestrator.v1 import orchestrator_pb2 as orch
from pointsman.server.app.routes import RoutesFileError, build_routing

from helpers_pb import chat_request, user
from server_fixtures import collect, settings

CODE = [
    "How do I reverse a list in Python?",
    "Why does this segfault when I free the pointer twice?",
    "Fix the off-by-one error in my for loop.",
    "Convert this SQL query to use a left join instead.",
    "My unit test fails with a NullPointerException in Java.",
]
MATH = [
    "What is the derivative of x squared times sine of x?",
    "What is the integral of one over x?",
    "How many ways can I arrange five books on a shelf?",
    "Find the eigenvalues of a two by two matrix.",
    "Solve for x: 3x plus 7 equals 22.",
]


def routes(**router: Any) -> dict[str, Any]:
    offline = {"endpoint": "offline", "model": "m"}
    return {
        "endpoints": {"offline": {"provider": "builtin"}},
        "models": {
            "coder": {"deployments": [{**offline, "model": "coder"}]},
            "mathematician": {"deployments": [{**offline, "model": "mathematician"}]},
            "general": {"deployments": [{**offline, "model": "general"}]},
        },
        "routers": {
            "auto": {
                "default": "general",
                "classes": {
                    "code": {"model": "coder", "examples": CODE, "keywords": ["stack trace"]},
                    "math": {"model": "mathematician", "examples": MATH},
                },
                **router,
            }
        },
    }


def write(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest_asyncio.fixture
async def gateway(start_server: Any, tmp_path: Path) -> AsyncIterator[AsyncClient]:
    server = await start_server(POINTSMAN_ROUTES_FILE=write(tmp_path, routes()))
    async with AsyncClient(server.address, timeout=10) as client:
        yield client


def ask(text: str) -> orch.CompleteRequest:
    return orch.CompleteRequest(model="auto", messages=[user(text)])


async def test_a_code_question_goes_to_the_code_model(gateway: AsyncClient) -> None:
    answer = await gateway.orchestrator.Complete(ask("How do I sort a dictionary by value in Python?"))
    assert answer.start.model == "auto"
    assert answer.start.route_class == "code" and answer.start.routed_model == "coder"
    assert answer.start.deployment.name == "offline/coder"

    events = await collect(gateway.orchestrator.Chat(chat_request("What is the integral of x cubed?", model="auto")))
    start = events[0].start
    assert (start.route_class, start.routed_model) == ("math", "mathematician")
    assert start.deployment.name == "offline/mathematician"


async def test_a_keyword_decides_outright(gateway: AsyncClient) -> None:
    answer = await gateway.orchestrator.Complete(ask("Here is the stack trace my grandmother sent me"))
    assert answer.start.route_class == "code" and answer.start.routed_model == "coder"


async def test_an_unclear_question_goes_to_the_default(gateway: AsyncClient) -> None:
    answer = await gateway.orchestrator.Complete(ask("Good morning!"))
    assert answer.start.route_class == "default" and answer.start.routed_model == "general"
    assert answer.start.deployment.name == "offline/general"


async def test_a_plain_model_says_no_class(gateway: AsyncClient) -> None:
    answer = await gateway.orchestrator.Complete(orch.CompleteRequest(model="coder", messages=[user("hi")]))
    assert answer.start.route_class == "" and answer.start.routed_model == ""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"default": "nobody"}, "routers.auto.default: 'nobody' is not in models"),
        (
            {"classes": {"code": {"model": "ghost", "examples": CODE}}},
            "routers.auto.classes.code.model: 'ghost' is not in models",
        ),
        ({"classes": {"code": {"model": "coder", "examples": []}}}, "routers.auto.classes.code.examples"),
        ({"classes": {"code": {"model": "coder"}}}, "routers.auto.classes.code.examples: Field required"),
        ({"classes": {}}, "routers.auto.classes"),
    ],
)
async def test_a_bad_router_is_refused_naming_the_place(
    start_server: Any, tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    path = write(tmp_path, routes(**change))
    with pytest.raises(RoutesFileError) as caught:
        await start_server(POINTSMAN_ROUTES_FILE=path)
    assert expected in str(caught.value)


def test_a_router_alias_may_not_shadow_a_model(tmp_path: Path) -> None:
    config = routes()
    config["routers"]["coder"] = config["routers"].pop("auto")
    with pytest.raises(RoutesFileError, match=r"routers\.coder: 'coder' is also a model alias"):
        build_routing(settings(POINTSMAN_ROUTES_FILE=write(tmp_path, config)))
