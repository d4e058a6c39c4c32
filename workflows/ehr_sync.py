"""Syncing with EHRs: link patients, write careloop's resources in once, read care plans out."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from careloop.integrations.egress import Disclosure, EgressBlocked
from careloop.integrations.ehr.fhir_client import EhrError, FhirClient
from careloop.integrations.ehr.smart import SmartError, discover, tokens
from careloop.services.common.egress import egress_client
from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection, EhrFailure, EhrWrite, PatientLink
from careloop.services.ehr.service import active_connection_ids
from careloop.services.keys.service import signing_key
from careloop.services.patients.models import PatientIdentifier
from careloop.services.settings import Settings
from careloop.services.store.repository import ResourceStore, StoredResource
from careloop.workflows.outbox import enqueue

log = logging.getLogger("careloop.ehr")
PUSH_TASK = "ehr.push"
CARELOOP_SID = "https://careloop.io/fhir/sid/"
_NS = uuid.UUID("4b0c58a4-2f2b-5d1e-9a57-6f2f0e7c1c11")


def resources_changed(session: Session, tenant_id: str, by_patient: dict[str, list[str]]) -> None:
    """Schedule writing careloop resources (``Type/id`` per patient) into every connected EHR."""
    if not by_patient:
        return
    for connection_id in active_connection_ids(session, tenant_id):
        for patient_id, references in by_patient.items():
            payload = {
                "connection_id": connection_id,
                "patient_id": patient_id,
                "references": references,
            }
            enqueue(session, tenant_id, PUSH_TASK, payload)


@contextmanager
def ehr_client(
    session: Session, settings: Settings, connection: EhrConnection
) -> Iterator[FhirClient]:
    """A FHIR client for ``connection`` with SMART Backend Services tokens.

    Every request (discovery, tokens, reads, writes) goes through the egress client: the
    process's pooled connections, each to an address the egress rules allow.
    """
    http = egress_client(session, settings, connection.tenant_id, "ehr", "careloop-worker")
    if connection.token_endpoint is None:
        connection.token_endpoint = discover(http, connection.fhir_base_url).token_endpoint
        session.add(connection)
    token_endpoint = connection.token_endpoint

    def get_token(force: bool) -> str:
        if force:
            tokens.invalidate(connection.id)
        return tokens.token(
            connection.id,
            http,
            token_endpoint,
            connection.client_id,
            connection.scope,
            connection.alg,
            lambda alg: signing_key(session, settings.secret_key, alg),
        )

    yield FhirClient(connection.fhir_base_url, http, get_token)


# -- linking -----------------------------------------------------------------------------------


def _identifiers(session: Session, tenant_id: str, patient_id: str) -> list[tuple[str, str]]:
    rows = session.exec(
        select(PatientIdentifier).where(
            PatientIdentifier.tenant_id == tenant_id, PatientIdentifier.patient_id == patient_id
        )
    ).all()
    return [(r.system, r.value) for r in rows]


def resolve_link(
    session: Session, client: FhirClient, connection: EhrConnection, patient_id: str
) -> PatientLink:
    """The patient's link, searching the EHR by identifier unless already linked.

    Exactly one EHR Patient carrying one of the patient's identifiers links; none leaves the
    patient unlinked, several ambiguous. careloop never guesses. The search carries the
    patient's identifiers to the EHR, so it passes consent and audit (EgressBlocked).
    """
    link = session.get(PatientLink, (connection.id, patient_id))
    if link is not None and link.state == "linked":
        return link
    matches: set[str] = set()
    for system, value in _identifiers(session, connection.tenant_id, patient_id):
        bundle = client.request(
            "GET",
            "Patient",
            params={"identifier": f"{system}|{value}"},
            disclosure=Disclosure(patient_id),
        )
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            if resource.get("resourceType") == "Patient" and resource.get("id"):
                matches.add(str(resource["id"]))
    if link is None:
        link = PatientLink(connection_id=connection.id, patient_id=patient_id, state="unlinked")
    link.state = {0: "unlinked", 1: "linked"}.get(len(matches), "ambiguous")
    link.ehr_patient_id = next(iter(matches)) if len(matches) == 1 else None
    link.method = "identifier"
    link.updated_at = utcnow()
    session.add(link)
    return link


def link_manually(
    session: Session, connection: EhrConnection, patient_id: str, ehr_patient_id: str
) -> PatientLink:
    """Link a patient to an EHR Patient by hand, and schedule what was waiting for it."""
    link = session.get(PatientLink, (connection.id, patient_id)) or PatientLink(
        connection_id=connection.id, patient_id=patient_id, state="linked"
    )
    link.state, link.ehr_patient_id, link.method = "linked", ehr_patient_id, "manual"
    link.updated_at = utcnow()
    session.add(link)
    waiting = session.exec(
        select(EhrWrite).where(
            EhrWrite.connection_id == connection.id,
            EhrWrite.patient_id == patient_id,
            EhrWrite.state != "written",
        )
    ).all()
    if waiting:
        enqueue(
            session,
            connection.tenant_id,
            PUSH_TASK,
            {
                "connection_id": connection.id,
                "patient_id": patient_id,
                "references": [w.reference for w in waiting],
            },
        )
    return link


# -- writing -----------------------------------------------------------------------------------


def _business_identifier(resource: dict[str, Any]) -> tuple[str, str] | None:
    identifiers = resource.get("identifier", [])
    for ident in [identifiers] if isinstance(identifiers, dict) else identifiers:
        if str(ident.get("system", "")).startswith(CARELOOP_SID) and ident.get("value"):
            return str(ident["system"]), str(ident["value"])
    return None


def _urn(reference: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, reference)}"


def _rewrite(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_rewrite(v, refs) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _rewrite(v, refs) for k, v in value.items()}
    reference = out.get("reference")
    if isinstance(reference, str) and "/" in reference and not reference.startswith("urn:"):
        if reference in refs:
            out["reference"] = refs[reference]
        else:
            # Something the EHR does not have (a careloop-only resource): keep what it was.
            del out["reference"]
            out.setdefault("display", f"careloop {reference.split('/')[0]}")
    return out


@dataclass(frozen=True)
class _Entry:
    stored: StoredResource
    request: dict[str, str]


def _entries(stored: list[StoredResource], written: dict[str, EhrWrite]) -> list[_Entry]:
    entries = []
    for item in stored:
        resource = item.as_dict()
        ident = _business_identifier(resource)
        previous = written.get(item.reference)
        if item.resource_type == "Provenance" or ident is None:
            # R4 Provenance has no identifier: update-as-create on careloop's stable id.
            request = {"method": "PUT", "url": f"{item.resource_type}/{item.id}"}
        elif previous is not None and previous.state == "written":
            request = {
                "method": "PUT",
                "url": f"{item.resource_type}?identifier={ident[0]}|{ident[1]}",
            }
        else:
            request = {
                "method": "POST",
                "url": item.resource_type,
                "ifNoneExist": f"identifier={ident[0]}|{ident[1]}",
            }
        entries.append(_Entry(item, request))
    return entries


def _bundle(
    entries: list[_Entry], patient_id: str, ehr_patient_id: str, written: dict[str, EhrWrite]
) -> dict[str, Any]:
    refs = {f"Patient/{patient_id}": f"Patient/{ehr_patient_id}"}
    refs.update({w.reference: w.ehr_reference for w in written.values() if w.ehr_reference})
    refs.update({e.stored.reference: _urn(e.stored.reference) for e in entries})
    bundle_entries = []
    for entry in entries:
        resource = _rewrite(entry.stored.as_dict(), refs)
        resource.pop("meta", None)
        if entry.request["method"] == "POST" or "?" in entry.request["url"]:
            resource.pop("id", None)
        bundle_entries.append(
            {
                "fullUrl": _urn(entry.stored.reference),
                "resource": resource,
                "request": entry.request,
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": bundle_entries}


def _location_reference(location: str) -> str:
    parts = location.split("/fhir/")[-1].split("/")
    return "/".join(parts[-4:-2]) if "_history" in parts else "/".join(parts[-2:])


class CircuitOpen(Exception):
    """The connection's circuit is open: the EHR failed repeatedly; try after ``retry_in``."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"circuit open for {retry_in:.0f}s")
        self.retry_in = retry_in


def check_circuit(connection: EhrConnection) -> None:
    """Raise CircuitOpen while the connection's circuit is open."""
    if connection.circuit_open_until is not None:
        remaining = (connection.circuit_open_until - utcnow()).total_seconds()
        if remaining > 0:
            raise CircuitOpen(remaining)


def record_failure(settings: Settings, connection: EhrConnection, reason: str) -> None:
    """Count a transient failure; enough in a row open the circuit."""
    connection.consecutive_failures += 1
    connection.last_error = reason[:300]
    if connection.consecutive_failures >= settings.ehr_circuit_failures:
        connection.circuit_open_until = utcnow() + timedelta(seconds=settings.ehr_circuit_seconds)


def record_success(connection: EhrConnection) -> None:
    """Close the circuit."""
    connection.consecutive_failures = 0
    connection.circuit_open_until = None
    connection.last_success_at = utcnow()


@dataclass(frozen=True)
class PushResult:
    """What a push did: written references, or why nothing was written."""

    written: list[str]
    state: str
    """written | waiting | nothing | blocked | rejected"""


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
        return PushResult([], "rejected")


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
        or written[s.reference].state != "written"
        or written[s.reference].version_synced < s.version_id
    ]
    if not todo:
        return PushResult([], "nothing")
    with ehr_client(session, settings, connection) as client:
        try:
            link = resolve_link(session, client, connection, patient_id)
        except EgressBlocked:
            return PushResult([], "blocked")
        if link.state != "linked" or link.ehr_patient_id is None:
            for item in todo:
                _mark(session, connection, patient_id, item, "waiting", None, written)
            return PushResult([], "waiting")
        all_written = {
            w.reference: w
            for w in session.exec(
                select(EhrWrite).where(
                    EhrWrite.connection_id == connection.id,
                    EhrWrite.patient_id == patient_id,
                    EhrWrite.state == "written",
                )
            ).all()
        }
        entries = _entries(todo, all_written)
        bundle = _bundle(entries, patient_id, link.ehr_patient_id, all_written)
        disclosure = Disclosure(patient_id, tuple(s.reference for s in todo))
        try:
            response = client.request("POST", "", bundle, disclosure=disclosure)
        except EgressBlocked:
            return PushResult([], "blocked")
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
                _mark(session, connection, patient_id, item, "failed", None, written)
            log.warning(
                "EHR %s refused a write for patient %s (%s)",
                connection.name,
                patient_id,
                exc.status,
            )
            return PushResult([], "rejected")
    result = []
    for entry, answer in zip(entries, response.get("entry", []), strict=False):
        location = (answer.get("response") or {}).get("location", "")
        ehr_ref = _location_reference(location) if location else None
        _mark(session, connection, patient_id, entry.stored, "written", ehr_ref, written)
        result.append(entry.stored.reference)
    return PushResult(result, "written")


def push_to_ehr(
    session: Session,
    settings: Settings,
    connection_id: str,
    patient_id: str,
    references: list[str],
) -> str:
    """The ``ehr.push`` task's unit of work: push, and close the circuit on success."""
    # Pushes to one EHR run in parallel; pushes for one patient take turns on the patient's link
    # row, so two versions of a resource are never conditionally created at the same moment.
    connection = session.get(EhrConnection, connection_id)
    if connection is None or not connection.active:
        return "inactive"
    session.get(PatientLink, (connection_id, patient_id), with_for_update=True)
    result = push(session, settings, connection, patient_id, references)
    if connection.consecutive_failures or connection.circuit_open_until is not None:
        record_success(connection)
        session.add(connection)
    return result.state


def connection_failed(
    session: Session, settings: Settings, connection_id: str, reason: str
) -> None:
    """Record a transient failure of a connection (in its own unit of work)."""
    connection = session.get(EhrConnection, connection_id, with_for_update=True)
    if connection is not None:
        record_failure(settings, connection, reason)
        session.add(connection)


def _mark(
    session: Session,
    connection: EhrConnection,
    patient_id: str,
    item: StoredResource,
    state: str,
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
    if state == "written":
        row.version_synced = item.version_id
    row.updated_at = utcnow()
    known[item.reference] = row
    session.add(row)


def failure_json(failure: EhrFailure) -> dict[str, Any]:
    """An operator's view of one refused write (ids, status and the EHR's reason)."""
    return {
        "id": failure.id,
        "patient": f"Patient/{failure.patient_id}",
        "references": failure.references.split(),
        "status": failure.status_code,
        "reason": failure.reason,
        "failed_at": failure.failed_at.isoformat(),
        "replayed_at": failure.replayed_at.isoformat() if failure.replayed_at else None,
    }


def replay_failure(session: Session, failure: EhrFailure) -> None:
    """Queue a refused write again (after the cause was fixed)."""
    connection = session.get(EhrConnection, failure.connection_id)
    assert connection is not None
    for reference in failure.references.split():
        row = session.get(EhrWrite, (failure.connection_id, reference))
        if row is not None and row.state == "failed":
            row.state = "waiting"
            session.add(row)
    enqueue(
        session,
        connection.tenant_id,
        PUSH_TASK,
        {
            "connection_id": failure.connection_id,
            "patient_id": failure.patient_id,
            "references": failure.references.split(),
        },
    )
    failure.replayed_at = utcnow()
    session.add(failure)
