"""The wheel carries every file of careloop's code folders, data files included."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE_FOLDERS = ("services", "fhir", "integrations", "workflows")


def _tracked_code_files() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *CODE_FOLDERS],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return {f"careloop/{path}" for path in listed if (ROOT / path).exists()}


def test_wheel_holds_every_file_git_knows(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "scripts" / "build-wheel"), str(tmp_path)],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    [wheel] = tmp_path.glob("careloop-*.whl")
    entries = zipfile.ZipFile(wheel).infolist()
    names = {entry.filename for entry in entries}
    expected = _tracked_code_files()
    assert {n for n in expected if not n.endswith(".py")}, "no data files found: wrong folder?"
    assert expected - names == set()
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    # Nothing from outside the code folders (tests, bench) is shipped as careloop code.
    shipped = {n for n in names if n.startswith("careloop/")}
    assert shipped - expected <= {
        "careloop/__init__.py",
        "careloop/__main__.py",
        "careloop/py.typed",
    }
    # careloop/'s links are stored as the files they point at, and only under careloop/.
    assert not [e.filename for e in entries if stat.S_ISLNK(e.external_attr >> 16)]
    assert not [n for n in names if n.split("/")[0] in CODE_FOLDERS]
