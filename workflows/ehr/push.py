"""Pushing careloop's resources for one patient into an EHR, as one transaction per push."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import Session, col, select

from careloop.integrations.egress import Disclosure, EgressBlocked
from careloop.integrations.ehr.fhir_client import EhrError
from careloop.integrations.ehr.smart import SmartError
from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection, EhrFailure, EhrWrite, PatientLink
from careloop.services.ehr.vocabulary import LinkState, PushState, WriteState
from careloop.services.settings import Settings
from careloop.services.store.repository import ResourceStore, StoredResource
from careloop.workflows.ehr.bundles import bundle_entries, location_reference, transaction_bundle
from careloop.workflows.ehr.circuit import check_circuit, record_success
from careloop.workflows.ehr.client import ehr_client
from careloop.workflows.ehr.linking import resolve_link

log = logging.getLogger("careloop.ehr")


@dataclass(frozen=True)
class PushResult:
    """What a push did: written references, or why nothing was written."""

    written: list[str]
    state: PushState


def push(
    session: Session,
    settings: Settings,
    connection: EhrConnection,
    patient_id: str,
    references: list[str],
) -> PushResult:
    """Write ``references`` for one patient into the EHR (see ``_push``); a refused token
    request (wrong client id or scopes: a configuration problem) is kept as an EhrFailure."""
    try:
        return _push(session, settings, connection, patient_id, references)
    except SmartError as exc:
        if exc.transient:
            raise
        session.add(
            EhrFailure(
                connection_id=connection.id,
                patient_id=patient_id,
                references=" ".join(references),
                status_code=exc.status or 0,
                reason=str(exc),
            )
        )
        return PushResult([], PushState.REJECTED)


def _push(
    session: Session,
    settings: Settings,
    connection: EhrConnection,
    patient_id: str,
    references: list[str],
) -> PushResult:
    """Write ``references`` for one patient into the EHR as one transaction.

    Conditional creates on careloop's business identifiers (and update-as-create on careloop's
    id for Provenance) make a retry after a lost answer harmless: the EHR keeps one copy.
    Raises EhrError (transient) or SmartError for the caller to retry; records a refused write
    as an EhrFailure.
    """
    check_circuit(connection)
    store = ResourceStore(session, connection.tenant_id)
    stored = store.read_many(references)
    written = {
        w.reference: w
        for w in session.exec(
            select(EhrWrite).where(
                EhrWrite.connection_id == connection.id,
                col(EhrWrite.reference).in_([s.reference for s in stored]),
            )
        ).all()
    }
    todo = [
        s
        for s in stored
        if s.reference not in written
        or written[s.reference].state != WriteState.WRITTEN
        or written[s.reference].version_synced < s.version_id
    ]
    if not todo:
        return PushResult([], PushState.NOTHING)
    with ehr_client(session, settings, connection) as client:
        try:
            link = resolve_link(session, client, connection, patient_id)
        except EgressBlocked:
            return PushResult([], PushState.BLOCKED)
        if link.state != LinkState.LINKED or link.ehr_patient_id is None:
            for item in todo:
                _mark(session, connection, patient_id, item, WriteState.WAITING, None, written)
            return PushResult([], PushState.WAITING)
        all_written = {
            w.reference: w
            for w in session.exec(
                select(EhrWrite).where(
                    EhrWrite.connection_id == connection.id,
                    EhrWrite.patient_id == patient_id,
                    EhrWrite.state == WriteState.WRITTEN,
                )
            ).all()
        }
        entries = bundle_entries(todo, all_written)
        bundle = transaction_bundle(entries, patient_id, link.ehr_patient_id, all_written)
        disclosure = Disclosure(patient_id, tuple(s.reference for s in todo))
        try:
            response = client.request("POST", "", bundle, disclosure=disclosure)
        except EgressBlocked:
            return PushResult([], PushState.BLOCKED)
        except EhrError as exc:
            if exc.transient:
                raise
            session.add(
                EhrFailure(
                    connection_id=connection.id,
                    patient_id=patient_id,
                    references=" ".join(s.reference for s in todo),
                    status_code=exc.status or 0,
                    reason=exc.reason or str(exc),
                )
            )
            for item in todo:
                _mark(session, connection, patient_id, item, WriteState.FAILED, None, written)
            log.warning(
                "EHR %s refused a write for patient %s (%s)",
                connection.name,
                patient_id,
                exc.status,
            )
            return PushResult([], PushState.REJECTED)
    result = []
    for entry, answer in zip(entries, response.get("entry", []), strict=False):
        location = (answer.get("response") or {}).get("location", "")
        ehr_ref = location_reference(location) if location else None
        _mark(session, connection, patient_id, entry.stored, WriteState.WRITTEN, ehr_ref, written)
        result.append(entry.stored.reference)
    return PushResult(result, PushState.WRITTEN)


def push_to_ehr(
    session: Session,
    settings: Settings,
    connection_id: str,
    patient_id: str,
    references: list[str],
) -> PushState:
    """The ``ehr.push`` task's unit of work: push, and close the circuit on success."""
    # Pushes to one EHR run in parallel; pushes for one patient take turns on the patient's link
    # row, so two versions of a resource are never conditionally created at the same moment.
    connection = session.get(EhrConnection, connection_id)
    if connection is None or not connection.active:
        return PushState.INACTIVE
    session.get(PatientLink, (connection_id, patient_id), with_for_update=True)
    result = push(session, settings, connection, patient_id, references)
    if connection.consecutive_failures or connection.circuit_open_until is not None:
        record_success(connection)
        session.add(connection)
    return result.state


def _mark(
    session: Session,
    connection: EhrConnection,
    patient_id: str,
    item: StoredResource,
    state: WriteState,
    ehr_reference: str | None,
    known: dict[str, EhrWrite],
) -> None:
    row = known.get(item.reference) or EhrWrite(
        connection_id=connection.id,
        reference=item.reference,
        patient_id=patient_id,
        state=state,
    )
    row.state = state
    if ehr_reference:
        row.ehr_reference = ehr_reference
    if state == WriteState.WRITTEN:
        row.version_synced = item.version_id
    row.updated_at = utcnow()
    known[item.reference] = row
    session.add(row)
