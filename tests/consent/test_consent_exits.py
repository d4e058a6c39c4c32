"""Every exit honours consent at send time: EHR sync, webhook notifications, queued work."""

from __future__ import annotations

from typing import Any

from sqlmodel import select
from support.consent_world import APP_SYSTEM, World
from support.reports import phq9

from careloop.services.alerts.models import Notification
from careloop.services.alerts.vocabulary import NotificationStatus
from careloop.services.ehr.models import EhrConnection
from careloop.services.unit_of_work import session_scope
from careloop.workflows.ehr.pull import pull

ITEM9 = [0, 0, 0, 0, 0, 0, 0, 0, 1]


def _seed_ehr_patient(world: World, value: str) -> None:
    world.ehr.seed(
        {"resourceType": "Patient", "identifier": [{"system": APP_SYSTEM, "value": value}]}
    )


def _report(world: World, value: str, answers: list[int] | None = None, day: int = 20) -> str:
    response = world.caller.post(
        "/v1/symptom-reports", json=phq9(value, answers, f"2026-11-{day:02d}T09:30:00Z")
    )
    assert response.status_code == 201, response.text
    return str(response.json()["patient"])


def _sent_to_ehr(world: World) -> list[Any]:
    """Requests that carried patient data (the token request carries none)."""
    return [
        r
        for r in world.ehr.requests
        if r[1].endswith("/Patient") or (r[0] == "POST" and not r[1].endswith("/token"))
    ]


def _notifications(world: World) -> set[str]:
    with session_scope(world.engine) as session:
        return {str(n.status) for n in session.exec(select(Notification)).all()} & {
            str(s) for s in NotificationStatus
        }


def test_no_consent_record_means_no_ehr_sync_and_it_is_audited(world: World) -> None:
    _seed_ehr_patient(world, "e-1")
    patient = _report(world, "e-1")
    world.drain()
    assert _sent_to_ehr(world) == []  # not even the identifier search
    assert world.ehr.resources("Observation") == []
    blocked = world.audits("blocked")
    assert blocked and all(a.entity.startswith(patient) for a in blocked)
    assert {a.purpose for a in blocked} == {"ehr-sync"}


def test_a_permit_for_ehr_sync_lets_the_report_reach_the_ehr(world: World) -> None:
    _seed_ehr_patient(world, "e-2")
    world.consent("e-2", "permit", "ehr-sync")
    _report(world, "e-2")
    world.drain()
    assert len(world.ehr.resources("Observation")) == 1
    assert world.audits("blocked") == []
    to_ehr = [a for a in world.audits("success") if a.destination.startswith("ehr:")]
    assert to_ehr and {a.purpose for a in to_ehr} == {"ehr-sync"}


def test_a_permit_outside_its_period_does_not_sync(world: World) -> None:
    _seed_ehr_patient(world, "e-3")
    world.consent("e-3", "permit", "ehr-sync", period={"end": "2026-01-01T00:00:00Z"})
    _report(world, "e-3")
    world.drain()
    assert world.ehr.resources("Observation") == []


def test_care_team_alerts_are_on_by_default_and_a_deny_stops_the_webhook(world: World) -> None:
    _report(world, "w-1", ITEM9)
    world.drain()
    [delivery] = world.oncall.wait_for(1)
    assert delivery["body"]["severity"] == "critical"

    world.consent("w-2", "deny", "care-team-alerts")
    patient = _report(world, "w-2", ITEM9)
    world.drain()
    assert len(world.oncall.deliveries) == 1  # nothing for the patient who said no
    assert str(NotificationStatus.BLOCKED) in _notifications(world)
    blocked = [a for a in world.audits("blocked") if a.destination.startswith("webhook:")]
    assert blocked and {a.purpose for a in blocked} == {"care-team-alerts"}
    assert all(a.entity.startswith(patient) for a in blocked)
    alerts = world.caller.get("/v1/alerts").json()["alerts"]
    # The alert is still recorded (the app API lists it to its own client); the clinician
    # dashboard leaves it out (tests/dashboard/test_dashboard_consent.py).
    assert patient in {a["patient"] for a in alerts}


def test_revocation_stops_what_is_already_queued(world: World) -> None:
    _seed_ehr_patient(world, "q-1")
    permit = world.consent("q-1", "permit", "ehr-sync")
    patient = _report(world, "q-1", ITEM9)  # queues the EHR write and the on-call webhook
    world.consent("q-1", "deny", "care-team-alerts")
    revoked = world.caller.post(f"/v1/consents/{permit['id']}/revoke")
    assert revoked.status_code == 200

    world.drain()

    assert _sent_to_ehr(world) == [] and world.ehr.resources("Observation") == []
    assert world.oncall.deliveries == []
    blocked = world.audits("blocked")
    assert {a.purpose for a in blocked} == {"ehr-sync", "care-team-alerts"}
    assert all(a.entity.startswith(patient) for a in blocked)
    assert world.audits("success") == []


def _care_plan(world: World, chart: dict[str, Any]) -> None:
    world.ehr.seed(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{chart['id']}"},
        }
    )


def test_a_pull_imports_nothing_for_a_patient_who_revoked_ehr_sync(world: World) -> None:
    charts = {}
    permits = {}
    for value in ("pull-a", "pull-b"):
        charts[value] = world.ehr.seed(
            {"resourceType": "Patient", "identifier": [{"system": APP_SYSTEM, "value": value}]}
        )
        permits[value] = world.consent(value, "permit", "ehr-sync")
        _report(world, value, [1, 1, 1, 1, 1, 1, 0, 0, 0])  # links the patient
    world.drain()
    for chart in charts.values():
        _care_plan(world, chart)
    revoked = world.caller.post(f"/v1/consents/{permits['pull-b']['id']}/revoke")
    assert revoked.status_code == 200

    with session_scope(world.engine) as session:
        connection = session.exec(
            select(EhrConnection).where(
                EhrConnection.client_id == f"careloop-{world.caller.tenant}"
            )
        ).one()
        result = pull(session, world.settings, connection)

    assert result.imported["CarePlan"] == 1 and result.skipped >= 1
    [plan] = [e["resource"] for e in world.caller.get("/fhir/CarePlan").json()["entry"]]
    kept = world.caller.get(
        "/v1/consents", params={"patient.system": APP_SYSTEM, "patient.value": "pull-a"}
    ).json()["patient"]
    assert plan["subject"]["reference"] == kept
