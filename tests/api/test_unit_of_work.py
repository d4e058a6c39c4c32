"""One unit-of-work path: every commit hands its outbox messages on, none bypasses it.

The hand-off is what publishes work right after the commit, so a reaction never waits for beat's
relay (seconds); an admin's patient link once waited for it because its endpoint committed on
its own.
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from support.clients import BASE_URL, make_caller
from support.reports import phq9

from careloop.services.app import create_app
from careloop.services.common.egress import destination_policy
from careloop.services.ehr.models import EhrConnection as EhrConnectionModel
from careloop.services.ehr.models import EhrWrite
from careloop.services.ehr.service import add_connection
from careloop.services.outbox.events import EventType
from careloop.services.outbox.models import OutboxMessage
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope

ROOT = Path(__file__).resolve().parents[2]
CODE = ("services", "workflows", "integrations", "fhir")
THE_ONE_COMMIT = ROOT / "services" / "unit_of_work.py"


def test_nothing_commits_a_session_but_the_unit_of_work() -> None:
    bare = []
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == THE_ONE_COMMIT:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "commit"
                ):
                    bare.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bare == []


@pytest.fixture
def handed_off(settings: Settings, engine: Engine) -> Iterator[tuple[TestClient, list[int]]]:
    """The API with a hand-off that records the ids it is given, as the relay would take them."""
    ids: list[int] = []
    with TestClient(create_app(settings, engine, ids.extend), base_url=BASE_URL) as http:
        yield http, ids


def _names(engine: Engine, ids: list[int]) -> list[str]:
    with Session(engine) as session:
        query = select(OutboxMessage).where(col(OutboxMessage.id).in_(ids))
        return [m.task for m in session.exec(query.order_by(col(OutboxMessage.id))).all()]


def test_a_report_hands_its_reading_on_when_it_commits(
    handed_off: tuple[TestClient, list[int]], engine: Engine
) -> None:
    http, ids = handed_off
    caller = make_caller(http, engine)
    assert caller.post("/v1/symptom-reports", json=phq9("uow-1", [1] * 9)).status_code == 201
    assert _names(engine, ids) == [EventType.READING_CREATED]


def test_a_patient_link_hands_the_waiting_writes_on_when_it_commits(
    handed_off: tuple[TestClient, list[int]], engine: Engine, settings: Settings
) -> None:
    http, ids = handed_off
    caller = make_caller(http, engine)
    admin = make_caller(http, engine, scope="careloop/admin system/*.rs", tenant=caller.tenant)
    report = caller.post("/v1/symptom-reports", json=phq9("uow-link", [1] * 9)).json()
    patient_id = report["patient"].removeprefix("Patient/")
    with session_scope(engine) as session:
        connection = add_connection(
            session,
            "hospital",
            f"https://ehr-{uuid.uuid4().hex[:8]}.example/fhir",
            "c",
            "system/*.rs",
            caller.tenant,
            destinations=destination_policy(settings),
        )
        session.add(
            EhrWrite(
                connection_id=connection.id,
                reference=report["resources"][0],
                patient_id=patient_id,
                state="waiting",
            )
        )
    ids.clear()
    link = admin.post(
        "/admin/patient-links",
        json={"ehr": "hospital", "patient": report["patient"], "ehr_patient": "Patient/chart-1"},
    )
    assert link.status_code == 201, link.text
    assert _names(engine, ids) == [EventType.RESOURCES_CHANGED]


def test_a_batch_schedules_one_push_per_active_connection_and_patient(
    handed_off: tuple[TestClient, list[int]], engine: Engine, settings: Settings
) -> None:
    import orjson

    from careloop.services.ehr.service import remove_connection

    http, ids = handed_off
    caller = make_caller(http, engine)
    connections = []
    with session_scope(engine) as session:
        for name in ("north", "south", "gone"):
            connections.append(
                add_connection(
                    session,
                    name,
                    f"https://ehr-{uuid.uuid4().hex[:8]}.example/fhir",
                    "c",
                    "system/*.rs",
                    caller.tenant,
                    destinations=destination_policy(settings),
                ).id
            )
    with session_scope(engine) as session:
        gone = session.get(EhrConnectionModel, connections[2])
        assert gone is not None
        remove_connection(session, gone)
    ids.clear()
    reports = [phq9(f"fan-{n}", [1] * 9) for n in range(3)]
    results = caller.post("/v1/symptom-reports/batch", json={"reports": reports}).json()
    assert [r["status"] for r in results["results"]] == [201] * 3
    with Session(engine) as session:
        query = select(OutboxMessage).where(
            col(OutboxMessage.id).in_(ids), OutboxMessage.task == EventType.RESOURCES_CHANGED
        )
        pushes = [orjson.loads(m.payload) for m in session.exec(query).all()]
    expected = {
        (connection, r["patient"].removeprefix("Patient/"), tuple(r["resources"]))
        for connection in connections[:2]
        for r in results["results"]
    }
    assert len(pushes) == 6
    assert {(p["connection_id"], p["patient_id"], tuple(p["references"])) for p in pushes} == (
        expected
    )
