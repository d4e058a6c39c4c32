"""The database decides what export work is done: a killed worker resumes, nothing twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bulk_helpers import ASYNC, chunk, everything, finish, ids, job_of, kick_off, manifest
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from support.clients import Caller
from support.outbox import tenant_messages
from support.reports import phq9

from careloop.services.bulk import ExportFile, ExportJob, JobState, prune_exports
from careloop.services.db import utcnow
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.bulk_export import run_chunk
from careloop.workflows.inline import run_pending


class WorkerKilled(Exception):
    """Stands for a worker dying after its chunk's work, before the commit."""


def _reports(caller: Caller, *values: str) -> None:
    for value in values:
        assert caller.post("/v1/symptom-reports", json=phq9(value)).status_code == 201


def _files(engine: Engine, job: str) -> list[ExportFile]:
    with Session(engine) as session:
        query = select(ExportFile).where(col(ExportFile.job_id) == job)
        return list(session.exec(query).all())


def test_a_worker_killed_mid_chunk_leaves_nothing_and_the_rerun_writes_each_line_once(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    _reports(exporter, "k-1", "k-2", "k-3", "k-4", "k-5")
    kickoff = kick_off(exporter, _type="Patient,Observation")
    job = job_of(kickoff)
    assert chunk(engine, bulk_settings, job) is False
    for _ in range(3):  # three deaths in a row, each after writing its chunk
        with pytest.raises(WorkerKilled), session_scope(engine) as session:
            run_chunk(session, bulk_settings, job)
            raise WorkerKilled
    assert len(_files(engine, job)) == 1  # only the committed chunk's file
    finish(engine, bulk_settings, job)
    exported = everything(exporter, manifest(exporter, kickoff))
    assert len(exported["Patient"]) == len(set(ids(exported["Patient"]))) == 5
    assert len(exported["Observation"]) == len(set(ids(exported["Observation"]))) == 5
    numbers = sorted((f.resource_type, f.number) for f in _files(engine, job))
    assert numbers == [("Observation", n) for n in (1, 2, 3)] + [("Patient", n) for n in (1, 2, 3)]


def test_the_outbox_runs_an_export_chunk_by_chunk_and_then_completes_its_message(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    _reports(exporter, "o-1", "o-2", "o-3")
    kickoff = kick_off(exporter, _type="Patient")
    job = job_of(kickoff)
    assert run_pending(engine, bulk_settings, rounds=1) >= 1  # one chunk per run of the task
    [message] = [
        m for m in tenant_messages(engine, exporter.tenant) if m.task == "export.requested"
    ]
    assert message.completed_at is None and message.available_at <= utcnow()  # due again now
    with Session(engine) as session:
        stored = session.get(ExportJob, job)
        assert stored is not None and stored.state == JobState.RUNNING
        assert (stored.type_index, stored.last_seq > 0) == (0, True)
    assert len(_files(engine, job)) == 1
    polled = exporter.get(f"/fhir/$export-status/{job}")
    assert (polled.status_code, polled.headers["x-progress"]) == (202, "0/1 types")
    run_pending(engine, bulk_settings)  # the embedded runner goes on to the end
    [message] = [
        m for m in tenant_messages(engine, exporter.tenant) if m.task == "export.requested"
    ]
    assert message.completed_at is not None
    with Session(engine) as session:
        stored = session.get(ExportJob, job)
        assert stored is not None and stored.state == JobState.COMPLETED
    assert len(everything(exporter, manifest(exporter, kickoff))["Patient"]) == 3


def test_a_failed_job_answers_500_with_an_operation_outcome(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    kickoff = kick_off(exporter, _type="Patient")
    with session_scope(engine) as session:
        stored = session.get(ExportJob, job_of(kickoff))
        assert stored is not None
        stored.types = "Patient"
        stored.patients = "not json"  # as if a Group export's members were unreadable
        stored.level = "group"
        session.add(stored)
    assert chunk(engine, bulk_settings, job_of(kickoff)) is True
    response = exporter.get(f"/fhir/$export-status/{job_of(kickoff)}")
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    with Session(engine) as session:
        failed = session.get(ExportJob, job_of(kickoff))
        assert failed is not None and failed.state == JobState.FAILED and failed.error


def test_expired_exports_are_404_and_pruned_with_their_files(
    exporter: Caller, engine: Engine, bulk_settings: Settings
) -> None:
    _reports(exporter, "e-1")
    kickoff = kick_off(exporter, _type="Patient")
    job = job_of(kickoff)
    finish(engine, bulk_settings, job)
    [entry] = manifest(exporter, kickoff)["output"]
    with session_scope(engine) as session:
        assert prune_exports(session) == 0 or session.get(ExportJob, job) is not None
        stored = session.get(ExportJob, job)
        assert stored is not None
        stored.expires_at = utcnow() - timedelta(seconds=1)
        session.add(stored)
    assert exporter.get(f"/fhir/$export-status/{job}").status_code == 404
    assert exporter.get(entry["url"].removeprefix("http://testserver")).status_code == 404
    assert chunk(engine, bulk_settings, job) is True
    with session_scope(engine) as session:
        assert prune_exports(session) >= 1
        assert session.get(ExportJob, job) is None
    assert _files(engine, job) == []
    # an expired job no longer counts against the client's limit
    for _ in range(3):
        assert exporter.get("/fhir/$export", headers=ASYNC).status_code == 202
