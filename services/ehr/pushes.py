"""Recording that careloop resources are to go to the connected EHRs."""

from __future__ import annotations

import orjson
from sqlmodel import Session

from careloop.services import telemetry
from careloop.services.db import utcnow
from careloop.services.ehr.service import active_connection_ids
from careloop.services.outbox.events import EventType, ResourcesChanged, payload_of
from careloop.services.outbox.record import record, record_many, written

_CONNECTION = "careloop:connection-id"
"""Stands for the connection's id in a payload the database completes (ids are UUIDs)."""

# One message per active connection and patient, the connections read by the INSERT itself:
# no separate lookup on every report. The payloads go as a binary text array (nothing to escape).
_FAN_OUT = (
    "INSERT INTO outbox_message (tenant_id, task, payload, created_at, available_at, attempts) "
    "SELECT c.tenant_id, %(task)s::text, replace(t.template, %(mark)s::text, c.id), "
    "%(now)s::timestamptz, %(now)s::timestamptz, 0 "
    "FROM ehr_connection AS c CROSS JOIN unnest(%(templates)b::text[]) AS t(template) "
    "WHERE c.tenant_id = %(tenant)s::text AND c.active "
    "RETURNING id"
)
# The same when traced: the messages carry the recording span's traceparent.
_FAN_OUT_TRACED = (
    "INSERT INTO outbox_message "
    "(tenant_id, task, payload, created_at, available_at, attempts, traceparent) "
    "SELECT c.tenant_id, %(task)s::text, replace(t.template, %(mark)s::text, c.id), "
    "%(now)s::timestamptz, %(now)s::timestamptz, 0, %(traceparent)s::text "
    "FROM ehr_connection AS c CROSS JOIN unnest(%(templates)b::text[]) AS t(template) "
    "WHERE c.tenant_id = %(tenant)s::text AND c.active "
    "RETURNING id"
)


def schedule_push(
    session: Session, tenant_id: str, connection_id: str, patient_id: str, references: list[str]
) -> None:
    """Record that one EHR is to get ``references`` (``Type/id``) of a patient."""
    record(session, tenant_id, ResourcesChanged(connection_id, patient_id, tuple(references)))


def resources_changed(session: Session, tenant_id: str, by_patient: dict[str, list[str]]) -> None:
    """Record that every connected EHR is to get these resources (``Type/id`` per patient).

    One statement: on PostgreSQL the INSERT reads the tenant's active connections itself;
    elsewhere they are looked up first.
    """
    if not by_patient:
        return
    if session.get_bind().dialect.name == "postgresql":
        templates = [
            orjson.dumps(payload_of(ResourcesChanged(_CONNECTION, pid, tuple(refs)))).decode()
            for pid, refs in by_patient.items()
        ]
        params = {
            "tenant": tenant_id,
            "task": EventType.RESOURCES_CHANGED.value,
            "mark": _CONNECTION,
            "now": utcnow(),
            "templates": templates,
        }
        trace = telemetry.traceparent()
        if trace is not None:
            params["traceparent"] = trace
        statement = _FAN_OUT if trace is None else _FAN_OUT_TRACED
        rows = session.connection().exec_driver_sql(statement, params).all()
        written(session, [int(r.id) for r in rows])
        return
    events = [
        ResourcesChanged(connection_id, pid, tuple(refs))
        for connection_id in active_connection_ids(session, tenant_id)
        for pid, refs in by_patient.items()
    ]
    record_many(session, tenant_id, events)
