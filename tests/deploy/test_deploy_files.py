"""Every file in deploy/ is checked by a test here, and the README's paths exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHECKED = {
    "README.md": "test_deploy_files.py",
    "docker/Dockerfile": "test_deploy_dockerfile.py",
    "docker/healthcheck.py": "test_deploy_dockerfile.py",
    "compose.yaml": "test_deploy_compose.py",
    "compose.rabbitmq.yaml": "test_deploy_compose.py",
    "careloop.env.example": "test_deploy_compose.py",
    "kubernetes/examples/keda-worker.yaml": "test_deploy_kubernetes.py",
    "kubernetes/examples/monitoring.yaml": "test_deploy_kubernetes.py",
    "prometheus/alerts.yaml": "test_deploy_observability.py",
    "grafana/careloop.json": "test_deploy_observability.py",
}
"""deploy/'s files outside the kustomizations, and the test checking each."""


def _files() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "deploy"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return {path.removeprefix("deploy/") for path in listed if (ROOT / path).exists()}


def _kustomized() -> set[str]:
    """Files a kustomization under deploy/kubernetes names (rendered and validated)."""
    named = set()
    for kustomization in (DEPLOY / "kubernetes").rglob("kustomization.yaml"):
        named.add(str(kustomization.relative_to(DEPLOY)))
        spec = yaml.safe_load(kustomization.read_text())
        paths = list(spec.get("resources", [])) + [
            p["path"] for p in spec.get("patches", []) if "path" in p
        ]
        for path in paths:
            target = (kustomization.parent / path).resolve()
            assert target.exists(), f"{kustomization}: {path} does not exist"
            if target.is_file():
                named.add(str(target.relative_to(DEPLOY)))
    return named


def test_every_file_in_deploy_is_checked() -> None:
    unchecked = _files() - _kustomized() - set(CHECKED)
    assert unchecked == set(), f"no test checks {unchecked}: add one (and to CHECKED)"
    for path, test in CHECKED.items():
        assert (DEPLOY / path).exists(), path
        assert (Path(__file__).parent / test).exists(), test


def test_the_readme_names_existing_files() -> None:
    readme = (DEPLOY / "README.md").read_text()
    for path in re.findall(
        r"`((?:deploy/)?(?:kubernetes|docker|prometheus|grafana)/[\w./-]+)`", readme
    ):
        relative = path.removeprefix("deploy/")
        assert (DEPLOY / relative).exists(), path
    for overlay in re.findall(r"deploy/kubernetes/overlays/([\w/]+)", readme):
        assert (DEPLOY / "kubernetes" / "overlays" / overlay / "kustomization.yaml").exists()
    for name in CHECKED:
        assert Path(name).name in readme, f"the README does not mention {name}"
