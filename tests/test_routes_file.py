"""The routes file: the documented example loads, and every mistake is
reported with the place it was made, before the server starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pointsman.server.app.routes import RoutesFileError, build_routing, load_routes_file
from pointsman.server.domain.chat import ProviderKind
from pointsman.server.domain.routing import RoutingStrategy

from server_fixtures import settings

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "routes.yaml"
VALID: dict[str, Any] = {
    "endpoints": {"offline": {"provider": "builtin"}},
    "models": {"trial": {"deployments": [{"endpoint": "offline", "model": "echo"}]}},
}


def write(tmp_path: Path, config: Any) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


async def test_the_documented_example_builds_every_alias() -> None:
    catalog, router = build_routing(settings(POINTSMAN_ROUTES_FILE=str(EXAMPLE)))
    routes = {r.alias: r for r in catalog.routes()}
    assert set(routes) == {"builtin", "builtin-embedding", "smart", "fast", "nearest", "trial", "embed", "local-embed"}
    assert routes["fast"].strategy is RoutingStrategy.WEIGHTED
    assert [(d.name, d.weight) for d in routes["fast"].deployments] == [
        ("openai/gpt-4o-mini", 3),
        ("ollama/llama3.2", 1),
    ]
    smart = routes["smart"].deployments
    assert [d.provider for d in smart] == [ProviderKind.OPENAI, ProviderKind.ANTHROPIC]
    assert smart[0].timeout_seconds == 30 and smart[1].timeout_seconds == 45
    assert smart[0].price is not None and smart[0].price.cost(1_000_000, 100_000) == pytest.approx(2.50 + 1.00)
    assert routes["fast"].deployments[1].price is None  # a local model: not costed
    assert routes["nearest"].retry.retries == 0 and routes["smart"].retry.retries == 1
    assert routes["fast"].cache_ttl_seconds == 600 and routes["smart"].cache_ttl_seconds == 0
    # One breaker per deployment, shared by every alias that uses it.
    assert "ollama/llama3.2" in router.monitors and len(router.monitors) == 9
    await catalog.aclose()


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({**VALID, "models": {"x": {"deployments": [{"endpoint": "nowhere", "model": "m"}]}}}, "'nowhere' is not in"),
        ({**VALID, "defaults": {"retry": {"retires": 2}}}, "defaults.retry.retires: Extra inputs"),
        ({**VALID, "models": {"x": {"deployments": [{"endpoint": "offline", "model": "m", "weight": -1}]}}}, "weight"),
        ({**VALID, "models": {"x": {"strategy": "fastest", "deployments": []}}}, "models.x.strategy"),
        ({**VALID, "models": {}}, "models: "),
        ({**VALID, "endpoints": {"e": {"provider": "azure"}}}, "endpoints.e.provider"),
        (
            {**VALID, "models": {"x": {"deployments": [{"endpoint": "offline", "model": "m", "price": {"input": 1}}]}}},
            "models.x.deployments.0.price.input: Extra inputs",
        ),
        (
            {
                **VALID,
                "models": {
                    "x": {
                        "deployments": [
                            {"endpoint": "offline", "model": "m", "price": {"output_per_million_tokens": -1}}
                        ]
                    }
                },
            },
            "price.output_per_million_tokens",
        ),
        ("models: [unclosed", "not valid YAML"),
        ("just text", "invalid"),
        (
            {
                "endpoints": {"a": {"provider": "anthropic"}},
                "models": {"e": {"kind": "embedding", "deployments": [{"endpoint": "a", "model": "m"}]}},
            },
            "models.e.deployments[0].endpoint: Anthropic serves no embeddings",
        ),
        (
            {
                **VALID,
                "models": {
                    "c": {"deployments": [{"endpoint": "offline", "model": "m"}]},
                    "e": {"kind": "embedding", "deployments": [{"endpoint": "offline", "model": "m"}]},
                },
            },
            "models.e.deployments[0]: 'offline/m' is also a chat deployment",
        ),
        ({**VALID, "models": {"e": {"kind": "vectors", "deployments": []}}}, "models.e.kind"),
    ],
)
def test_mistakes_are_reported_with_their_place(tmp_path: Path, config: Any, expected: str) -> None:
    with pytest.raises(RoutesFileError) as caught:
        load_routes_file(write(tmp_path, config))
    assert expected in str(caught.value)


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RoutesFileError, match="cannot read routes file"):
        load_routes_file(tmp_path / "absent.yaml")


def test_keys_come_from_the_environment_never_the_file(tmp_path: Path) -> None:
    config = {**VALID, "endpoints": {"o": {"provider": "openai", "api_key": "sk-in-the-file"}}}
    with pytest.raises(RoutesFileError, match="api_key: Extra inputs"):
        load_routes_file(write(tmp_path, config))


def test_serve_refuses_a_bad_routes_file_with_a_clear_message(tmp_path: Path) -> None:
    path = write(tmp_path, {**VALID, "models": {"x": {"deployments": [{"endpoint": "gone", "model": "m"}]}}})
    result = subprocess.run(
        [sys.executable, "-m", "pointsman.cli.main", "serve", "--address", "127.0.0.1:0"],
        env={"POINTSMAN_ROUTES_FILE": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "models.x.deployments[0].endpoint: 'gone' is not in endpoints" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_base_url_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Docker Model Runner's compose `models` element hands the URL over in a variable.
    config = {
        "endpoints": {"runner": {"provider": "openai", "base_url_env": "LOCAL_LLM_URL"}},
        "models": {"local": {"deployments": [{"endpoint": "runner", "model": "ai/smollm2"}]}},
    }
    path = write(tmp_path, config)
    monkeypatch.setenv("LOCAL_LLM_URL", "http://model-runner.docker.internal/engines/v1")
    catalog, _ = build_routing(settings(POINTSMAN_ROUTES_FILE=str(path)))
    route = {r.alias: r for r in catalog.routes()}["local"]
    assert route.deployments[0].endpoint == "http://model-runner.docker.internal/engines/v1"

    monkeypatch.delenv("LOCAL_LLM_URL")
    with pytest.raises(RoutesFileError, match=r"endpoints\.runner\.base_url_env: .* LOCAL_LLM_URL"):
        build_routing(settings(POINTSMAN_ROUTES_FILE=str(path)))


def test_base_url_and_base_url_env_exclude_each_other(tmp_path: Path) -> None:
    config = {**VALID, "endpoints": {"e": {"provider": "openai", "base_url": "http://x/v1", "base_url_env": "X"}}}
    with pytest.raises(RoutesFileError, match="not both"):
        load_routes_file(write(tmp_path, config))


def test_the_model_runner_example_routes_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_LLM_URL", "http://model-runner.docker.internal/engines/v1/")
    example = EXAMPLE.with_name("routes.model-runner.yaml")
    catalog, _ = build_routing(settings(POINTSMAN_ROUTES_FILE=str(example)))
    aliases = {r.alias: r for r in catalog.routes()}
    assert aliases["local"].deployments[0].provider is ProviderKind.OPENAI
    assert {d.name for d in aliases["smart"].deployments} >= {"model-runner/ai/smollm2"}
