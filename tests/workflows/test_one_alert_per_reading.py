"""A reading that crosses several rules pages once, at the highest severity, with every reason.

Real databases, a real webhook receiver and a real SMTP server; outbox work runs in-process.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, update
from sqlmodel import col, select
from support.clients import Caller
from support.reports import phq9
from support.smtp import SmtpServer
from webhook_receiver import Receiver, webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.alerts.firing import Firing, alert_explanation, reasons_of
from careloop.services.alerts.models import Alert, Notification, ProcessedReading
from careloop.services.alerts.opening import merged_reasons
from careloop.services.alerts.service import acknowledge
from careloop.services.db import utcnow
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows import runtime
from careloop.workflows.evaluation import evaluate_observation
from careloop.workflows.inline import run_pending
from careloop.workflows.rules.program import load_program
from careloop.workflows.tasks import escalate_due

WORST = [3] * 9  # total 27 (severe: high) and item 9 = 3 (critical)
SEVERE_ONLY = [3] * 8 + [0]  # total 24, item 9 zero
MODERATE_ONLY = [2] * 8 + [0]  # total 16 (warning), item 9 zero
PROGRAM = load_program()
TITLES = {r.id: r.title for r in PROGRAM.rules}


def _report(caller: Caller, answers: list[int], day: int, patient: str = "op-1") -> str:
    response = caller.post(
        "/v1/symptom-reports", json=phq9(patient, answers, f"2026-11-{day:02d}T09:00:00Z")
    )
    assert response.status_code == 201, response.text
    return str(response.json()["patient"])


def _alerts(caller: Caller) -> list[dict[str, Any]]:
    response = caller.get("/v1/alerts")
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def _post(caller: Caller, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = caller.post(path, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _notifications(engine: Engine, alert_id: str) -> list[Notification]:
    with session_scope(engine) as session:
        return list(session.exec(select(Notification).where(Notification.alert_id == alert_id)))


def _overdue(engine: Engine, alert_id: str) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(Alert)
            .where(Alert.id == alert_id)  # type: ignore[arg-type]
            .values(next_escalation_at=utcnow() - timedelta(seconds=1))
        )


def test_three_rules_one_alert_one_webhook_per_route_one_email(
    caller: Caller, oncall: Receiver, engine: Engine, settings: Settings, smtp: SmtpServer
) -> None:
    patient = _report(caller, [0] * 9, 1)
    practitioner = _post(caller, "/fhir/Practitioner", {"resourceType": "Practitioner"})
    doctor = f"Practitioner/{practitioner['id']}"
    _post(
        caller,
        "/fhir/CareTeam",
        {
            "resourceType": "CareTeam",
            "status": "active",
            "subject": {"reference": patient},
            "participant": [{"member": {"reference": doctor}}],
        },
    )
    with webhook_receiver(generate_webhook_secret()) as doctors_hook:
        for route in (
            {"channel": "webhook", "address": doctors_hook.url, "secret": doctors_hook.secret},
            {"channel": "email", "address": "dr@clinic.example"},
        ):
            _post(caller, "/v1/notification-routes", {"recipient": doctor, **route})
        _report(caller, WORST, 2)
        run_pending(
            engine, settings.model_copy(update={"smtp_host": smtp.host, "smtp_port": smtp.port})
        )
        [alert] = _alerts(caller)
        assert (alert["severity"], alert["rule"], alert["patient"]) == (
            "critical",
            "phq9-item9",
            patient,
        )
        explanation = alert["explanation"]
        reasons = explanation["reasons"]
        assert [(r["rule"], r["severity"]) for r in reasons] == [
            ("phq9-item9", "critical"),
            ("phq9-total", "high"),
            ("phq9-worsening", "warning"),  # 0 -> 27 from the baseline
        ]
        assert reasons[1]["values"] == {"value": 27.0}
        assert reasons[1]["threshold"] == {"at_least": 20.0}
        assert all(r["source"].startswith("care program") for r in reasons)
        assert {r["observation"] for r in reasons} == {alert["observation"]}
        for key in ("rule", "title", "severity", "values", "threshold", "source"):
            assert explanation[key] == reasons[0][key]  # the primary reason, as before

        expected = [
            {"rule": r["rule"], "severity": r["severity"], "title": TITLES[r["rule"]]}
            for r in reasons
        ]
        for receiver in (oncall, doctors_hook):
            [delivery] = receiver.deliveries  # run_pending delivered: exactly one each
            body = delivery["body"]
            assert body["type"] == "alert.opened" and body["alert"]["id"] == alert["id"]
            assert body["severity"] == "critical" and body["reasons"] == expected
            assert body["alert"]["explanation"] is None
            assert "27" not in str(body["reasons"]) and "44260-8" not in str(body)
        [email] = smtp.collector.emails()
        text = email.get_payload(decode=True).decode()  # type: ignore[union-attr]
        assert f"- {TITLES['phq9-item9']} (critical)" in text
        assert f"- {TITLES['phq9-total']} (high)" in text
        assert f"- {TITLES['phq9-worsening']} (warning)" in text
        assert "44260-8" not in text and patient not in text
    assert len(_notifications(engine, alert["id"])) == 3  # one per target
    task = caller.get(f"/fhir/{alert['task']}").json()
    assert task["description"] == "; ".join(TITLES[r["rule"]] for r in reasons)
    [communication, _, _] = caller.get(
        "/fhir/Communication", params={"about": alert["task"]}
    ).json()["entry"]
    assert TITLES["phq9-total"] in communication["resource"]["payload"][0]["contentString"]


def test_a_later_reading_on_one_rule_updates_the_alert_and_one_ack_stops_escalation(
    caller: Caller, oncall: Receiver, engine: Engine, settings: Settings
) -> None:
    _report(caller, WORST, 1)
    run_pending(engine, settings)
    [first] = _alerts(caller)
    _report(caller, SEVERE_ONLY, 2)  # only the total rule (high), inside the suppression window
    run_pending(engine, settings)
    [alert] = _alerts(caller)
    assert alert["id"] == first["id"] and alert["occurrences"] == 2
    assert (alert["severity"], alert["rule"]) == ("critical", "phq9-item9")
    reasons = {r["rule"]: r for r in alert["explanation"]["reasons"]}
    assert reasons.keys() == {"phq9-item9", "phq9-total"}
    assert reasons["phq9-item9"]["observation"] == first["observation"]  # still to follow up
    assert reasons["phq9-total"]["observation"] == alert["observation"] != first["observation"]
    assert reasons["phq9-total"]["values"] == {"value": 24.0}
    assert len(oncall.deliveries) == 1  # not critical by itself, not raised: suppressed

    runtime.configure(settings, engine)
    _overdue(engine, alert["id"])
    # The sweep is global: other tests' overdue alerts (other tenants) may escalate with it.
    assert escalate_due() >= 1
    assert [a["escalation_level"] for a in _alerts(caller)] == [1]  # one alert, one chain
    run_pending(engine, settings)
    assert [d["body"]["type"] for d in oncall.deliveries] == ["alert.opened", "alert.escalated"]
    ack = caller.post(f"/v1/alerts/{alert['id']}/acknowledge", json={"by": "Practitioner/dr-a"})
    assert ack.status_code == 200, ack.text
    _overdue(engine, alert["id"])
    escalate_due()
    assert [a["escalation_level"] for a in _alerts(caller)] == [1]  # all acknowledged at once
    run_pending(engine, settings)
    assert len(oncall.deliveries) == 2


def test_a_reading_that_raises_an_open_alert_becomes_its_primary_reason(
    caller: Caller, oncall: Receiver, engine: Engine, settings: Settings
) -> None:
    _report(caller, MODERATE_ONLY, 1)
    run_pending(engine, settings)
    [first] = _alerts(caller)
    assert (first["rule"], first["severity"]) == ("phq9-total", "warning")
    _report(caller, WORST, 2)
    run_pending(engine, settings)
    [alert] = _alerts(caller)
    assert alert["id"] == first["id"] and alert["occurrences"] == 2
    assert (alert["rule"], alert["severity"]) == ("phq9-item9", "critical")
    assert [r["rule"] for r in alert["explanation"]["reasons"]] == [
        "phq9-item9",
        "phq9-total",
        "phq9-worsening",  # 16 -> 27: a rise of 11 from the baseline
    ]
    assert [d["body"]["type"] for d in oncall.deliveries] == ["alert.opened", "alert.updated"]
    assert oncall.deliveries[1]["body"]["severity"] == "critical"
    task = caller.get(f"/fhir/{alert['task']}").json()
    assert task["priority"] == "stat"


def test_the_same_reading_evaluated_again_pages_once(
    caller: Caller, oncall: Receiver, engine: Engine, settings: Settings
) -> None:
    _report(caller, WORST, 1)
    run_pending(engine, settings)
    [alert] = _alerts(caller)
    observation_id = alert["observation"].removeprefix("Observation/")
    with session_scope(engine) as session:
        tenant_id = session.exec(select(Alert.tenant_id).where(Alert.id == alert["id"])).one()
    for _ in range(2):  # a redelivered task, twice
        with session_scope(engine) as session:
            assert evaluate_observation(session, settings, tenant_id, observation_id) == []
        run_pending(engine, settings)
    [again] = _alerts(caller)
    assert again["occurrences"] == 1 and len(again["explanation"]["reasons"]) == 2
    assert len(_notifications(engine, alert["id"])) == 1
    assert len(oncall.deliveries) == 1


def test_webhooks_carry_no_notes_nor_values_of_an_acknowledged_alert(
    caller: Caller, oncall: Receiver, engine: Engine, settings: Settings
) -> None:
    _report(caller, WORST, 1)
    run_pending(engine, settings)
    [alert] = _alerts(caller)
    note = "synthetic free text: spoke with the patient's sister"
    with session_scope(engine) as session:
        tenant_id = session.exec(select(Alert.tenant_id).where(Alert.id == alert["id"])).one()
        acknowledge(session, tenant_id, alert["id"], "Practitioner/dr-a", note)
    _report(caller, WORST, 2)  # critical again: the acknowledged alert is updated and pages
    run_pending(engine, settings)
    [updated] = _alerts(caller)
    assert updated["acknowledgement_note"] == note and updated["status"] == "acknowledged"
    assert [d["body"]["type"] for d in oncall.deliveries] == ["alert.opened", "alert.updated"]
    body = oncall.deliveries[1]["body"]
    assert body["alert"]["acknowledgement_note"] is None and "sister" not in str(body)
    assert body["alert"]["explanation"] is None and "values" not in str(body)


_EXAMPLES = iter(range(10**6))


@hypothesis_settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(answers=st.lists(st.integers(0, 3), min_size=9, max_size=9))
def test_any_reading_opens_at_most_one_alert_listing_every_rule_it_fired(
    caller: Caller, oncall: Receiver, engine: Engine, settings: Settings, answers: list[int]
) -> None:
    response = caller.post("/v1/symptom-reports", json=phq9(f"op-any-{next(_EXAMPLES)}", answers))
    assert response.status_code == 201, response.text
    patient = response.json()["patient"]
    observations = [
        r.removeprefix("Observation/")
        for r in response.json()["resources"]
        if r.startswith("Observation/")
    ]
    run_pending(engine, settings)
    mine = [a for a in _alerts(caller) if a["patient"] == patient]
    with session_scope(engine) as session:
        readings = session.exec(
            select(ProcessedReading).where(col(ProcessedReading.observation_id).in_(observations))
        ).all()
    assert readings  # the total-score Observation was evaluated
    fired = [rule for reading in readings for rule in reading.fired.split()]
    assert len(mine) == (1 if fired else 0)
    if mine:
        [alert] = mine
        reasons = alert["explanation"]["reasons"]
        assert sorted(r["rule"] for r in reasons) == sorted(fired)
        ranks = ["info", "warning", "high", "critical"]
        assert alert["severity"] == max((r["severity"] for r in reasons), key=ranks.index)
        assert alert["rule"] == reasons[0]["rule"]
        assert len(_notifications(engine, alert["id"])) == 1  # the on-call route, once


_RULES = ["phq9-item9", "phq9-total", "phq9-worsening", "gad7-total"]
_SEVERITIES = ["info", "warning", "high", "critical"]
_firings = st.lists(
    st.builds(
        Firing,
        rule_id=st.sampled_from(_RULES),
        severity=st.sampled_from(_SEVERITIES),
        title=st.just("t"),
        values=st.fixed_dictionaries({"value": st.integers(0, 27)}),
        threshold=st.just({}),
        source=st.just("care program test"),
    ),
    min_size=1,
    max_size=4,
)


@given(readings=st.lists(_firings, min_size=1, max_size=5))
def test_merged_reasons_keep_one_per_rule_most_severe_first(
    readings: list[list[Firing]],
) -> None:
    reasons: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}
    for n, firings in enumerate(readings):
        primary = reasons[0]["rule"] if reasons else None
        reasons = merged_reasons(reasons, firings, f"obs-{n}", primary)
        for firing in reversed(firings):  # the first firing of a rule in a reading counts
            latest[firing.rule_id] = firing.reason(f"obs-{n}")
        ranks = [_SEVERITIES.index(r["severity"]) for r in reasons]
        assert ranks == sorted(ranks, reverse=True)
        assert {r["rule"]: r for r in reasons} == latest  # one per rule, the latest of each
        if primary is not None and reasons[0]["rule"] != primary:
            primary_rank = next(
                _SEVERITIES.index(r["severity"]) for r in reasons if r["rule"] == primary
            )
            assert ranks[0] > primary_rank  # the primary changes only for a more severe reason
    explanation = alert_explanation(reasons)
    assert reasons_of(explanation) == reasons and explanation["rule"] == reasons[0]["rule"]
