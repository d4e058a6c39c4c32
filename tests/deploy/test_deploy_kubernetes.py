"""deploy/kubernetes renders with kustomize, every manifest is valid against the Kubernetes
schemas (kubernetes-validate, offline, strict: unknown fields fail), and careloop's rules hold:
resources, probes, non-root, exactly one beat, images pinned, the migrate Job, NetworkPolicies."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from careloop.services.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
"""The oldest Kubernetes the manifests target, and the newest kubernetes-validate ships."""
DATA_DIR = "/var/lib/careloop"
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$|DATABASE_URL|BROKER_URL|STORAGE_URL")
Manifests = list[dict[str, Any]]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def rendered(overlay: str, kustomize: Callable[[Path], Manifests]) -> tuple[Manifests, Manifests]:
    """(the application's manifests, the migrate Job's) of one overlay, as kustomize renders."""
    app = kustomize(KUBERNETES / "overlays" / overlay)
    migrate = kustomize(KUBERNETES / "overlays" / overlay / "migrate")
    return app, migrate


def _one(manifests: Manifests, kind: str, name: str) -> dict[str, Any]:
    [found] = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def _pod_specs(manifests: Manifests) -> list[tuple[str, dict[str, Any]]]:
    return [
        (m["metadata"]["name"], m["spec"]["template"]["spec"])
        for m in manifests
        if m["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(
    rendered: tuple[Manifests, Manifests], version: str
) -> None:
    app, migrate = rendered
    for manifest in app + migrate:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_validator_refuses_a_broken_manifest(rendered: tuple[Manifests, Manifests]) -> None:
    deployment = yaml.safe_load(yaml.safe_dump(_one(rendered[0], "Deployment", "careloop-api")))
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requets"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    deployment = yaml.safe_load(yaml.safe_dump(_one(rendered[0], "Deployment", "careloop-api")))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_everything_is_in_the_overlays_namespace(
    overlay: str, rendered: tuple[Manifests, Manifests]
) -> None:
    app, migrate = rendered
    [namespace] = [m["metadata"]["name"] for m in app if m["kind"] == "Namespace"]
    assert namespace == ("careloop" if overlay == "production" else f"careloop-{overlay}")
    for manifest in app + migrate:
        if manifest["kind"] != "Namespace":
            assert manifest["metadata"]["namespace"] == namespace, manifest["metadata"]["name"]
            assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "careloop"


def test_every_container_is_bounded_and_unprivileged(
    rendered: tuple[Manifests, Manifests], image_uid: int
) -> None:
    app, migrate = rendered
    pods = _pod_specs(app + migrate)
    assert {name for name, _ in pods} == {
        "careloop-api",
        "careloop-worker",
        "careloop-worker-alerts",
        "careloop-beat",
        "careloop-migrate",
    }
    for name, pod in pods:
        assert pod["automountServiceAccountToken"] is False, name
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name
        assert security["runAsUser"] == image_uid and security["runAsGroup"] == image_uid, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name}/{container['name']}"
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), f"{where}: {part}"
            csc = container["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, where
            assert csc["readOnlyRootFilesystem"] is True, where
            assert csc["capabilities"]["drop"] == ["ALL"], where
            assert "runAsUser" not in csc or csc["runAsUser"] != 0, where
            # A read-only root: /tmp and careloop's data dir are emptyDirs.
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            for path in ("/tmp", DATA_DIR):
                assert "emptyDir" in volumes[mounts[path]], f"{where}: {path}"
            assert container["envFrom"] == [
                {"configMapRef": {"name": "careloop-config"}},
                {"secretRef": {"name": "careloop-secrets"}},
            ], where


def test_images_are_pinned_by_the_overlay(rendered: tuple[Manifests, Manifests]) -> None:
    app, migrate = rendered
    images = {c["image"] for _, pod in _pod_specs(app + migrate) for c in pod["containers"]}
    assert len(images) == 1, f"one image for every role, the migrate Job's too: {images}"
    [image] = images
    assert "/" in image, "a registry, not the base's bare placeholder"
    assert re.search(r"(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$", image), image
    assert not image.endswith(":latest")


def test_api_probes_rollout_autoscaling_and_disruption_budget(
    rendered: tuple[Manifests, Manifests],
) -> None:
    app, _ = rendered
    api = _one(app, "Deployment", "careloop-api")
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == ["serve", "--host", "0.0.0.0"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert container["args"][container["args"].index("--port") + 1] == str(ports["http"])
    assert "replicas" not in api["spec"], "the HPA owns the API's replica count"
    # Zero downtime: no old pod leaves before a new one is ready.
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = api["spec"]["template"]["metadata"]["labels"]
    service = _one(app, "Service", "careloop-api")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = _one(app, "HorizontalPodAutoscaler", "careloop-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "careloop-api",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = _one(app, "PodDisruptionBudget", "careloop-api")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ingress = _one(app, "Ingress", "careloop")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "careloop-api", "port": {"name": "http"}}


def test_exactly_one_beat_and_no_autoscaler_but_the_apis(
    rendered: tuple[Manifests, Manifests], overlay: str
) -> None:
    app, _ = rendered
    beat = _one(app, "Deployment", "careloop-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    assert beat["spec"]["template"]["spec"]["containers"][0]["args"] == ["beat"]
    targets = [
        m["spec"]["scaleTargetRef"]["name"] for m in app if m["kind"] == "HorizontalPodAutoscaler"
    ]
    assert targets == ["careloop-api"]
    taken: list[str] = []
    for name in ("careloop-worker", "careloop-worker-alerts"):
        worker = _one(app, "Deployment", name)
        [container] = worker["spec"]["template"]["spec"]["containers"]
        assert container["args"][0] == "worker"
        [queues] = [a.removeprefix("--queues=") for a in container["args"] if "--queues=" in a]
        taken += queues.split(",")
        [health] = [a.removeprefix("--health-file=") for a in container["args"] if "health" in a]
        assert container["livenessProbe"]["exec"]["command"][2:4] == ["fresh", health]
        if overlay == "production":
            assert worker["spec"]["replicas"] >= 2, "a page survives a lost node"
    # Every kind of work has workers, and alert work has its own.
    assert sorted(taken) == ["alerts", "ehr", "routine"]


def test_the_migrate_job_runs_once_before_the_rollout(
    rendered: tuple[Manifests, Manifests],
) -> None:
    _, migrate = rendered
    [job] = migrate
    assert job["kind"] == "Job"
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["args"] == ["migrate"]
    assert job["spec"]["backoffLimit"] <= 3


def test_configuration_and_the_example_secret(
    overlay: str, rendered: tuple[Manifests, Manifests]
) -> None:
    app, _ = rendered
    config = _one(app, "ConfigMap", "careloop-config")["data"]
    settings = {k.removeprefix("CARELOOP_").lower() for k in config if k.startswith("CARELOOP_")}
    assert settings - set(Settings.model_fields) == set()
    assert not [k for k in config if SECRET_NAME.search(k)], "secrets belong in the Secret"
    assert config["CARELOOP_ENVIRONMENT"] == "production"
    assert config["CARELOOP_BASE_URL"].startswith("https://")
    assert config["CARELOOP_DATA_DIR"] == DATA_DIR
    secrets = [m for m in app if m["kind"] == "Secret"]
    if overlay == "production":
        assert secrets == [], "production's Secret comes from your secret store, not from git"
        return
    [secret] = secrets
    for key, value in secret["stringData"].items():
        assert key.removeprefix("CARELOOP_").lower() in set(Settings.model_fields)
        assert value == "" or "CHANGE-ME" in value, f"{key} is not a placeholder"
    assert {"CARELOOP_SECRET_KEY", "CARELOOP_DATABASE_URL", "CARELOOP_BROKER_URL"} <= set(
        secret["stringData"]
    )


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector:
        return True
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        if (
            expression["operator"] != "In"
            or labels.get(expression["key"]) not in expression["values"]
        ):
            return False
    return True


def test_network_policies_allow_only_what_careloop_needs(
    rendered: tuple[Manifests, Manifests],
) -> None:
    app, _ = rendered
    policies = [m for m in app if m["kind"] == "NetworkPolicy"]
    deny = _one(app, "NetworkPolicy", "careloop-default-deny")["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    pods = {
        m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"]
        for m in app
        if m["kind"] == "Deployment"
    }

    def ingress_ports(pod: str) -> set[int]:
        return {
            port["port"]
            for p in policies
            if _selects(p["spec"]["podSelector"], pods[pod])
            for rule in p["spec"].get("ingress", [])
            for port in rule["ports"]
        }

    def egress_ports(pod: str) -> set[int]:
        return {
            port["port"]
            for p in policies
            if _selects(p["spec"]["podSelector"], pods[pod])
            for rule in p["spec"].get("egress", [])
            for port in rule["ports"]
        }

    assert ingress_ports("careloop-api") == {8000}
    assert ingress_ports("careloop-worker") == {9102}
    assert ingress_ports("careloop-worker-alerts") == {9102}
    assert ingress_ports("careloop-beat") == set()
    backends = {53, 5432, 6379, 5672}
    # 5671: AMQP over TLS; 4318: the OpenTelemetry collector (OTLP/HTTP), when tracing is on
    assert backends <= egress_ports("careloop-beat") <= backends | {5671, 4318}
    assert {443, 587} <= egress_ports("careloop-worker")
    assert egress_ports("careloop-api") == egress_ports("careloop-worker")
    assert egress_ports("careloop-worker-alerts") == egress_ports("careloop-worker")
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            assert rule["from"], "an ingress rule names its sources"
            for source in rule["from"]:
                assert "namespaceSelector" in source and "ipBlock" not in source
        for rule in policy["spec"].get("egress", []):
            assert rule["to"] and rule["ports"], "an egress rule names destinations and ports"
            for destination in rule["to"]:
                assert destination.get("ipBlock", {}).get("cidr") != "0.0.0.0/0"


def _example(name: str) -> Manifests:
    return [d for d in yaml.safe_load_all((KUBERNETES / "examples" / name).read_text()) if d]


def test_keda_example_scales_the_worker_on_queue_depth(
    rendered: tuple[Manifests, Manifests],
    allowed_metrics: frozenset[str],
) -> None:
    """No schema ships for KEDA's CRD offline: its shape is checked here."""
    [scaled] = _example("keda-worker.yaml")
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    spec = scaled["spec"]
    worker = _one(rendered[0], "Deployment", "careloop-worker")
    assert spec["scaleTargetRef"] == {
        "apiVersion": worker["apiVersion"],
        "kind": "Deployment",
        "name": "careloop-worker",
    }
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert set(spec) <= {
        "scaleTargetRef",
        "minReplicaCount",
        "maxReplicaCount",
        "pollingInterval",
        "cooldownPeriod",
        "idleReplicaCount",
        "triggers",
        "advanced",
        "fallback",
    }
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus"
        assert set(trigger["metadata"]) == {"serverAddress", "query", "threshold"}
        assert float(trigger["metadata"]["threshold"]) > 0
        assert "careloop_queue_depth" in trigger["metadata"]["query"]


def test_monitoring_example_scrapes_the_api_with_its_token(
    rendered: tuple[Manifests, Manifests],
) -> None:
    service_monitor, pod_monitor = _example("monitoring.yaml")
    assert service_monitor["kind"] == "ServiceMonitor" and pod_monitor["kind"] == "PodMonitor"
    api_service = _one(rendered[0], "Service", "careloop-api")
    assert (
        service_monitor["spec"]["selector"]["matchLabels"].items()
        <= api_service["metadata"]["labels"].items()
    )
    [endpoint] = service_monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in api_service["spec"]["ports"]}
    assert endpoint["authorization"]["credentials"] == {
        "name": "careloop-secrets",
        "key": "CARELOOP_METRICS_TOKEN",
    }
    worker = _one(rendered[0], "Deployment", "careloop-worker")["spec"]["template"]
    assert (
        pod_monitor["spec"]["selector"]["matchLabels"].items()
        <= worker["metadata"]["labels"].items()
    )
    [container] = worker["spec"]["containers"]
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] in {
        p["name"] for p in container["ports"]
    }
