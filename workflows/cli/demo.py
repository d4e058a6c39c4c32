"""``careloop demo``: a demo tenant a clinician signs in to, with weeks of synthetic history.

Synthetic patients report weekly PHQ-9 and GAD-7 (and one daily mood) through the same
services the API uses; a care team of two is assigned; the alerts are evaluated in process; one
alert is acknowledged and one resolved, so the inbox shows every state. A demo clinician
(linked to the first practitioner) can then sign in at ``{base_url}/login``.
"""

from __future__ import annotations

import secrets
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import orjson
import typer
from sqlalchemy import Engine, delete
from sqlmodel import Session, col, func, select

from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import acknowledge, resolve
from careloop.services.auth.scopes import Grant, parse_scopes
from careloop.services.auth.tokens import Principal
from careloop.services.clinicians.models import Clinician
from careloop.services.clinicians.passwords import MAX_PASSWORD, MIN_PASSWORD, hash_password
from careloop.services.db import get_engine, utcnow
from careloop.services.fhirapi.writes import create_managed
from careloop.services.launch.models import ClinicianSession
from careloop.services.migrate import upgrade
from careloop.services.reports.schemas import SymptomReportIn
from careloop.services.reports.service import ingest_reports
from careloop.services.settings import Settings, get_settings
from careloop.services.tenancy.service import create_client, get_or_create_tenant
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending

SYSTEM = "https://demo.careloop.example/patients"
DEMO_EMAIL = "demo@careloop.example"
DEMO_NAME = "Dr. Demo Primary"
WEEKS = 8

# Weekly PHQ-9 answers per patient (oldest first, one a week): each tells a clinical story.
PHQ9_STORIES: dict[str, list[list[int]]] = {
    # Moderate and steady, then item 9 answered "more than half the days": critical.
    "demo-item9": [[1, 2, 1, 1, 1, 1, 1, 1, 0]] * (WEEKS - 1) + [[2, 2, 2, 1, 1, 2, 1, 1, 2]],
    # Mild at first, rising by 7 points over the weeks: worsened from baseline (warning).
    "demo-worsening": [
        [1, 1, 0, 1, 0, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1, 0, 0, 0],
        [2, 1, 1, 1, 1, 1, 0, 0, 0],
        [2, 1, 1, 1, 1, 1, 1, 0, 0],
        [2, 2, 1, 1, 1, 1, 1, 0, 0],
        [2, 2, 2, 1, 1, 1, 1, 1, 0],
        [2, 2, 2, 2, 1, 1, 1, 1, 0],
    ],
    # Moderately severe at intake, responding to treatment (the intake alert was resolved).
    "demo-improving": [
        [2, 2, 2, 2, 2, 2, 2, 2, 0],
        [2, 2, 2, 2, 2, 2, 1, 1, 0],
        [2, 2, 2, 1, 1, 1, 1, 1, 0],
        [2, 1, 1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 1, 0, 0, 0],
        [1, 1, 0, 1, 0, 1, 0, 0, 0],
        [1, 0, 0, 1, 0, 0, 0, 0, 0],
    ],
    "demo-stable": [[1, 1, 0, 1, 0, 0, 0, 0, 0]] * WEEKS,
    "demo-stable-2": [[0, 1, 0, 1, 0, 1, 0, 0, 0]] * WEEKS,
    "demo-anxious": [[1, 1, 1, 1, 0, 1, 1, 0, 0]] * WEEKS,
}
# Weekly GAD-7 answers (oldest first).
GAD7_STORIES: dict[str, list[list[int]]] = {
    "demo-item9": [[2, 1, 1, 1, 1, 1, 1]] * WEEKS,
    "demo-worsening": [[1, 1, 1, 1, 0, 1, 1]] * WEEKS,
    "demo-improving": [[2, 2, 2, 1, 1, 1, 1]] * 3 + [[1, 1, 1, 1, 0, 1, 0]] * (WEEKS - 3),
    "demo-stable": [[1, 0, 1, 0, 0, 1, 0]] * WEEKS,
    "demo-stable-2": [[0, 1, 0, 1, 0, 0, 0]] * WEEKS,
    # Anxiety climbing into the severe band (GAD-7 >= 15): warning, acknowledged by the team.
    "demo-anxious": [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1],
        [2, 1, 1, 1, 1, 1, 1],
        [2, 2, 1, 1, 1, 1, 1],
        [2, 2, 2, 1, 1, 1, 1],
        [2, 2, 2, 2, 1, 1, 1],
        [2, 2, 2, 2, 2, 2, 1],
        [3, 3, 2, 2, 2, 2, 2],
    ],
}
# Daily mood (0-10) over the last week.
MOOD_STORIES: dict[str, list[int]] = {"demo-low-mood": [6, 5, 4, 2, 2, 1, 2]}
ACKNOWLEDGED = ("demo-anxious", "Called the patient; visit booked for Thursday.")
RESOLVED = ("demo-improving", "Intake score reviewed; treatment started, scores falling.")


@dataclass(frozen=True)
class SeededDemo:
    """What ``seed_demo`` made: the tenant, its patients (identifier value to id), its alerts."""

    tenant_id: str
    tenant_name: str
    patients: dict[str, str]
    practitioners: list[str]
    alerts: list[dict[str, Any]]


def _report(patient: str, instrument: str, effective: datetime, **fields: Any) -> SymptomReportIn:
    return SymptomReportIn.model_validate(
        {
            "patient": {"system": SYSTEM, "value": patient},
            "instrument": instrument,
            "effective": effective,
            **fields,
        }
    )


def _reports(now: datetime) -> list[SymptomReportIn]:
    # The last weekly questionnaire was answered a couple of hours ago.
    last = now.replace(second=0, microsecond=0) - timedelta(hours=2)
    reports = []
    for instrument, stories in (("phq-9", PHQ9_STORIES), ("gad-7", GAD7_STORIES)):
        for patient, weeks in stories.items():
            for week, answers in enumerate(weeks):
                when = last - timedelta(weeks=len(weeks) - 1 - week, minutes=5 * len(patient))
                reports.append(_report(patient, instrument, when, answers=answers))
    for patient, ratings in MOOD_STORIES.items():
        for day, value in enumerate(ratings):
            when = last - timedelta(days=len(ratings) - 1 - day)
            reports.append(_report(patient, "mood", when, value=value))
    return reports


def _care_team(session: Session, principal: Principal, patient_refs: list[str]) -> list[str]:
    doctors = []
    for name in (DEMO_NAME, "Dr. Demo Backup"):
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
    return doctors


def _follow_up(engine: Engine, demo_tenant: str, patients: dict[str, str], actor: str) -> None:
    """The care team has already acted on two alerts: one acknowledged, one resolved."""
    with session_scope(engine) as session:
        for (story, note), act in ((ACKNOWLEDGED, "ack"), (RESOLVED, "resolve")):
            alert = session.exec(
                select(Alert)
                .where(Alert.tenant_id == demo_tenant, Alert.patient_id == patients[story])
                .order_by(col(Alert.opened_at))
            ).first()
            if alert is None:
                continue
            if act == "ack":
                acknowledge(session, demo_tenant, alert.id, actor, note=note)
            else:
                resolve(session, demo_tenant, alert.id, actor, note)


def _alert_rows(session: Session, tenant_id: str) -> list[dict[str, Any]]:
    alerts = session.exec(select(Alert).where(Alert.tenant_id == tenant_id)).all()
    return [
        {
            "id": a.id,
            "rule": a.rule_id,
            "severity": a.severity,
            "status": a.status,
            "patient": a.patient_id,
            "occurrences": a.occurrences,
            "explanation": orjson.loads(a.explanation),
        }
        for a in sorted(alerts, key=lambda a: (a.patient_id, a.rule_id))
    ]


def seed_demo(settings: Settings, engine: Engine) -> SeededDemo:
    """A fresh demo tenant: patients with weeks of reports, a care team, the alerts evaluated."""
    tenant_name = f"demo-{secrets.token_hex(3)}"
    with session_scope(engine) as session:
        client = create_client(session, "careloop demo", "system/*.cruds", tenant_name)
        tenant_id = get_or_create_tenant(session, tenant_name).id
    principal = Principal(
        client.client_id, tenant_id, client.scope, Grant(tuple(parse_scopes(client.scope))), 0
    )
    reports = _reports(utcnow())
    with session_scope(engine) as session:
        outcomes = ingest_reports(session, principal, reports)
        patients = {
            r.patient.value: o.patient.removeprefix("Patient/")
            for r, o in zip(reports, outcomes, strict=True)
            if o.patient
        }
        doctors = _care_team(session, principal, sorted(f"Patient/{p}" for p in patients.values()))
    run_pending(engine, settings)
    _follow_up(engine, tenant_id, patients, doctors[1])
    run_pending(engine, settings)
    with session_scope(engine) as session:
        alerts = _alert_rows(session, tenant_id)
    return SeededDemo(tenant_id, tenant_name, patients, doctors, alerts)


def run_demo(settings: Settings, engine: Engine) -> list[dict[str, Any]]:
    """Seed a fresh demo tenant, evaluate everything, and return its alerts."""
    return seed_demo(settings, engine).alerts


def demo_clinician(
    engine: Engine, tenant_id: str, email: str, password: str, practitioner: str | None
) -> Clinician:
    """The demo clinician ``email``, created or moved to ``tenant_id`` with ``password``.

    A clinician moved from an earlier demo tenant loses the sessions opened there.
    """
    password_hash = hash_password(password)
    email = email.strip().lower()
    with session_scope(engine) as session:
        clinician = session.exec(
            select(Clinician).where(func.lower(Clinician.email) == email)
        ).first()
        if clinician is None:
            clinician = Clinician(id=str(uuid.uuid4()), tenant_id=tenant_id, email=email, name="")
        else:
            session.execute(
                delete(ClinicianSession).where(col(ClinicianSession.clinician_id) == clinician.id)
            )
        clinician.tenant_id = tenant_id
        clinician.name = DEMO_NAME
        clinician.practitioner = practitioner
        clinician.password_hash = password_hash
        clinician.active = True
        clinician.failed_logins = 0
        clinician.locked_until = None
        session.add(clinician)
    return clinician


def print_alerts(alerts: list[dict[str, Any]]) -> None:
    """A readable table of the demo's alerts."""
    typer.echo(f"{len(alerts)} alerts:")
    for alert in alerts:
        explanation = alert["explanation"]
        typer.echo(
            f"  {alert['severity']:<8} {alert['status']:<12} {alert['rule']:<16} "
            f"Patient/{alert['patient'][:8]}  {explanation['title']}: values "
            f"{explanation['values']}, threshold {explanation['threshold']} "
            f"({explanation['source']}), seen {alert['occurrences']}x"
        )


def _read_password(password_stdin: bool) -> tuple[str, bool]:
    """The password from stdin when asked, else a new random one (to print)."""
    if not password_stdin:
        return secrets.token_urlsafe(12), True
    password = sys.stdin.readline().rstrip("\r\n")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        typer.echo(
            f"careloop demo: the password takes {MIN_PASSWORD} to {MAX_PASSWORD} characters",
            err=True,
        )
        raise typer.Exit(2)
    return password, False


def demo(
    email: Annotated[
        str, typer.Option(help="The demo clinician's sign-in email.", max=320)
    ] = DEMO_EMAIL,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the demo clinician's password from stdin (else random)."
        ),
    ] = False,
) -> None:
    """Seed a demo tenant a clinician signs in to; print the alerts and the sign-in address."""
    if len(email) > 320 or "@" not in email:
        typer.echo("careloop demo: --email takes an email address", err=True)
        raise typer.Exit(2)
    password, generated = _read_password(password_stdin)
    settings = get_settings()
    engine = get_engine()
    upgrade(engine)
    seeded = seed_demo(settings, engine)
    demo_clinician(engine, seeded.tenant_id, email, password, seeded.practitioners[0])
    weeks = max(len(w) for w in PHQ9_STORIES.values())
    typer.echo(
        f"Seeded tenant {seeded.tenant_name}: {len(seeded.patients)} synthetic patients with "
        f"{weeks} weeks of PHQ-9 and GAD-7, a care team of {len(seeded.practitioners)}."
    )
    print_alerts(seeded.alerts)
    typer.echo("")
    typer.echo(f"Sign in at {settings.base_url.rstrip('/')}/login")
    typer.echo(f"  email:    {email.strip().lower()}")
    if generated:
        typer.echo(f"  password: {password}   (shown once; run careloop demo again for a new one)")
    else:
        typer.echo("  password: the one you gave")
    typer.echo("(careloop serve must be running for the address to answer: make run)")
