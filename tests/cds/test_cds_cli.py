"""``careloop cds add-client`` and ``list-clients`` on a scratch database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from careloop.services.db import get_engine
from careloop.services.settings import get_settings
from careloop.workflows.cli.main import app

Run = Callable[..., Result]


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """Invoke ``careloop ...`` in-process on a fresh data dir (its own SQLite database)."""
    monkeypatch.setenv("CARELOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CARELOOP_EGRESS_ALLOW", "ehr.example")
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


def test_add_and_list_clients(run: Run) -> None:
    assert run("cds", "list-clients").stdout.strip() == "no CDS clients"
    ehr = ["--fhir-base-url", "https://ehr.example/fhir", "--client-id", "careloop"]
    run("ehr", "add", "hospital", *ehr, "--scope", "system/Observation.cruds")
    added = json.loads(
        run(
            "cds",
            "add-client",
            "https://ehr.example/cds",
            "--jwks-url",
            "https://ehr.example/.well-known/jwks.json",
            "--ehr",
            "hospital",
        ).stdout
    )
    assert added["iss"] == "https://ehr.example/cds"
    assert added["connection_id"] and added["active"] is True
    assert added["discovery_url"].endswith("/cds-services")
    [listed] = [json.loads(line) for line in run("cds", "list-clients").stdout.splitlines()]
    assert listed["id"] == added["id"]
    other = run("cds", "list-clients", "--tenant", "elsewhere").stdout.strip()
    assert other == "no CDS clients"


def test_refusals_name_the_option(run: Run) -> None:
    jwks = ["--jwks-url", "https://ehr.example/jwks"]
    refused = run("cds", "add-client", "https://ehr.example/cds", *jwks, "--ehr", "none", code=2)
    assert refused.stderr.startswith("ehr:")
    private = run("cds", "add-client", "iss-1", "--jwks-url", "https://10.0.0.1/jwks", code=2)
    assert private.stderr.startswith("jwks_url:")
    scheme = run("cds", "add-client", "iss-1", "--jwks-url", "file:///etc/passwd", code=2)
    assert scheme.stderr.startswith("jwks_url:")
    run("cds", "add-client", "iss-1", *jwks)
    again = run("cds", "add-client", "iss-1", *jwks, code=2)
    assert again.stderr.startswith("iss:")
    spaced = run("cds", "add-client", "has space", *jwks, code=2)
    assert spaced.stderr.startswith("iss:")
