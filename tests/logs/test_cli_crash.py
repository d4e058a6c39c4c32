"""A careloop command that fails prints what failed, never the error's text or a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.processes import inherited_env

CANARY = "CANARY-cli-0815"


def _careloop(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = inherited_env()
    clean.update({"CARELOOP_DATA_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "-m", "careloop", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_unreachable_database_is_its_error_class_and_an_id(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://{CANARY}:{CANARY}@127.0.0.1:1/{CANARY}"
    done = _careloop(
        tmp_path, "clients", "create", "app", "--scope", "system/*.rs", CARELOOP_DATABASE_URL=url
    )
    assert done.returncode == 1
    assert CANARY not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "unhandled OperationalError(OperationalError)" in done.stderr
    assert "error id" in done.stderr


def test_invalid_settings_name_the_setting_not_the_value(tmp_path: Path) -> None:
    done = _careloop(tmp_path, "migrate", CARELOOP_LOG_FORMAT=CANARY)
    assert done.returncode == 2
    assert CANARY not in done.stderr
    assert "CARELOOP_LOG_FORMAT: Input should be 'json' or 'console'" in done.stderr
