"""The code folders load under one name only: ``careloop.<folder>``, through relative links."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUARDED = {
    "services": "services.alerts.models",
    "workflows": "workflows.tasks",
    "integrations": "integrations.channels.webhooks",
}


def _import_from_root(module: str) -> subprocess.CompletedProcess[str]:
    """Import ``module`` in a fresh interpreter whose ``sys.path`` starts with the repo root."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("folder", sorted(GUARDED))
def test_bare_folder_import_fails_with_the_guard_message(folder: str) -> None:
    result = _import_from_root(GUARDED[folder])
    assert result.returncode != 0
    assert f"ImportError: import careloop.{folder}, not {folder}:" in result.stderr


@pytest.mark.parametrize("folder", sorted(GUARDED))
def test_careloop_import_works_from_the_root(folder: str) -> None:
    result = _import_from_root(f"careloop.{GUARDED[folder]}")
    assert result.returncode == 0, result.stderr


def test_bare_fhir_is_the_fhir_resources_library() -> None:
    # fhir/ has no __init__.py: the installed regular package `fhir` wins over the folder.
    assert _import_from_root("fhir.resources.R4B").returncode == 0
    result = _import_from_root("fhir.alerts")
    assert "ModuleNotFoundError: No module named 'fhir.alerts'" in result.stderr
    assert not (ROOT / "fhir" / "__init__.py").exists()


@pytest.mark.parametrize("folder", ["services", "fhir", "integrations", "workflows"])
def test_package_links_are_relative_and_point_at_the_folders(folder: str) -> None:
    link = ROOT / "careloop" / folder
    assert link.is_symlink()
    assert os.readlink(link) == f"../{folder}"
    assert link.resolve() == ROOT / folder


def test_mypy_refuses_a_code_file_under_its_bare_name() -> None:
    mypy = Path(sys.executable).parent / "mypy"
    result = subprocess.run(
        [str(mypy), "--cache-dir=/dev/null", "services/db.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "run `mypy careloop/services/db.py`" in result.stdout + result.stderr


def test_import_contract_layers_the_four_folders_one_way() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    # Without careloop.fhir as a root of its own, grimp would see no module of that folder.
    assert set(config["root_packages"]) == {"careloop", "careloop.fhir"}
    assert config.get("exclude_type_checking_imports", False) is False
    [contract] = [c for c in config["contracts"] if c["type"] == "layers"]
    layers = [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]
    assert layers == [
        ["careloop.workflows"],
        ["careloop.services"],
        ["careloop.fhir", "careloop.integrations"],
    ]
    assert not [c["name"] for c in config["contracts"] if "ignore_imports" in c]
    # The outbox and the commit path sit below every domain: nothing reaches them from above.
    [below] = [c for c in config["contracts"] if c["type"] == "forbidden"]
    assert set(below["source_modules"]) == {
        "careloop.services.outbox",
        "careloop.services.unit_of_work",
    }
    assert "$(BIN)/lint-imports" in (ROOT / "Makefile").read_text()
