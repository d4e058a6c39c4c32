"""Judging a reading reads as many rows for a patient with 500 earlier readings as with 50.

Every SELECT the evaluation runs is counted (statements, and the rows each returns, counted by
running it again as ``SELECT count(*)``) on both databases.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event
from support.patient_data import SYSTEM, answers_for

from careloop.services.alerts.models import ProcessedReading
from careloop.services.auth.scopes import Grant, parse_scopes
from careloop.services.auth.tokens import Principal
from careloop.services.db import utcnow
from careloop.services.reports.schemas import SymptomReportIn
from careloop.services.reports.service import ingest_reports
from careloop.services.settings import Settings
from careloop.services.tenancy.service import create_client
from careloop.services.unit_of_work import session_scope
from careloop.workflows.evaluation import evaluate_observation

SCOPE = "system/*.cruds"


@dataclass
class Reads:
    statements: int = 0
    rows: int = 0


def _report(patient: str, instrument: str, when: datetime, **body: Any) -> SymptomReportIn:
    return SymptomReportIn.model_validate(
        {"patient": {"system": SYSTEM, "value": patient}, "instrument": instrument,
         "effective": when, **body}
    )  # fmt: skip


def _history(patient: str, count: int, end: datetime) -> list[SymptomReportIn]:
    """A low mood a day and a PHQ-9 and a GAD-7 a week, ``count`` in all, ending at ``end``."""
    reports: list[SymptomReportIn] = []
    day = 0
    while len(reports) < count:
        when = end - timedelta(days=day)
        reports.append(_report(patient, "mood", when, value=1 + day % 2))
        if day % 7 == 0:
            reports.append(_report(patient, "phq-9", when, answers=answers_for(8 + day % 3, 9)))
            reports.append(_report(patient, "gad-7", when, answers=answers_for(5, 7)))
        day += 1
    return reports[:count]


def _principal(engine: Engine) -> Principal:
    with session_scope(engine) as session:
        client = create_client(session, "bounded", SCOPE, f"bounded-{secrets.token_hex(4)}")
    grant = Grant(tuple(parse_scopes(SCOPE)))
    return Principal(client.client_id, client.tenant_id, SCOPE, grant, 0)


def _ingest(engine: Engine, principal: Principal, reports: list[SymptomReportIn]) -> list[str]:
    """The Observation ids of the reports."""
    ids: list[str] = []
    for start in range(0, len(reports), 250):
        with session_scope(engine) as session:
            for outcome in ingest_reports(session, principal, reports[start : start + 250]):
                assert outcome.status == 201, outcome.as_json()
                ids += [
                    r.removeprefix("Observation/")
                    for r in outcome.resources
                    if r.startswith("Observation/")
                ]
    return ids


@contextlib.contextmanager
def _counted(engine: Engine) -> Iterator[Reads]:
    reads = Reads()

    def count(_conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if not statement.lstrip().upper().startswith("SELECT"):
            return
        reads.statements += 1
        counter = cursor.connection.cursor()
        try:
            counter.execute(f"SELECT count(*) FROM ({statement}) AS counted", parameters)
            reads.rows += int(counter.fetchone()[0])
        finally:
            counter.close()

    event.listen(engine, "after_cursor_execute", count)
    try:
        yield reads
    finally:
        event.remove(engine, "after_cursor_execute", count)


def _reads(engine: Engine, settings: Settings, principal: Principal, observation: str) -> Reads:
    with _counted(engine) as reads, session_scope(engine) as session:
        evaluate_observation(session, settings, principal.tenant_id, observation)
    with session_scope(engine) as session:
        assert session.get(ProcessedReading, observation) is not None
    return reads


def test_evaluation_reads_the_same_rows_after_50_or_500_readings(
    engine: Engine, settings: Settings
) -> None:
    principal = _principal(engine)
    now = utcnow()
    end = now - timedelta(hours=2)
    found: dict[int, dict[str, Reads]] = {}
    for size in (50, 500):
        patient = f"bounded-{size}-{secrets.token_hex(3)}"
        _ingest(engine, principal, _history(patient, size, end))
        found[size] = {}
        for n, (instrument, body) in enumerate(
            [
                ("mood", {"value": 2}),  # a low-mood streak: the days' moods are read
                ("phq-9", {"answers": answers_for(9, 9)}),  # a rise: the baseline is read
                ("gad-7", {"answers": answers_for(4, 7)}),  # no earlier reading is needed
            ]
        ):
            when = now - timedelta(hours=1, minutes=n)
            [observation] = _ingest(engine, principal, [_report(patient, instrument, when, **body)])
            found[size][instrument] = _reads(engine, settings, principal, observation)
    assert found[50] == found[500]
    for instrument, reads in found[500].items():
        assert reads.rows < 40, (instrument, reads)
    assert found[500]["mood"].rows > found[500]["gad-7"].rows  # the streak's days were read
