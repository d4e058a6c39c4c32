"""Alerts end to end on a real database: open once, notify, suppress, escalate, close.

Outbox work runs in-process here (``run_pending``: the functions the Celery tasks call); the
broker tests run the same flow through real Redis and RabbitMQ workers.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlmodel import select
from support.clients import Caller
from support.consents import deny_all_consent
from support.reports import phq9
from webhook_receiver import Receiver, webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.alerts.models import Alert, Notification
from careloop.services.audit.models import AuditRecord
from careloop.services.db import utcnow
from careloop.services.outbox.models import DeadTask
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.evaluation import scan_missed_checkins
from careloop.workflows.inline import run_pending
from careloop.workflows.tasks import escalate_due

ITEM9 = [0, 0, 0, 0, 0, 0, 0, 0, 1]


@pytest.fixture
def drain(engine: Engine, settings: Settings) -> Any:
    """Run the outbox work the API recorded."""
    return lambda: run_pending(engine, settings)


def _alerts(caller: Caller, **params: str) -> list[dict[str, Any]]:
    response = caller.get("/v1/alerts", params=params)
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def _report(caller: Caller, answers: list[int], day: int, patient: str = "al-1") -> str:
    response = caller.post(
        "/v1/symptom-reports", json=phq9(patient, answers, f"2026-11-{day:02d}T09:00:00Z")
    )
    assert response.status_code == 201, response.text
    return str(response.json()["patient"])


def test_item9_opens_a_critical_alert_task_and_signed_webhook(
    caller: Caller, oncall: Receiver, drain: Any
) -> None:
    patient = _report(caller, ITEM9, 1)
    drain()
    [alert] = _alerts(caller, status="open")
    assert (alert["severity"], alert["rule"], alert["patient"]) == (
        "critical",
        "phq9-item9",
        patient,
    )
    assert alert["explanation"]["values"] == {"44260-8": 1.0}
    assert alert["explanation"]["source"].startswith("care program")
    [delivery] = oncall.wait_for(1)
    body = delivery["body"]
    assert body["alert"]["id"] == alert["id"] and body["severity"] == "critical"
    assert body["patient"] == patient and body["task"] == alert["task"]
    task = caller.get(f"/fhir/{alert['task']}").json()
    assert (task["status"], task["priority"], task["intent"]) == ("requested", "stat", "order")
    assert task["focus"]["reference"] == alert["observation"]
    assert task["for"]["reference"] == patient
    communications = caller.get("/fhir/Communication", params={"about": alert["task"]}).json()
    assert communications["total"] == 1


def test_same_open_alert_is_updated_and_non_critical_is_suppressed(
    caller: Caller, oncall: Receiver, drain: Any
) -> None:
    moderately_severe = [2, 2, 2, 2, 2, 2, 2, 2, 0]  # 16, item 9 zero
    _report(caller, moderately_severe, 1)
    _report(caller, moderately_severe, 2)
    drain()
    [alert] = _alerts(caller)
    assert alert["rule"] == "phq9-total" and alert["occurrences"] == 2
    assert len(oncall.wait_for(1)) == 1
    assert oncall.rejected == 0


def test_critical_alerts_are_never_suppressed(
    caller: Caller, oncall: Receiver, drain: Any, engine: Engine
) -> None:
    _report(caller, ITEM9, 1)
    _report(caller, ITEM9, 2)
    drain()
    [alert] = _alerts(caller)
    assert alert["occurrences"] == 2
    assert len(oncall.wait_for(2)) == 2
    assert len(oncall.unique_ids()) == 2


def test_acknowledge_and_resolve_mirror_into_the_task(
    caller: Caller, oncall: Receiver, drain: Any
) -> None:
    _report(caller, ITEM9, 1)
    drain()
    [alert] = _alerts(caller)
    ack = caller.post(f"/v1/alerts/{alert['id']}/acknowledge", json={"by": "Practitioner/dr-a"})
    assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    task = caller.get(f"/fhir/{alert['task']}").json()
    assert task["status"] == "accepted" and task["owner"]["reference"] == "Practitioner/dr-a"
    done = caller.post(f"/v1/alerts/{alert['id']}/resolve", json={"note": "called, safe plan"})
    assert done.status_code == 200 and done.json()["status"] == "resolved"
    assert caller.get(f"/fhir/{alert['task']}").json()["status"] == "completed"
    assert caller.post(f"/v1/alerts/{alert['id']}/acknowledge").status_code == 409
    _report(caller, ITEM9, 3)
    drain()
    assert len(_alerts(caller, status="open")) == 1  # a new alert after resolution
    assert len(_alerts(caller)) == 2


def test_task_completed_through_fhir_resolves_the_alert(
    caller: Caller, oncall: Receiver, drain: Any
) -> None:
    _report(caller, ITEM9, 1)
    drain()
    [alert] = _alerts(caller)
    task = caller.get(f"/fhir/{alert['task']}").json()
    task["status"] = "completed"
    response = caller.http.put(f"/fhir/{alert['task']}", json=task, headers=caller.headers)
    assert response.status_code == 200, response.text
    assert caller.get(f"/v1/alerts/{alert['id']}").json()["status"] == "resolved"


def _post(caller: Caller, resource: dict[str, Any]) -> dict[str, Any]:
    response = caller.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_care_plan_goal_overrides_the_default_threshold(caller: Caller, drain: Any) -> None:
    patient = _report(caller, [1, 1, 1, 1, 1, 1, 0, 0, 0], 1)  # 6: baseline, nothing fires
    goal = _post(
        caller,
        {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "PHQ-9 at or below 9"},
            "subject": {"reference": patient},
            "target": [
                {
                    "measure": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                    "detailRange": {"high": {"value": 9}},
                }
            ],
        },
    )
    _post(
        caller,
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": patient},
            "goal": [{"reference": f"Goal/{goal['id']}"}],
        },
    )
    _report(caller, [2, 2, 2, 2, 1, 1, 0, 0, 0], 2)  # 10: over the goal, under the default 15
    drain()
    [alert] = _alerts(caller)
    assert alert["rule"] == "phq9-total" and alert["severity"] == "warning"
    assert alert["explanation"]["source"] == f"Goal/{goal['id']}"
    assert alert["explanation"]["threshold"] == {"target": "<= 9"}


def _practitioner_with_webhook(caller: Caller, receiver: Receiver, name: str) -> str:
    practitioner = _post(
        caller,
        {"resourceType": "Practitioner", "identifier": [{"system": "urn:npi", "value": name}]},
    )
    reference = f"Practitioner/{practitioner['id']}"
    route = {
        "recipient": reference,
        "channel": "webhook",
        "address": receiver.url,
        "secret": receiver.secret,
    }
    assert caller.post("/v1/notification-routes", json=route).status_code == 201
    return reference


def test_unacknowledged_critical_alert_escalates_along_the_care_team(
    caller: Caller, oncall: Receiver, drain: Any, engine: Engine, settings: Settings
) -> None:
    with (
        webhook_receiver(generate_webhook_secret()) as first,
        webhook_receiver(generate_webhook_secret()) as second,
    ):
        patient = _report(caller, [0] * 9, 1)
        dr_a = _practitioner_with_webhook(caller, first, "a")
        dr_b = _practitioner_with_webhook(caller, second, "b")
        _post(
            caller,
            {
                "resourceType": "CareTeam",
                "status": "active",
                "subject": {"reference": patient},
                "participant": [{"member": {"reference": dr_a}}, {"member": {"reference": dr_b}}],
            },
        )
        _report(caller, ITEM9, 2)
        drain()
        [alert] = _alerts(caller)
        first.wait_for(1)
        oncall.wait_for(1)
        assert second.deliveries == []
        assert caller.get(f"/fhir/{alert['task']}").json()["owner"]["reference"] == dr_a

        def overdue() -> None:
            with session_scope(engine) as session:
                session.execute(
                    update(Alert)
                    .where(Alert.id == alert["id"])
                    .values(next_escalation_at=utcnow() - timedelta(seconds=1))
                )

        overdue()
        from careloop.workflows import runtime

        runtime.configure(settings, engine)

        def level() -> int:
            return int(caller.get(f"/v1/alerts/{alert['id']}").json()["escalation_level"])

        # Other tests' overdue alerts (in other tenants) may escalate in the same sweep.
        assert escalate_due() >= 1
        assert level() == 1
        drain()
        second.wait_for(1)
        assert second.deliveries[0]["body"]["type"] == "alert.escalated"
        assert caller.get(f"/fhir/{alert['task']}").json()["owner"]["reference"] == dr_b
        overdue()
        assert escalate_due() >= 1
        assert level() == 2
        drain()
        assert oncall.wait_for(2)[1]["body"]["type"] == "alert.escalated"
        caller.post(f"/v1/alerts/{alert['id']}/acknowledge", json={"by": dr_b})
        overdue()
        escalate_due()
        assert level() == 2  # acknowledged alerts never escalate


def test_missed_checkins_when_the_care_plan_expects_reports(
    caller: Caller, engine: Engine, settings: Settings
) -> None:
    patient = _report(caller, [0] * 9, 1)
    _post(
        caller,
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": patient},
            "activity": [
                {
                    "detail": {
                        "status": "in-progress",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "44249-1"}]},
                        "scheduledTiming": {
                            "repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}
                        },
                    }
                }
            ],
        },
    )
    with session_scope(engine) as session:
        assert scan_missed_checkins(session, settings, utcnow()) >= 1
    alerts = [a for a in _alerts(caller) if a["patient"] == patient]
    assert [a["rule"] for a in alerts] == ["missed-checkin"]
    assert alerts[0]["severity"] == "info"
    assert alerts[0]["explanation"]["threshold"]["expected_every_days"] == 1


def test_consent_denial_blocks_notifications_and_is_audited(
    caller: Caller, oncall: Receiver, drain: Any, engine: Engine
) -> None:
    patient = _report(caller, [0] * 9, 1)
    _post(caller, deny_all_consent(patient))
    _report(caller, ITEM9, 2)
    drain()
    [alert] = _alerts(caller)
    assert alert["severity"] == "critical"  # the alert still exists in careloop's own inbox
    with session_scope(engine) as session:
        statuses = {
            n.status
            for n in session.exec(select(Notification).where(Notification.alert_id == alert["id"]))
        }
        audits = session.exec(
            select(AuditRecord)
            .where(AuditRecord.tenant_id == caller_tenant_id(session, caller))
            .where(AuditRecord.kind == "egress")  # not the caller's token grant
        ).all()
    assert statuses == {"blocked"}
    assert [a.outcome for a in audits] == ["blocked"]
    assert oncall.deliveries == []


def caller_tenant_id(session: Any, caller: Caller) -> str:
    from careloop.services.tenancy.models import Tenant

    tenant = session.exec(select(Tenant).where(Tenant.name == caller.tenant)).one()
    return str(tenant.id)


def test_failing_webhook_retries_then_dead_letters_and_replays(
    caller: Caller, oncall: Receiver, drain: Any, engine: Engine, settings: Settings
) -> None:
    from careloop.services.dead_letters import replay
    from careloop.workflows.delivery import deliver_notification

    oncall.status = 503
    _report(caller, ITEM9, 1)
    drain()
    with session_scope(engine) as session:
        [notification] = session.exec(
            select(Notification).where(Notification.address == oncall.url)
        ).all()
    assert notification.attempts == 1  # the first try happened in drain()
    for _ in range(settings.delivery_max_attempts - 2):
        with session_scope(engine) as session:
            outcome = deliver_notification(session, settings, notification.id)
        assert not outcome.done and outcome.retry_in is not None and outcome.retry_in > 0
    with session_scope(engine) as session:
        assert deliver_notification(session, settings, notification.id).done
        failed = session.get(Notification, notification.id)
        assert failed is not None and failed.status == "failed"
        dead = session.exec(
            select(DeadTask).where(DeadTask.payload.contains(notification.id))
        ).one()  # type: ignore[attr-defined]
    assert dead.attempts == settings.delivery_max_attempts
    oncall.status = 200
    with session_scope(engine) as session:
        replay(session, dead.id or 0)
    drain()
    assert len(oncall.wait_for(1)) == 1
