"""Fixtures for the deploy/ checks: the files, the tools the [dev] extra installs, rendering.

Every tool runs from this venv's bin directory (hadolint, kubectl for kustomize, docker-compose
for the Compose Specification), offline: nothing is downloaded at test time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

AGREED_METRICS = frozenset(
    {
        "careloop_http_requests_total",
        "careloop_http_request_duration_seconds",
        "careloop_reports_accepted_total",
        "careloop_alerts_opened_total",
        "careloop_notifications_total",
        "careloop_report_to_notification_seconds",
        "careloop_ehr_pushes_total",
        "careloop_ehr_circuit_open",
        "careloop_outbox_backlog",
        "careloop_outbox_oldest_age_seconds",
        "careloop_dead_tasks",
        "careloop_queue_depth",
        "careloop_readings_unevaluated",
    }
)
"""The metric names agreed with the metrics work (README, "Observe"); histograms add suffixes."""
HISTOGRAMS = frozenset(
    {"careloop_http_request_duration_seconds", "careloop_report_to_notification_seconds"}
)
PROMETHEUS_OWN = frozenset({"up"})


def _tool(name: str) -> Path:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing: `make install` (the [dev] extra) installs it"
    return path


@pytest.fixture(scope="session")
def tool() -> Callable[[str], Path]:
    """The path of a [dev] tool in this venv (hadolint, kubectl, docker-compose)."""
    return _tool


@pytest.fixture(scope="session")
def image_uid() -> int:
    """The fixed UID the image runs as (ARG CARELOOP_UID of deploy/docker/Dockerfile)."""
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    match = re.search(r"^ARG CARELOOP_UID=(\d+)$", text, re.MULTILINE)
    assert match, "the Dockerfile declares no ARG CARELOOP_UID=<number>"
    return int(match.group(1))


def _kustomize(path: Path) -> list[dict[str, Any]]:
    """The manifests ``kubectl kustomize path`` renders (kustomize built into kubectl)."""
    result = subprocess.run(
        [str(_tool("kubectl")), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"kustomize {path.relative_to(ROOT)}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def kustomize() -> Callable[[Path], list[dict[str, Any]]]:
    """Renders a kustomization with ``kubectl kustomize`` into its manifests."""
    return _kustomize


@pytest.fixture(scope="session")
def allowed_metrics() -> frozenset[str]:
    """Metric names deploy/ may query: careloop's agreed ones and Prometheus' ``up``."""
    return AGREED_METRICS | PROMETHEUS_OWN


@pytest.fixture(scope="session")
def agreed_metrics() -> frozenset[str]:
    """careloop's agreed metric names."""
    return AGREED_METRICS


@pytest.fixture(scope="session")
def base_names() -> Callable[[list[str]], set[str]]:
    """Maps PromQL selector names to metric names (a histogram's series suffixes dropped)."""
    return _base_names


def _base_names(selector_names: list[str]) -> set[str]:
    """The agreed base names of PromQL selector names (``_bucket``/``_sum``/``_count`` off)."""
    names = set()
    for name in selector_names:
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
                name = name.removesuffix(suffix)
        names.add(name)
    return names
