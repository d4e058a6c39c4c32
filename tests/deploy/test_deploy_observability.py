"""deploy/prometheus/alerts.yaml and deploy/grafana/careloop.json: well-formed, every expression
parses as PromQL (promql-parser) and queries careloop's agreed metric names only."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "careloop.json"
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
SEVERITIES = {"critical", "warning", "info"}
# Grafana's template variables are replaced before a query reaches Prometheus.
GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)|\$\{?\w+\}?")


def _selector_names(expr: str) -> list[str]:
    """The metric names an expression selects (a syntax error raises ValueError)."""
    names: list[str] = []

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name: {expr}"
            names.append(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    rules = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["name"] and group["rules"]
        rules += group["rules"]
    return rules


def test_alert_rules_are_well_formed() -> None:
    rules = _rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule), rule["alert"]
        assert re.fullmatch(r"Careloop[A-Z][A-Za-z0-9]+", rule["alert"])
        assert DURATION.match(rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in SEVERITIES
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        for text in rule["annotations"].values():
            assert text.count("{{") == text.count("}}")


def test_alert_expressions_query_agreed_metrics_only(
    allowed_metrics: frozenset[str], base_names: Callable[[list[str]], set[str]]
) -> None:
    for rule in _rules():
        names = base_names(_selector_names(rule["expr"]))
        assert names, rule["alert"]
        assert names <= allowed_metrics, f"{rule['alert']}: {names - allowed_metrics}"


def test_the_alerts_cover_what_an_operator_must_hear_about(
    base_names: Callable[[list[str]], set[str]],
) -> None:
    by_metric: dict[str, set[str]] = {}
    for rule in _rules():
        for name in base_names(_selector_names(rule["expr"])):
            by_metric.setdefault(name, set()).add(rule["labels"]["severity"])
    for metric in (
        "careloop_outbox_backlog",
        "careloop_outbox_oldest_age_seconds",
        "careloop_dead_tasks",
        "careloop_ehr_circuit_open",
        "careloop_notifications_total",
        "careloop_http_requests_total",
    ):
        assert metric in by_metric, metric
    assert "critical" in by_metric["careloop_report_to_notification_seconds"]
    critical_latency = [r for r in _rules() if "report_to_notification" in r["expr"]]
    assert all('severity="critical"' in r["expr"] for r in critical_latency)
    assert any("/readyz" in r["expr"] for r in _rules()), "an alert on readiness"


@pytest.mark.parametrize("broken", ["sum(rate(careloop_dead_tasks[5m])", "careloop_dead_tasks >"])
def test_a_broken_expression_is_caught(broken: str) -> None:
    with pytest.raises(ValueError):
        _selector_names(broken)


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels += panel.get("panels", [])
    return panels


def test_dashboard_panels_query_agreed_metrics(
    allowed_metrics: frozenset[str],
    agreed_metrics: frozenset[str],
    base_names: Callable[[list[str]], set[str]],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    panels = _panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    queried: set[str] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            expr = GRAFANA_VARIABLES.sub("5m", target["expr"])
            names = base_names(_selector_names(expr))
            assert names <= allowed_metrics, f"{panel['title']}: {names - allowed_metrics}"
            queried |= names
    assert queried >= agreed_metrics, f"no panel for {agreed_metrics - queried}"
