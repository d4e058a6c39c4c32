"""Several pending pushes to one EHR go out in one transaction Bundle, each exactly once: a
refused report is split off and kept for replay, a lost answer duplicates nothing on the retry,
and two workers never claim the same push. The relay publishes one push per connection and
its run drains the connection; a failed round's pushes are due again at once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from ehr_server import Fault, TestEHR
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from sqlmodel import Session
from support.clients import BASE_URL, Caller, make_caller
from support.ehr import connect_ehr
from support.reports import phq9

from careloop.integrations.ehr.fhir_client import EhrError
from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection, EhrFailure, EhrWrite, PatientLink
from careloop.services.ehr.pushes import schedule_push
from careloop.services.ehr.vocabulary import LinkState, WriteState
from careloop.services.outbox.models import OutboxMessage
from careloop.services.settings import Settings
from careloop.services.unit_of_work import commit, rollback, session_scope
from careloop.workflows.ehr import drain_slots
from careloop.workflows.ehr import push as push_module
from careloop.workflows.ehr.claim import Pending, claim_pending
from careloop.workflows.ehr.push import drain
from careloop.workflows.handlers import HANDLERS
from careloop.workflows.inline import run_pending
from careloop.workflows.outbox import complete, message_id, relay, start
from careloop.workflows.routing import router_for
from careloop.workflows.web import create_app

APP_SYSTEM = "https://app.example/patients"
OBS_SID = "https://careloop.io/fhir/sid/observation"


@dataclass
class World:
    """careloop, an app caller and the EHR, connected."""

    api: TestClient
    caller: Caller
    ehr: TestEHR
    engine: Engine
    settings: Settings

    def drain(self) -> int:
        return run_pending(self.engine, self.settings)

    def patient(self, value: str) -> dict[str, Any]:
        return self.ehr.seed(
            {
                "resourceType": "Patient",
                "identifier": [{"system": APP_SYSTEM, "value": value}],
                "active": True,
            }
        )

    def report(self, value: str, day: int) -> dict[str, Any]:
        response = self.caller.post(
            "/v1/symptom-reports",
            json=phq9(value, [1, 1, 0, 1, 0, 0, 1, 0, 0], f"2026-11-{day:02d}T09:00:00Z"),
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def connection(self, session: Session) -> EhrConnection:
        client_id = f"careloop-{self.caller.tenant}"
        query = select(EhrConnection).where(EhrConnection.client_id == client_id)  # type: ignore[arg-type]
        return session.execute(query).scalars().one()

    def writes(self, session: Session) -> list[EhrWrite]:
        query = select(EhrWrite).where(EhrWrite.connection_id == self.connection(session).id)  # type: ignore[arg-type]
        return list(session.execute(query).scalars().all())

    def open_pushes(self) -> int:
        return len(self.open_push_times())

    def open_push_times(self) -> list[datetime]:
        """When each open push to the connection is due."""
        with session_scope(self.engine) as session:
            connection = self.connection(session)
            rows = session.execute(
                select(OutboxMessage.available_at, OutboxMessage.payload).where(  # type: ignore[call-overload]
                    OutboxMessage.tenant_id == connection.tenant_id,
                    OutboxMessage.task == "resources.changed",
                    OutboxMessage.completed_at.is_(None),  # type: ignore[union-attr]
                )
            ).all()
        return [
            at if at.tzinfo else at.replace(tzinfo=UTC)
            for at, payload in rows
            if orjson.loads(payload)["connection_id"] == connection.id
        ]

    def bundle_posts(self) -> int:
        return sum(1 for m, p, _ in self.ehr.requests if m == "POST" and p == "/fhir")

    def observations_by_identifier(self) -> Counter[str]:
        return Counter(
            i["value"]
            for o in self.ehr.resources("Observation")
            for i in o.get("identifier", [])
            if i.get("system", "").startswith(OBS_SID)
        )


@pytest.fixture
def world(settings: Settings, engine: Engine) -> Iterator[World]:
    # A timeout well past the EHR's answer on a busy machine: these tests inject their faults.
    fast = settings.model_copy(update={"ehr_timeout_seconds": 10.0, "ehr_circuit_failures": 100})
    with TestEHR() as ehr, TestClient(create_app(fast, engine), base_url=BASE_URL) as api:
        caller = make_caller(api, engine)
        connect_ehr(api, engine, fast, caller, ehr)
        yield World(api, caller, ehr, engine, fast)


def _linked(world: World, values: list[str]) -> None:
    """Each patient's first report, written: the patients are linked."""
    for value in values:
        world.patient(value)
        world.report(value, 1)
    world.drain()
    assert len(world.ehr.resources("Observation")) == len(values)


def test_many_reports_of_several_patients_go_in_one_bundle_exactly_once(world: World) -> None:
    patients = [f"b-{n}" for n in range(4)]
    _linked(world, patients)
    posts = world.bundle_posts()
    for day in (2, 3, 4):
        for value in patients:
            world.report(value, day)
    world.drain()
    assert world.bundle_posts() - posts < 12  # fewer Bundles than reports: here one
    assert world.bundle_posts() - posts == 1
    assert len(world.ehr.resources("Observation")) == 16
    assert set(world.observations_by_identifier().values()) == {1}
    assert len(world.ehr.resources("QuestionnaireResponse")) == 16
    assert len(world.ehr.resources("Provenance")) == 16
    assert world.open_pushes() == 0
    subjects = Counter(o["subject"]["reference"] for o in world.ehr.resources("Observation"))
    assert sorted(subjects.values()) == [4, 4, 4, 4]  # each in its own patient's chart
    with session_scope(world.engine) as session:
        rows = world.writes(session)
        assert {r.state for r in rows} == {WriteState.WRITTEN}
        assert all(r.ehr_reference for r in rows)
    world.drain()  # nothing left: no Bundle sent again
    assert world.bundle_posts() - posts == 1


def test_a_refused_report_is_split_off_kept_for_replay_and_the_rest_land(world: World) -> None:
    good = ["g-1", "g-2", "g-3"]
    _linked(world, good)
    ghost = world.report("ghost", 1)["patient"].split("/")[1]
    world.drain()  # no EHR Patient carries the identifier: unlinked, waiting
    with session_scope(world.engine) as session:
        connection = world.connection(session)
        link = session.get(PatientLink, (connection.id, ghost))
        assert link is not None and link.state == LinkState.UNLINKED
        link.state = LinkState.LINKED
        link.ehr_patient_id = "no-such-patient"  # a wrong link: the EHR refuses the write
        session.add(link)
    posts = world.bundle_posts()
    world.report("g-1", 2)
    world.report("ghost", 2)
    world.report("g-2", 2)
    world.report("g-3", 2)
    world.drain()
    assert 1 < world.bundle_posts() - posts < 8  # refused whole, then split in halves
    assert len(world.ehr.resources("Observation")) == 6
    assert set(world.observations_by_identifier().values()) == {1}
    assert world.open_pushes() == 0
    with session_scope(world.engine) as session:
        connection = world.connection(session)
        query = select(EhrFailure).where(EhrFailure.connection_id == connection.id)  # type: ignore[arg-type]
        [failure] = session.execute(query).scalars().all()
        assert failure.patient_id == ghost and failure.status_code == 422
        assert "Patient" in failure.reason
        failed = [w for w in world.writes(session) if w.state == WriteState.FAILED]
        assert {w.patient_id for w in failed} == {ghost}
        # The operator fixes the link and replays: the refused report lands, once.
        chart = world.ehr.seed({"resourceType": "Patient", "active": True})
        link = session.get(PatientLink, (failure.connection_id, ghost))
        assert link is not None
        link.ehr_patient_id = chart["id"]
        session.add(link)
        from careloop.services.ehr.failures import replay_failure

        replay_failure(session, failure)
    world.drain()
    assert len(world.ehr.resources("Observation")) == 7
    assert set(world.observations_by_identifier().values()) == {1}


def test_a_lost_answer_to_a_batch_duplicates_nothing_on_the_retry(world: World) -> None:
    patients = ["l-1", "l-2", "l-3"]
    _linked(world, patients)
    for day in (2, 3):
        for value in patients:
            world.report(value, day)
    posts = world.bundle_posts()
    world.ehr.inject(Fault.DROP_AFTER_COMMIT, count=1, method="POST", path_prefix="/fhir")
    # The EHR commits the Bundle and the answer is lost: the pushes are open again, and the
    # retry's conditional creates find what the EHR holds.
    world.drain()
    world.drain()
    assert world.bundle_posts() - posts == 2
    assert world.open_pushes() == 0
    assert len(world.ehr.resources("Observation")) == 9
    assert set(world.observations_by_identifier().values()) == {1}
    assert len(world.ehr.resources("QuestionnaireResponse")) == 9
    assert len(world.ehr.resources("Provenance")) == 9
    ehr_ids = {f"Observation/{o['id']}" for o in world.ehr.resources("Observation")}
    with session_scope(world.engine) as session:
        rows = [w for w in world.writes(session) if w.reference.startswith("Observation/")]
        assert {r.ehr_reference for r in rows} == ehr_ids


def _schedule(engine: Engine, connection_id: str, count: int) -> list[Pending]:
    pushes = [Pending(f"p-{n}", (f"Observation/o-{n}",)) for n in range(count)]
    with session_scope(engine) as session:
        for item in pushes:
            schedule_push(session, "t-claim", connection_id, item.patient_id, list(item.references))
    return pushes


def test_two_workers_never_claim_the_same_push(engine: Engine) -> None:
    conn_a, conn_b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    pushes = _schedule(engine, conn_a, 6)
    _schedule(engine, conn_b, 2)  # another connection's pushes are never taken
    with Session(engine) as first:
        # The running task's own message (p-0) is completed with it, not returned.
        taken = claim_pending(first, conn_a, pushes[0], 2)
        assert [p.patient_id for p in taken] == ["p-1", "p-2"]
        if engine.dialect.name == "postgresql":
            # At the same time: what the first holds is skipped, not waited for.
            with Session(engine) as second:
                other = claim_pending(second, conn_a, Pending("x", ()), 10)
                rollback(second)
            assert [p.patient_id for p in other] == ["p-3", "p-4", "p-5"]
        commit(first)  # on SQLite the second waits for the single writer: it comes after
    with Session(engine) as later:
        rest = claim_pending(later, conn_a, Pending("x", ()), 10)
        rollback(later)
    assert [p.patient_id for p in rest] == ["p-3", "p-4", "p-5"]
    assert not {p.message_id for p in rest} & {p.message_id for p in taken}
    with Session(engine) as session:
        again = claim_pending(session, conn_b, Pending("x", ()), 10)
        rollback(session)
    assert [p.patient_id for p in again] == ["p-0", "p-1"]


def _relay_all(world: World) -> list[tuple[str, dict[str, Any], str]]:
    """Relay every open message of the world's tenant as the API and beat do; what was
    published. (Only its own: earlier tests leave open messages of theirs in the database.)"""
    with session_scope(world.engine) as session:
        tenant_id = world.connection(session).tenant_id
        ids = list(
            session.execute(
                select(OutboxMessage.id).where(  # type: ignore[call-overload]
                    OutboxMessage.tenant_id == tenant_id,
                    OutboxMessage.completed_at.is_(None),  # type: ignore[union-attr]
                )
            ).scalars()
        )
    published: list[tuple[str, dict[str, Any], str]] = []
    relay(
        world.engine,
        lambda task, kwargs, tid: published.append((task, kwargs, tid)),
        ids,
        route=router_for(world.settings),
    )
    return published


def _run(world: World, task: str, kwargs: dict[str, Any], tid: str) -> None:
    """Run one published task's work in this process, as a worker would."""
    message = message_id(tid)
    with session_scope(world.engine) as session:
        assert start(session, message)
        HANDLERS[task].handle(session, world.settings, **kwargs)
        complete(session, message)


def _open_due(world: World) -> tuple[int, int]:
    """Open pushes to the connection: (all, due now)."""
    times = world.open_push_times()
    now = utcnow()
    return len(times), sum(1 for at in times if at <= now)


def test_one_push_is_published_per_connection_and_its_run_drains_the_rest(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    patients = [f"d-{n}" for n in range(3)]
    _linked(world, patients)
    for day in (2, 3):
        for value in patients:
            world.report(value, day)
    published = _relay_all(world)
    pushes = [p for p in published if p[0] == "ehr.push"]
    assert len(pushes) == 1  # six reports, one connection: one task
    assert sum(1 for p in published if p[0] == "observation.evaluate") == 6
    assert _open_due(world) == (6, 0)  # the other five leased with it, not published
    monkeypatch.setattr(push_module, "BATCH_PUSHES", 2)  # Bundles of two reports
    posts = world.bundle_posts()
    _run(world, *pushes[0])
    assert world.bundle_posts() - posts == 3  # one run, every pending push, Bundle by Bundle
    assert world.open_pushes() == 0
    assert len(world.ehr.resources("Observation")) == 9
    assert set(world.observations_by_identifier().values()) == {1}


def test_a_failed_drain_round_gives_its_pushes_back_due_at_once(world: World) -> None:
    patients = [f"f-{n}" for n in range(4)]
    _linked(world, patients)
    for value in patients:
        world.report(value, 2)
    assert [p[0] for p in _relay_all(world)].count("ehr.push") == 1
    assert _open_due(world) == (4, 0)
    world.ehr.inject(Fault.http_503(None), count=1, method="POST", path_prefix="/fhir")
    with Session(world.engine, expire_on_commit=False) as session:
        connection = world.connection(session)
        with pytest.raises(EhrError):
            drain(session, world.settings, connection)
    # The round's pushes are open and due now: the relay publishes them again at once.
    assert _open_due(world) == (4, 4)
    [(task, kwargs, tid)] = [p for p in _relay_all(world) if p[0] == "ehr.push"]
    _run(world, task, kwargs, tid)
    assert world.open_pushes() == 0
    assert len(world.ehr.resources("Observation")) == 8
    assert set(world.observations_by_identifier().values()) == {1}


def test_a_push_finding_its_connections_drain_taken_leaves_the_rest_to_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    patients = [f"s-{n}" for n in range(3)]
    _linked(world, patients)
    for day in (2, 3):
        for value in patients:
            world.report(value, day)
    published = _relay_all(world)
    pushes = [p for p in published if p[0] == "ehr.push"]
    assert len(pushes) == 1, [(p[0], p[1].get("patient_id")) for p in published]
    [(task, kwargs, tid)] = pushes
    monkeypatch.setattr(push_module, "BATCH_PUSHES", 2)
    connection_id = kwargs["connection_id"]
    for _ in range(drain_slots.DRAINS):  # other threads' drains are running
        assert drain_slots.take(connection_id)
    assert not drain_slots.take(connection_id)
    try:
        _run(world, task, kwargs, tid)
    finally:
        for _ in range(drain_slots.DRAINS):
            drain_slots.give_back(connection_id)
    assert world.open_pushes() == 4  # its own Bundle only: the drain takes the others
    with Session(world.engine, expire_on_commit=False) as session:
        assert drain(session, world.settings, world.connection(session)) == 2
    assert world.open_pushes() == 0
    assert set(world.observations_by_identifier().values()) == {1}


def test_a_bundle_leaves_out_the_patient_whose_consent_refuses_and_reads_consents_once(
    world: World, engine: Engine
) -> None:
    from support.consents import deny_all_consent

    from careloop.services.audit.models import AuditRecord

    patients = [f"c-{n}" for n in range(3)]
    _linked(world, patients)
    reports = [world.report(value, 2) for value in patients]
    refused = reports[1]["patient"]
    consent = world.caller.post(
        "/fhir/Consent",
        json=deny_all_consent(refused),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert consent.status_code == 201, consent.text
    consent_reads: list[str] = []

    def note(*args: Any) -> None:
        statement = str(args[2])
        if "fhir_resource" in statement and "patient_id" in statement:
            consent_reads.append(statement)

    posts = world.bundle_posts()
    event.listen(engine, "before_cursor_execute", note)
    try:
        world.drain()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert world.bundle_posts() - posts == 1  # the two others, in one Bundle
    stored = world.observations_by_identifier()
    assert len(stored) == 5 and set(stored.values()) == {1}  # 3 first reports, 2 of the new
    sent = {o["subject"]["reference"] for o in world.ehr.resources("Observation")}
    assert len(sent) == 3  # every patient's first report, linked before the Consent
    assert [s for s in consent_reads if "IN (" in s]  # the Bundle's patients read at once
    with Session(engine) as session:
        audits = session.execute(
            select(AuditRecord.entity, AuditRecord.outcome).where(
                AuditRecord.outcome == "blocked", AuditRecord.entity.startswith(refused)
            )
        ).all()
    assert audits  # the refusal is audited, for that patient only
