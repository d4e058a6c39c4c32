"""Which Celery task reacts to each outbox message, and on which queue it waits.

An event names what happened; its reaction is a task (``workflows.handlers.EVENT_TASKS``). A new
reading goes to the urgent queue when it fires a critical rule by itself (PHQ-9 item 9 above 0,
no history needed to know it), so it never waits behind routine readings; the decision is made
here, when the message is published, so recording a reading needs no knowledge of the rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import orjson
from sqlalchemy import Connection, select, tuple_

from careloop.services.alerts.vocabulary import Severity
from careloop.services.outbox.events import EventType, ReadingTriage
from careloop.services.settings import Settings
from careloop.services.store.models import FhirResource
from careloop.workflows.evaluation import program_for
from careloop.workflows.handlers import EVENT_TASKS, HANDLERS
from careloop.workflows.outbox import Router
from careloop.workflows.rules.engine import PatientContext, evaluate_reading
from careloop.workflows.rules.program import Program

_R = FhirResource.__table__  # type: ignore[attr-defined]


def critical_by_itself(program: Program, observation: dict[str, Any]) -> bool:
    """Whether a reading fires a critical rule on its own (no history needed to know it)."""
    firings = evaluate_reading(program, observation, PatientContext())
    return any(f.severity == Severity.CRITICAL for f in firings)


def _observations(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The readings by their event's ``observation_id`` (an id, or ``RiskAssessment/<id>``)."""
    wanted = [tuple(i.split("/", 1)) if "/" in i else ("Observation", i) for i in ids]
    if not wanted:
        return {}
    query = select(_R.c.resource_type, _R.c.id, _R.c.content).where(
        tuple_(_R.c.resource_type, _R.c.id).in_(wanted)
    )
    return {
        (row.id if row.resource_type == "Observation" else f"{row.resource_type}/{row.id}"): (
            orjson.loads(row.content)
        )
        for row in conn.execute(query)
    }


def event_router(program: Program) -> Router:
    """The router of outbox messages under ``program``: events to their reactions' tasks.

    A message that names no event (work replayed from a dead letter) runs the task it names.
    Of the messages whose task drains a key (``Handler.drains``: an EHR push, its connection),
    only the first per value is published; the rest are covered by its run (None).
    """

    def route(conn: Connection, rows: Sequence[Any]) -> list[str | None]:
        payloads = [orjson.loads(row.payload) for row in rows]
        # Readings triaged when recorded say so; only the others are loaded and judged here.
        readings = [
            str(payload.get("observation_id", ""))
            for row, payload in zip(rows, payloads, strict=True)
            if row.task == EventType.READING_CREATED and not isinstance(payload.get("urgent"), bool)
        ]
        observations = _observations(conn, readings)

        def task(row: Any, payload: dict[str, Any]) -> str:
            if row.task == EventType.READING_CREATED:
                routine, urgent = EVENT_TASKS[EventType.READING_CREATED]
                critical = payload.get("urgent")
                if not isinstance(critical, bool):
                    observation = observations.get(str(payload.get("observation_id", "")))
                    critical = observation is not None and critical_by_itself(program, observation)
                return urgent if critical else routine
            if row.task in EVENT_TASKS:
                return EVENT_TASKS[EventType(row.task)][0]
            return str(row.task)

        names = [task(row, payload) for row, payload in zip(rows, payloads, strict=True)]
        return coalesce(names, payloads)

    return route


def coalesce(names: list[str], payloads: list[dict[str, Any]]) -> list[str | None]:
    """``names`` with None for a message whose work an earlier one's run drains."""
    seen: set[tuple[str, str]] = set()
    out: list[str | None] = []
    for name, payload in zip(names, payloads, strict=True):
        handler = HANDLERS.get(name)
        key = handler.drains if handler is not None else None
        if key is None or not isinstance(payload.get(key), str):
            out.append(name)
            continue
        value = (name, str(payload[key]))
        out.append(None if value in seen else name)
        seen.add(value)
    return out


def triage_for(settings: Settings) -> ReadingTriage:
    """The triage of new readings under the care program of ``settings``."""
    return partial(critical_by_itself, program_for(settings))


def router_for(settings: Settings) -> Router:
    """The router under the care program of ``settings``."""
    return event_router(program_for(settings))
