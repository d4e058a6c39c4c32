"""``careloop demo``: synthetic patients, a care team and a week of reports, then the alerts."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import orjson
import typer
from sqlalchemy import Engine
from sqlmodel import select

from careloop.services.alerts.models import Alert
from careloop.services.auth.scopes import Grant, parse_scopes
from careloop.services.auth.tokens import Principal
from careloop.services.db import get_engine, utcnow
from careloop.services.fhirapi.writes import create_managed
from careloop.services.migrate import upgrade
from careloop.services.reports.schemas import SymptomReportIn
from careloop.services.reports.service import ingest_reports
from careloop.services.settings import Settings, get_settings
from careloop.services.tenancy.service import create_client, get_or_create_tenant
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending

SYSTEM = "https://demo.careloop.example/patients"
# (patient, daily PHQ-9 answers or mood ratings over a week): each tells a clinical story.
PHQ9_STORIES: dict[str, list[list[int]]] = {
    "demo-stable": [[1, 1, 0, 1, 0, 0, 0, 0, 0]] * 7,
    "demo-worsening": [
        [1, 1, 0, 1, 0, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 1, 0, 0, 0],
        [2, 1, 1, 1, 1, 1, 0, 0, 0],
        [2, 2, 1, 1, 1, 1, 1, 0, 0],
        [2, 2, 2, 2, 1, 1, 1, 0, 0],
        [2, 2, 2, 2, 2, 2, 1, 1, 0],
        [3, 2, 2, 2, 2, 2, 2, 1, 0],
    ],
    "demo-item9": [[1, 1, 1, 1, 0, 1, 0, 0, 0]] * 4 + [[2, 2, 1, 1, 1, 1, 1, 0, 1]] * 3,
}
MOOD_STORIES: dict[str, list[int]] = {"demo-low-mood": [6, 5, 4, 2, 2, 1, 2]}


def _reports() -> list[SymptomReportIn]:
    start = utcnow().replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=7)
    reports = []
    for patient, week in PHQ9_STORIES.items():
        for day, answers in enumerate(week):
            reports.append(
                SymptomReportIn.model_validate(
                    {
                        "patient": {"system": SYSTEM, "value": patient},
                        "instrument": "phq-9",
                        "answers": answers,
                        "effective": start + timedelta(days=day),
                    }
                )
            )
    for patient, ratings in MOOD_STORIES.items():
        for day, value in enumerate(ratings):
            reports.append(
                SymptomReportIn.model_validate(
                    {
                        "patient": {"system": SYSTEM, "value": patient},
                        "instrument": "mood",
                        "value": value,
                        "effective": start + timedelta(days=day, hours=12),
                    }
                )
            )
    return reports


def _care_team(session: Any, principal: Principal, patient_refs: list[str]) -> None:
    doctors = []
    for name in ("Dr. Demo Primary", "Dr. Demo Backup"):
        practitioner = create_managed(
            session,
            principal,
            "Practitioner",
            {
                "resourceType": "Practitioner",
                "name": [{"text": name}],
                "identifier": [{"system": "urn:demo:staff", "value": secrets.token_hex(4)}],
            },
            None,
        )
        doctors.append(practitioner.stored.reference)
    for patient in patient_refs:
        create_managed(
            session,
            principal,
            "CareTeam",
            {
                "resourceType": "CareTeam",
                "status": "active",
                "subject": {"reference": patient},
                "participant": [{"member": {"reference": d}} for d in doctors],
            },
            None,
        )


def run_demo(settings: Settings, engine: Engine) -> list[dict[str, Any]]:
    """Seed a fresh demo tenant, evaluate everything, and return its alerts."""
    tenant_name = f"demo-{secrets.token_hex(3)}"
    with session_scope(engine) as session:
        client = create_client(session, "careloop demo", "system/*.cruds", tenant_name)
        tenant_id = get_or_create_tenant(session, tenant_name).id
    principal = Principal(
        client.client_id, tenant_id, client.scope, Grant(tuple(parse_scopes(client.scope))), 0
    )
    with session_scope(engine) as session:
        outcomes = ingest_reports(session, principal, _reports())
        patients = sorted({o.patient for o in outcomes if o.patient})
        _care_team(session, principal, patients)
    run_pending(engine, settings)
    with session_scope(engine) as session:
        alerts = session.exec(select(Alert).where(Alert.tenant_id == tenant_id)).all()
        return [
            {
                "rule": a.rule_id,
                "severity": a.severity,
                "patient": a.patient_id,
                "occurrences": a.occurrences,
                "explanation": orjson.loads(a.explanation),
            }
            for a in sorted(alerts, key=lambda a: (a.patient_id, a.rule_id))
        ]


def print_alerts(alerts: list[dict[str, Any]]) -> None:
    """A readable table of the demo's alerts."""
    typer.echo(f"{len(alerts)} alerts:")
    for alert in alerts:
        explanation = alert["explanation"]
        typer.echo(
            f"  {alert['severity']:<8} {alert['rule']:<16} Patient/{alert['patient'][:8]}  "
            f"{explanation['title']}: values {explanation['values']}, threshold "
            f"{explanation['threshold']} ({explanation['source']}), seen {alert['occurrences']}x"
        )


def demo() -> None:
    """Seed synthetic patients, a care team and a week of reports; show the alerts produced."""
    engine = get_engine()
    upgrade(engine)
    alerts = run_demo(get_settings(), engine)
    typer.echo("Seeded 4 synthetic patients, a care team of 2 and 28 daily reports.")
    print_alerts(alerts)
