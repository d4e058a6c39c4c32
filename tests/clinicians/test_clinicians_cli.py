"""``careloop clinicians add`` and ``list`` on a scratch database; the added clinician signs in."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from support.login import sign_in
from typer.testing import CliRunner, Result

from careloop.services.db import get_engine
from careloop.services.settings import get_settings
from careloop.workflows.cli.main import app
from careloop.workflows.web import create_app

Run = Callable[..., Result]
PASSWORD = "a long synthetic passphrase"


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """Invoke ``careloop ...`` in-process on a fresh data dir (its own SQLite database)."""
    monkeypatch.setenv("CARELOOP_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    get_engine.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, code: int = 0, stdin: str | None = None) -> Result:
        result = runner.invoke(app, list(args), input=stdin)
        assert result.exit_code == code, (args, result.output)
        return result

    yield invoke
    get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()


def _lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_add_list_and_sign_in(run: Run) -> None:
    assert run("clinicians", "list").stdout.strip() == "no clinicians"
    added = run(
        "clinicians", "add", "Dr.Jane@Example.ORG", "--name", "Dr Jane Synthetic",
        "--practitioner", "Practitioner/pr-1", "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    [row] = _lines(added)
    assert row["email"] == "dr.jane@example.org" and row["tenant"] == "default"
    assert row["practitioner"] == "Practitioner/pr-1" and row["password"] is True
    [listed] = _lines(run("clinicians", "list", "--tenant", "default"))
    assert listed["id"] == row["id"] and listed["password"] is True
    for output in (added.output, run("clinicians", "list").output):
        assert PASSWORD not in output and "argon2" not in output

    settings = get_settings().model_copy(update={"relay_after_commit": False})
    with TestClient(create_app(settings, get_engine())) as browser:
        assert sign_in(browser, "dr.jane@example.org", PASSWORD).status_code == 303
        assert sign_in(browser, "dr.jane@example.org", "wrong-wrong-wrong").status_code == 401
    [after] = _lines(run("clinicians", "list"))
    assert after["last_login_at"] is not None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["not-an-email", "--name", "X"], None, "email"),
        (["a@example.org", "--name", "X", "--practitioner", "Patient/1"], None, "practitioner"),
        (["a@example.org", "--name", "X", "--password-stdin"], "short\n", "password"),
        (["a@example.org", "--name", "X", "--tenant", "no-such-clinic"], None, "tenant"),
        (["a@example.org", "--name", ""], None, "name"),
    ],
    ids=["email", "practitioner", "short-password", "unknown-tenant", "empty-name"],
)
def test_bad_input_is_refused_naming_the_field(
    run: Run, args: list[str], stdin: str | None, message: str
) -> None:
    refused = run("clinicians", "add", *args, code=2, stdin=stdin)
    assert message in refused.output
    assert "short" not in refused.output or message != "password"


def test_an_email_is_added_once(run: Run) -> None:
    run("clinicians", "add", "once@example.org", "--name", "One")
    refused = run("clinicians", "add", "ONCE@example.org", "--name", "Two", code=2)
    assert "exists" in refused.output
    assert len(_lines(run("clinicians", "list"))) == 1
