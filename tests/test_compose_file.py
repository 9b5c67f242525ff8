"""The compose file, read as Docker Compose would read it (no engine runs here):
images pinned, profiles wired to files that exist, models declared where used."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
# A release tag: at least major.minor (a floating `16-alpine` or `latest` is not one).
PINNED = re.compile(r"^[\w./-]+:(version-)?v?\d+\.\d+[\w.-]*$")


def test_every_image_is_pinned_to_a_release() -> None:
    images = {name: s["image"] for name, s in COMPOSE["services"].items() if "build" not in s}
    assert images, "no third-party images found"
    assert {name: image for name, image in images.items() if not PINNED.match(image)} == {}


def test_every_model_a_service_uses_is_declared() -> None:
    used = {model for s in COMPOSE["services"].values() for model in s.get("models", {})}
    assert used, "the model-runner profile uses no model"
    assert used <= set(COMPOSE.get("models", {}))


def test_files_mounted_from_the_repository_exist() -> None:
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), f"{name} mounts {source}, which is not in the repository"


def test_the_model_runner_gateway_reads_the_url_its_routes_file_names() -> None:
    service = COMPOSE["services"]["pointsman-model-runner"]
    routes = yaml.safe_load((ROOT / "examples" / "routes.model-runner.yaml").read_text())
    url_variables = {e["base_url_env"] for e in routes["endpoints"].values() if "base_url_env" in e}
    assert url_variables == {binding["endpoint_var"] for binding in service["models"].values()}
    assert service["environment"]["POINTSMAN_ROUTES_FILE"] == "/etc/pointsman/routes.yaml"
    deployments = [d for m in routes["models"].values() for d in m["deployments"]]
    deployed = {d["model"] for d in deployments if d["endpoint"] == "model-runner"}
    assert deployed == {COMPOSE["models"][name]["model"] for name in service["models"]}
