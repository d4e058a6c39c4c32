"""No public secret: dev keeps a generated one in the data directory, elsewhere one is required;
stored keys made with another secret are moved or refused, never silently broken."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlmodel import select
from support.processes import inherited_env

from careloop.integrations.egress.destinations import DestinationPolicy
from careloop.services.db import make_engine
from careloop.services.ehr.models import EhrConnection
from careloop.services.ehr.service import add_connection
from careloop.services.keys.models import SigningKey
from careloop.services.keys.rekey import StoredSecretsError, check_stored_secrets, unreadable
from careloop.services.keys.service import create_key, decrypt_secret, signing_key
from careloop.services.migrate import upgrade
from careloop.services.settings import LEGACY_DEV_SECRET, Environment, Settings
from careloop.services.unit_of_work import session_scope

CLI = [sys.executable, "-m", "careloop"]


@pytest.fixture(autouse=True)
def _no_process_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about where the secret comes from: none from the test process."""
    for name in [n for n in os.environ if n.startswith("CARELOOP_")]:
        monkeypatch.delenv(name)


def _env(**values: str) -> dict[str, str]:
    env = inherited_env()
    return {**env, **values}


def test_dev_generates_a_private_secret_and_keeps_it(tmp_path: Path) -> None:
    first = Settings(environment=Environment.dev, data_dir=tmp_path / "data")
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 43 and path.read_text().strip() == first.secret_key
    again = Settings(environment=Environment.dev, data_dir=tmp_path / "data")
    assert again.secret_key == first.secret_key
    other = Settings(environment=Environment.dev, data_dir=tmp_path / "elsewhere")
    assert other.secret_key != first.secret_key
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temporary left


def test_processes_starting_together_share_one_secret(tmp_path: Path) -> None:
    data, go = tmp_path / "data", tmp_path / "go"
    script = (
        "import sys, time, pathlib\n"
        "from careloop.services.settings import Settings\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.001)\n"
        "print(Settings().secret_key)\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path / f"ready-{n}"), str(go)],
            env=_env(CARELOOP_DATA_DIR=str(data)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(6)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{n}").exists() for n in range(6)):
        assert time.monotonic() < deadline, "the processes did not start"
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        time.sleep(0.01)
    go.touch()
    outputs = [p.communicate(timeout=60) for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    secrets = {out.strip() for out, _ in outputs}
    assert secrets == {(data / "secret_key").read_text().strip()}


def test_an_explicit_secret_wins(tmp_path: Path) -> None:
    settings = Settings(environment=Environment.dev, data_dir=tmp_path, secret_key="e" * 40)
    assert settings.secret_key == "e" * 40
    assert not (tmp_path / "secret_key").exists()


@pytest.mark.parametrize("environment", [Environment.test, Environment.production])
def test_outside_dev_a_secret_is_required(environment: Environment, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CARELOOP_SECRET_KEY must be set"):
        Settings(environment=environment, data_dir=tmp_path)
    assert not (tmp_path / "secret_key").exists()


def test_the_old_public_default_is_refused_everywhere(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="old public dev default"):
        Settings(environment=Environment.dev, data_dir=tmp_path, secret_key=LEGACY_DEV_SECRET)


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    Settings(environment=Environment.dev, data_dir=tmp_path)
    (tmp_path / "secret_key").chmod(0o644)
    with pytest.raises(ValidationError, match="chmod 600"):
        Settings(environment=Environment.dev, data_dir=tmp_path)


def test_the_cli_explains_a_missing_secret_without_a_traceback(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*CLI, "migrate"],
        env=_env(CARELOOP_ENVIRONMENT="production", CARELOOP_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert "CARELOOP_SECRET_KEY must be set" in refused.stderr
    short = subprocess.run(
        [*CLI, "migrate"],
        env=_env(
            CARELOOP_ENVIRONMENT="production",
            CARELOOP_SECRET_KEY="short-but-secret-value",
            CARELOOP_DATA_DIR=str(tmp_path),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode == 2 and "at least 32 characters" in short.stderr
    assert "short-but-secret-value" not in short.stderr + short.stdout


def _dev_store(tmp_path: Path, secret: str) -> tuple[Settings, str]:
    """A dev data dir whose database holds a signing key and a launch secret under ``secret``."""
    url = f"sqlite:///{tmp_path / 'careloop.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        create_key(session, secret, "ES384")
        add_connection(
            session,
            "hospital",
            "https://ehr.example/fhir",
            "c",
            "system/*.rs",
            launch_client_id="app",
            launch_client_secret="launch-secret",
            secret_key=secret,
            destinations=DestinationPolicy.create(production=False, allow="ehr.example"),
        )
    engine.dispose()
    return Settings(environment=Environment.dev, data_dir=tmp_path, database_url=url), url


def test_an_old_dev_data_dir_is_moved_to_the_generated_secret(tmp_path: Path) -> None:
    settings, url = _dev_store(tmp_path, LEGACY_DEV_SECRET)
    engine = make_engine(url)
    with session_scope(engine) as session:
        assert unreadable(session, settings.secret_key)
        check_stored_secrets(session, settings)
    with session_scope(engine) as session:
        assert not unreadable(session, settings.secret_key)
        signing_key(session, settings.secret_key, "ES384")
        stored = session.exec(select(EhrConnection)).one().launch_client_secret
        assert stored and decrypt_secret(settings.secret_key, stored) == "launch-secret"
    engine.dispose()


def test_keys_under_another_secret_stop_careloop_until_reencrypted(tmp_path: Path) -> None:
    old = "an-earlier-secret-of-this-deployment-xyz"
    settings, url = _dev_store(tmp_path, old)
    production = settings.model_copy(update={"environment": Environment.production})
    engine = make_engine(url)
    with session_scope(engine) as session, pytest.raises(StoredSecretsError, match="reencrypt"):
        check_stored_secrets(session, production)
    env = _env(
        CARELOOP_ENVIRONMENT="production",
        CARELOOP_SECRET_KEY=settings.secret_key,
        CARELOOP_BASE_URL="https://careloop.example",
        CARELOOP_DATABASE_URL=url,
        CARELOOP_DATA_DIR=str(tmp_path),
    )
    served = subprocess.run(
        [*CLI, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=60
    )
    assert served.returncode == 2 and "cannot be decrypted" in served.stderr
    assert "Traceback" not in served.stderr
    moved = subprocess.run(
        [*CLI, "keys", "reencrypt"],
        env={**env, "CARELOOP_OLD_SECRET_KEY": old},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert moved.returncode == 0, moved.stderr
    assert '"reencrypted": 2' in moved.stdout
    with session_scope(engine) as session:
        check_stored_secrets(session, production)
        assert session.exec(select(SigningKey)).all()
    engine.dispose()
