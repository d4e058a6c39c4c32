"""deploy/docker/Dockerfile is hadolint-clean, multi-stage, slim and non-root; its build context
(.dockerignore) sends only what the wheel is built from; its health check works on the standard
library alone."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
BUILD_TOOLS = ("gcc", "cc ", "build-essential", "make ", "apt-get", "apk ", "curl", "wget", "git ")


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages(text: str) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(text):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_hadolint_finds_nothing(tool: Callable[[str], Path]) -> None:
    result = subprocess.run(
        [
            str(tool("hadolint")),
            "--no-color",
            "--format",
            "json",
            "--failure-threshold",
            "style",
            str(DOCKERFILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], findings
    assert result.returncode == 0, result.stderr


def test_multi_stage_slim_final_stage_without_build_tools() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    stages = _stages(text)
    assert len(stages) >= 2, "a builder stage and a final stage"
    assert stages[0][0][1].endswith("AS builder")
    final = stages[-1]
    base = final[0][1].split()[0]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert base.startswith("python:3.11-slim"), base
    final_text = " ".join(args for _, args in final)
    for word in BUILD_TOOLS:
        assert word not in final_text + " ", f"the final stage uses {word.strip()}"
    copies = [args for name, args in final if name == "COPY"]
    assert copies == ["--from=builder /opt/careloop /opt/careloop"], copies
    # pip itself does not reach the final image (the builder's last step removes it).
    assert "pip uninstall --yes pip" in " ".join(a for _, a in stages[0])


def test_runs_as_a_fixed_non_root_uid_with_careloop_as_entrypoint(image_uid: int) -> None:
    final = _stages(DOCKERFILE.read_text())[-1]
    [user] = [args for name, args in final if name == "USER"]
    assert user == "${CARELOOP_UID}:${CARELOOP_UID}"
    assert image_uid >= 1000
    [entrypoint] = [args for name, args in final if name == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["careloop"]
    [cmd] = [args for name, args in final if name == "CMD"]
    assert json.loads(cmd)[:3] == ["serve", "--host", "0.0.0.0"]
    [healthcheck] = [args for name, args in final if name == "HEALTHCHECK"]
    assert "/opt/careloop/healthcheck.py" in healthcheck and "/healthz" in healthcheck
    env = " ".join(args for name, args in final if name == "ENV")
    assert "CARELOOP_ENVIRONMENT=production" in env
    assert "CARELOOP_DATA_DIR=/var/lib/careloop" in env


def _dockerignore_allows(path: str, patterns: list[str]) -> bool:
    allowed = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.removeprefix("!").removeprefix("**/")
        parts = path.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[: i + 1]), body) for i in range(len(parts))) or (
            pattern.startswith("**/") and any(fnmatch.fnmatch(p, body) for p in parts)
        )
        if hit:
            allowed = negated
    return allowed


def test_build_context_holds_what_the_image_copies_and_nothing_private() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", ".dockerignore is an allow-list"
    for name, args in _instructions(DOCKERFILE.read_text()):
        if name == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert _dockerignore_allows(source, patterns), f"{source} is not in the context"
    for private in (
        "data/careloop.db",
        "data/secret_key",
        ".env",
        ".venv/bin/python",
        ".git/config",
        "services/__pycache__/app.cpython-311.pyc",
        "careloop.egg-info/PKG-INFO",
        "tests/conftest.py",
        "deploy/careloop.env",
    ):
        assert not _dockerignore_allows(private, patterns), private
    for needed in (
        "pyproject.toml",
        "README.md",
        "services/app.py",
        "fhir/reports.py",
        "careloop/__init__.py",
        "deploy/docker/healthcheck.py",
    ):
        assert _dockerignore_allows(needed, patterns), needed


class _Handler(http.server.BaseHTTPRequestHandler):
    seen_authorization: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        _Handler.seen_authorization.append(self.headers.get("Authorization"))
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _check(*args: str, env: dict[str, str] | None = None) -> int:
    # -I -S: no site-packages, so the check can only use the standard library.
    return subprocess.run(
        [sys.executable, "-I", "-S", str(HEALTHCHECK), *args],
        capture_output=True,
        timeout=30,
        env=env or {},
    ).returncode


def test_health_check_http(http_server: str) -> None:
    _Handler.seen_authorization.clear()
    assert _check("http", f"{http_server}/healthz") == 0
    assert _check("http", f"{http_server}/readyz") == 1
    assert _check("http", f"{http_server}/healthz", env={"CARELOOP_HEALTHCHECK_TOKEN": "t0k"}) == 0
    assert _Handler.seen_authorization == [None, None, "Bearer t0k"]
    assert _check("http", "http://127.0.0.1:9/healthz") == 1  # nothing listens: unhealthy
    assert _check("nonsense") == 2


def test_health_check_fresh_file(tmp_path: Path) -> None:
    pattern = str(tmp_path / "celerybeat-schedule*")
    assert _check("fresh", pattern, "600") == 1  # beat never wrote it
    schedule = tmp_path / "celerybeat-schedule.dat"
    schedule.write_text("x")
    assert _check("fresh", pattern, "600") == 0
    old = time.time() - 3600
    os.utime(schedule, (old, old))
    assert _check("fresh", pattern, "600") == 1
    (tmp_path / "celerybeat-schedule.dir").write_text("x")  # the newest file counts
    assert _check("fresh", pattern, "600") == 0


def test_the_build_context_builds_the_whole_wheel(tmp_path: Path) -> None:
    """What the builder stage COPYs is enough for the wheel, data files included (as
    tests/test_packaging.py checks for the checkout)."""
    context = tmp_path / "context"
    context.mkdir()
    for name, args in _instructions(DOCKERFILE.read_text()):
        if name == "COPY" and not args.startswith("--from"):
            *sources, _ = args.split()
            for source in sources:
                if source.endswith(".py") and source.startswith("deploy/"):
                    continue
                # As Docker copies: symlinks (careloop/ links the code folders) stay links.
                subprocess.run(
                    ["cp", "-a", "--parents", source, str(context)], cwd=ROOT, check=True
                )
    for junk in context.rglob("__pycache__"):
        shutil.rmtree(junk)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("careloop-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "services", "fhir", "integrations", "workflows"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    missing = {f"careloop/{path}" for path in tracked if (ROOT / path).exists()} - names
    assert missing == set()
