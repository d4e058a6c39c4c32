"""careloop against the test EHR: linking, writes exactly once through every fault, care plans
and Task status read back, key rotation, and clinicians launching careloop (SMART App Launch)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from ehr_server import Fault, TestEHR
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller, make_caller
from support.ehr import connect_ehr
from support.reports import phq9

from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.inline import run_pending
from careloop.workflows.web import create_app

APP_SYSTEM = "https://app.example/patients"
SCOPES = "system/*.cruds"


@dataclass
class World:
    """careloop, an app caller, the EHR and the connection between them."""

    api: TestClient
    caller: Caller
    ehr: TestEHR
    engine: Engine
    settings: Settings
    connection_name: str

    def drain(self) -> int:
        """Run the outbox work (the code the Celery tasks run)."""
        return run_pending(self.engine, self.settings)

    def ehr_patient(self, value: str) -> dict[str, Any]:
        """Seed an EHR Patient carrying the app's identifier."""
        return self.ehr.seed(
            {
                "resourceType": "Patient",
                "identifier": [{"system": APP_SYSTEM, "value": value}],
                "active": True,
            }
        )

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        """The EHR's current resources of ``rtype``."""
        return self.ehr.resources(rtype)


@pytest.fixture
def world(settings: Settings, engine: Engine) -> Iterator[World]:
    """A fresh tenant connected to a fresh test EHR."""
    fast = settings.model_copy(update={"ehr_timeout_seconds": 1.0, "ehr_circuit_failures": 100})
    with TestEHR() as ehr, TestClient(create_app(fast, engine), base_url=BASE_URL) as api:
        caller = make_caller(api, engine)
        connect_ehr(api, engine, fast, caller, ehr, SCOPES)
        yield World(api, caller, ehr, engine, fast, "hospital")


def _report(world: World, value: str, answers: list[int] | None = None, day: int = 20) -> Any:
    response = world.caller.post(
        "/v1/symptom-reports",
        json=phq9(value, answers or [1, 1, 0, 1, 0, 0, 1, 0, 0], f"2026-11-{day:02d}T09:00:00Z"),
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_report_lands_in_the_linked_chart_exactly_once(world: World) -> None:
    patient = world.ehr_patient("p-1")
    created = _report(world, "p-1")
    world.drain()
    [observation] = world.of_type("Observation")
    [qr] = world.of_type("QuestionnaireResponse")
    [provenance] = world.of_type("Provenance")
    assert observation["subject"]["reference"] == f"Patient/{patient['id']}"
    assert observation["derivedFrom"][0]["reference"] == f"QuestionnaireResponse/{qr['id']}"
    assert {t["reference"] for t in provenance["target"]} >= {
        f"Observation/{observation['id']}",
        f"QuestionnaireResponse/{qr['id']}",
    }
    assert any("careloop" in i["system"] for i in observation["identifier"])
    _report(world, "p-1")  # the app retries: careloop recognises it, nothing new anywhere
    world.drain()
    assert len(world.of_type("Observation")) == 1
    status = world.caller.get("/admin/ehr-connections/hospital")
    assert status.status_code == 403  # admin needs careloop/admin
    assert created["patient"].startswith("Patient/")


def _admin(world: World) -> Caller:
    return make_caller(
        world.api, world.engine, scope="careloop/admin system/*.rs", tenant=world.caller.tenant
    )


def test_unlinked_patients_wait_and_are_never_guessed(world: World) -> None:
    created = _report(world, "nobody-in-ehr")
    world.drain()
    assert world.of_type("Observation") == []
    admin = _admin(world)
    status = admin.get("/admin/ehr-connections/hospital").json()
    assert status["patients"]["unlinked"] == 1 and status["resources"]["waiting"] >= 3
    # two EHR Patients carry the same identifier: ambiguous, nothing written
    world.ehr_patient("twin")
    world.ehr_patient("twin")
    _report(world, "twin")
    world.drain()
    assert world.of_type("Observation") == []
    assert admin.get("/admin/ehr-connections/hospital").json()["patients"]["ambiguous"] == 1
    # an operator links the first patient explicitly: what waited is written
    chart = world.ehr.seed({"resourceType": "Patient", "active": True})
    link = admin.post(
        "/admin/patient-links",
        json={
            "ehr": "hospital",
            "patient": created["patient"],
            "ehr_patient": f"Patient/{chart['id']}",
        },
    )
    assert link.status_code == 201, link.text
    world.drain()
    [observation] = world.of_type("Observation")
    assert observation["subject"]["reference"] == f"Patient/{chart['id']}"


FAULTS = [
    Fault.HTTP_500,
    Fault.HTTP_503,
    Fault.HTTP_429,
    Fault.HANG,
    Fault.DROP_AFTER_COMMIT,
    Fault.DROP_BEFORE,
]


@pytest.mark.parametrize("fault", FAULTS, ids=[str(f) for f in FAULTS])
def test_no_duplicate_and_no_loss_across_faults(world: World, fault: Fault) -> None:
    world.ehr_patient("f-1")
    _report(world, "f-1")
    world.ehr.inject(fault, count=1, method="POST")
    world.drain()  # the faulted attempt goes back to the outbox
    world.drain()  # and succeeds
    assert len(world.of_type("Observation")) == 1
    assert len(world.of_type("QuestionnaireResponse")) == 1
    assert len(world.of_type("Provenance")) == 1


def test_revoked_token_reauthenticates_once(world: World) -> None:
    world.ehr_patient("t-1")
    _report(world, "t-1", day=1)
    world.drain()
    issued = world.ehr.issued_tokens
    world.ehr.revoke_tokens()
    _report(world, "t-1", day=2)
    world.drain()
    assert len(world.of_type("Observation")) == 2
    assert world.ehr.issued_tokens == issued + 1


def test_refused_write_is_kept_with_the_reason_and_replayed(world: World) -> None:
    world.ehr.register_client(
        f"careloop-{world.caller.tenant}",
        "system/Patient.rs",
        jwks=world.api.get("/.well-known/jwks.json").json(),
    )
    world.ehr_patient("r-1")
    _report(world, "r-1")
    world.drain()
    assert world.of_type("Observation") == []
    admin = _admin(world)
    [failure] = admin.get("/admin/ehr-connections/hospital/failures").json()["failures"]
    assert failure["status"] in (401, 403) or failure["reason"]
    world.ehr.register_client(
        f"careloop-{world.caller.tenant}",
        SCOPES,
        jwks=world.api.get("/.well-known/jwks.json").json(),
    )
    from careloop.services.ehr.failures import replay_failure
    from careloop.services.ehr.models import EhrFailure

    with session_scope(world.engine) as session:
        row = session.get(EhrFailure, failure["id"])
        assert row is not None
        replay_failure(session, row)
    world.drain()
    assert len(world.of_type("Observation")) == 1


def test_encounter_follows_its_session_as_versions(world: World) -> None:
    world.ehr_patient("e-1")
    session = world.caller.post(
        "/v1/telehealth-sessions",
        json={
            "patient": {"system": APP_SYSTEM, "value": "e-1"},
            "status": "planned",
            "modality": "video",
            "start": "2026-11-24T15:00:00Z",
        },
    ).json()
    world.drain()
    world.caller.patch(
        f"/v1/telehealth-sessions/{session['id']}",
        json={"status": "finished", "end": "2026-11-24T15:30:00Z"},
    )
    world.drain()
    [encounter] = world.of_type("Encounter")
    assert encounter["status"] == "finished"
    assert encounter["meta"]["versionId"] == "2"
    assert len(world.of_type("Provenance")) == 2


def test_care_plan_written_in_the_ehr_changes_the_threshold(world: World) -> None:
    chart = world.ehr_patient("g-1")
    first = _report(world, "g-1", [1, 1, 1, 1, 1, 1, 0, 0, 0], day=1)  # 6: links the patient
    world.drain()
    goal = world.ehr.seed(
        {
            "resourceType": "Goal",
            "lifecycleStatus": "active",
            "description": {"text": "PHQ-9 at or below 9"},
            "subject": {"reference": f"Patient/{chart['id']}"},
            "target": [
                {
                    "measure": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
                    "detailRange": {"high": {"value": 9}},
                }
            ],
        }
    )
    world.ehr.seed(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "subject": {"reference": f"Patient/{chart['id']}"},
            "goal": [{"reference": f"Goal/{goal['id']}"}],
            "activity": [
                {
                    "detail": {
                        "status": "in-progress",
                        "scheduledTiming": {
                            "repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"}
                        },
                    }
                }
            ],
        }
    )
    from careloop.services.ehr.models import EhrConnection
    from careloop.workflows.ehr.pull import pull

    with session_scope(world.engine) as session:
        from sqlmodel import select

        connection = session.exec(
            select(EhrConnection).where(
                EhrConnection.client_id == f"careloop-{world.caller.tenant}"
            )
        ).one()
        result = pull(session, world.settings, connection)
    assert result.imported["Goal"] == 1 and result.imported["CarePlan"] == 1
    plan = world.caller.get("/fhir/CarePlan").json()["entry"][0]["resource"]
    assert plan["goal"][0]["reference"].startswith("Goal/")  # rewritten to careloop's Goal
    assert plan["subject"]["reference"] == first["patient"]
    _report(world, "g-1", [2, 2, 2, 2, 1, 1, 0, 0, 0], day=2)  # 10: over this patient's goal
    world.drain()
    [alert] = world.caller.get("/v1/alerts").json()["alerts"]
    assert alert["explanation"]["source"].startswith("Goal/")


def test_task_completed_in_the_ehr_resolves_the_alert(world: World) -> None:
    world.ehr_patient("k-1")
    _report(world, "k-1", [0, 0, 0, 0, 0, 0, 0, 0, 1])
    world.drain()
    [alert] = world.caller.get("/v1/alerts").json()["alerts"]
    [task] = world.of_type("Task")
    assert task["priority"] == "stat" and task["status"] == "requested"
    world.ehr.seed({**task, "status": "completed", "note": [{"text": "seen in clinic"}]})
    from careloop.services.ehr.models import EhrConnection
    from careloop.workflows.ehr.pull import pull

    with session_scope(world.engine) as session:
        from sqlmodel import select

        connection = session.exec(
            select(EhrConnection).where(
                EhrConnection.client_id == f"careloop-{world.caller.tenant}"
            )
        ).one()
        assert pull(session, world.settings, connection).tasks_applied == 1
    assert world.caller.get(f"/v1/alerts/{alert['id']}").json()["status"] == "resolved"


def test_short_lived_tokens_are_renewed_before_they_expire(
    settings: Settings, engine: Engine
) -> None:
    fast = settings.model_copy(update={"ehr_timeout_seconds": 1.0})
    with (
        TestEHR(token_lifetime=20) as ehr,
        TestClient(create_app(fast, engine), base_url=BASE_URL) as api,
    ):
        caller = make_caller(api, engine)
        connect_ehr(api, engine, fast, caller, ehr, SCOPES)
        ehr.seed(
            {"resourceType": "Patient", "identifier": [{"system": APP_SYSTEM, "value": "short"}]}
        )
        for day in (1, 2, 3):
            caller.post(
                "/v1/symptom-reports", json=phq9("short", effective=f"2026-11-{day:02d}T09:00:00Z")
            )
            run_pending(engine, fast)
        # a 20 s token is within careloop's 30 s renewal margin, so each request gets a fresh one
        fhir_requests = [
            p for _, p, _ in ehr.requests if p.startswith("/fhir") and "well-known" not in p
        ]
        assert ehr.issued_tokens == len(fhir_requests)
        assert not any(status == 401 for _, _, status in ehr.requests)
        assert len(ehr.resources("Observation")) == 3


def test_circuit_opens_when_the_ehr_keeps_failing(world: World) -> None:
    from sqlmodel import select

    from careloop.services.ehr.models import EhrConnection
    from careloop.workflows.ehr.circuit import CircuitOpen
    from careloop.workflows.ehr.push import push

    world.settings = world.settings.model_copy(
        update={"ehr_circuit_failures": 2, "ehr_circuit_seconds": 60}
    )
    world.ehr_patient("c-1")
    _report(world, "c-1")
    world.ehr.inject(Fault.HTTP_503, count=10, method="POST", path_prefix="/fhir")
    world.drain()
    world.drain()
    served = len(world.ehr.requests)
    with session_scope(world.engine) as session:
        connection = session.exec(
            select(EhrConnection).where(
                EhrConnection.client_id == f"careloop-{world.caller.tenant}"
            )
        ).one()
        assert connection.consecutive_failures == 2
        assert connection.circuit_open_until is not None
        with pytest.raises(CircuitOpen):
            push(session, world.settings, connection, "any", ["Observation/x"])
    world.drain()  # the open circuit spares the EHR
    assert len(world.ehr.requests) == served
    with session_scope(world.engine) as session:
        connection = session.exec(
            select(EhrConnection).where(
                EhrConnection.client_id == f"careloop-{world.caller.tenant}"
            )
        ).one()
        connection.circuit_open_until = None  # the cool-down has passed
        session.add(connection)
    world.ehr.clear_faults()
    world.drain()
    assert len(world.of_type("Observation")) == 1
