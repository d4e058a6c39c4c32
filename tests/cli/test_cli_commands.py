"""careloop's CLI against a scratch database: clients, notification routes, empty listings, help."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from careloop.services.db import get_engine
from careloop.services.settings import get_settings
from careloop.workflows.cli.main import app
from careloop.workflows.web import create_app

Run = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """Invoke ``careloop ...`` in-process on a fresh data dir (its own SQLite database)."""
    monkeypatch.setenv("CARELOOP_DATA_DIR", str(tmp_path))
    # Made-up destinations no DNS answers, taken as allow-listed (the egress rules are tested
    # in tests/egress).
    monkeypatch.setenv("CARELOOP_EGRESS_ALLOW", "ehr.example,oncall.example")
    get_settings.cache_clear()
    get_engine.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (args, result.output)
        return result

    yield invoke
    get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()


def _lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_empty_listings_say_so(run: Run) -> None:
    assert run("tasks", "dead").stdout.strip() == "no dead tasks"
    assert run("ehr", "list").stdout.strip() == "no EHR connections"
    assert run("clients", "list").stdout.strip() == "no app clients"
    assert run("notify", "list").stdout.strip() == "no notification routes"
    ehr = ["--fhir-base-url", "https://ehr.example/fhir/R4", "--client-id", "careloop"]
    run("ehr", "add", "hospital", *ehr, "--scope", "system/Observation.cruds")
    assert run("ehr", "failures", "hospital").stdout.strip() == "no refused writes for hospital"


def test_clients_list_and_revoke(run: Run) -> None:
    created = json.loads(run("clients", "create", "Example app", "--scope", "system/*.rs").stdout)
    secret = created["client_secret"]
    listed = run("clients", "list")
    assert secret not in listed.stdout
    [row] = _lines(listed)
    assert row["client_id"] == created["client_id"] and row["name"] == "Example app"
    assert row["active"] is True and row["auth"] == "secret" and row["scope"] == "system/*.rs"

    form = {
        "grant_type": "client_credentials",
        "client_id": created["client_id"],
        "client_secret": secret,
    }
    settings = get_settings().model_copy(update={"relay_after_commit": False})
    with TestClient(create_app(settings, get_engine())) as http:
        assert http.post("/oauth/token", data=form).status_code == 200
        assert _lines(run("clients", "revoke", created["client_id"])) == [
            {"revoked": created["client_id"]}
        ]
        assert http.post("/oauth/token", data=form).status_code == 401
    [row] = _lines(run("clients", "list", "--tenant", "default"))
    assert row["active"] is False
    assert run("clients", "list", "--tenant", "elsewhere").stdout.strip() == "no app clients"


def test_revoking_an_unknown_client_fails(run: Run) -> None:
    result = run("clients", "revoke", "cl_nobody", code=2)
    assert "no app client cl_nobody" in result.output


def test_notify_list_and_remove(run: Run) -> None:
    added = json.loads(run("notify", "add-webhook", "https://oncall.example/hook").stdout)
    listed = run("notify", "list")
    assert added["secret"] not in listed.stdout  # whsec_ secrets are shown once, at creation
    [route] = _lines(listed)
    assert route["id"] == added["id"] and route["recipient"] == "oncall"
    assert route["channel"] == "webhook" and route["address"] == "https://oncall.example/hook"
    assert _lines(run("notify", "remove", added["id"])) == [{"removed": added["id"]}]
    assert run("notify", "list").stdout.strip() == "no notification routes"
    assert "no notification route" in run("notify", "remove", added["id"], code=2).output


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


@pytest.mark.parametrize("path", list(_commands(typer.main.get_command(app))), ids=" ".join)
def test_help_is_plain(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output  # flags take no value
    assert not re.search(r"\{[A-Za-z_]+\}", result.output), result.output


def test_usage_names_arguments_in_capitals() -> None:
    result = CliRunner().invoke(app, ["clients", "create", "--help"], prog_name="careloop")
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert usage.split() == ["Usage:", "careloop", "clients", "create", "[OPTIONS]", "NAME"]
