"""Pushing careloop's resources into an EHR: several pending pushes in one transaction Bundle."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col

from careloop.integrations.egress import EHR_SYNC, Disclosure, EgressBlocked, destination_label
from careloop.integrations.egress.gate import Outcome
from careloop.integrations.ehr.fhir_client import EhrError, FhirClient
from careloop.integrations.ehr.smart import SmartError
from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection, EhrFailure, EhrWrite, PatientLink
from careloop.services.ehr.vocabulary import LinkState, PushState, WriteState
from careloop.services.metrics.recording import ehr_pushes, ehr_pushes_failed
from careloop.services.outbox.models import OutboxMessage
from careloop.services.settings import Settings
from careloop.services.store.models import FhirResource
from careloop.services.store.repository import StoredResource
from careloop.services.unit_of_work import commit, rollback
from careloop.workflows.ehr import drain_slots
from careloop.workflows.ehr.bundles import (
    BundleEntry,
    bundle_entries,
    location_reference,
    referenced,
    transaction_bundle,
)
from careloop.workflows.ehr.circuit import check_circuit, record_success
from careloop.workflows.ehr.claim import Pending, claim_pending, lock_patients, reopen
from careloop.workflows.ehr.client import ehr_client
from careloop.workflows.ehr.linking import resolve_link

log = logging.getLogger("careloop.ehr")
_R = FhirResource.__table__  # type: ignore[attr-defined]
_O = OutboxMessage.__table__  # type: ignore[attr-defined]

BATCH_PUSHES = 50
"""At most this many pending pushes (reports) of a connection go out in one Bundle."""
BATCH_ENTRIES = 300
"""A batch stops taking pushes once it holds this many resources."""


@dataclass(frozen=True)
class PushResult:
    """What a push did: written references, or why nothing was written."""

    written: list[str]
    state: PushState


@dataclass
class _Part:
    """The resources one push is to write, and the patient's chart they go to."""

    index: int
    patient_id: str
    ehr_patient_id: str
    items: list[StoredResource]
    entries: list[BundleEntry] = field(default_factory=list)


def push(
    session: Session,
    settings: Settings,
    connection: EhrConnection,
    patient_id: str,
    references: list[str],
) -> PushResult:
    """Write ``references`` for one patient into the EHR (see ``push_batch``)."""
    return push_batch(session, settings, connection, [Pending(patient_id, tuple(references))])[0]


def push_batch(
    session: Session, settings: Settings, connection: EhrConnection, pushes: list[Pending]
) -> list[PushResult]:
    """Write several pushes into the EHR, as few transaction Bundles as the EHR accepts.

    Conditional creates on careloop's business identifiers (and update-as-create on careloop's
    id for Provenance) make a retry after a lost answer harmless: the EHR keeps one copy. A
    refused Bundle is split in halves until the refused push stands alone; it is kept as an
    EhrFailure with the EHR's reason, and the others are written. Raises EhrError (transient)
    or SmartError for the caller to retry; a refused token request (wrong client id or scopes:
    a configuration problem) is kept as an EhrFailure for every push.
    """
    try:
        results = _push_batch(session, settings, connection, pushes)
    except SmartError as exc:
        if exc.transient:
            ehr_pushes_failed(connection.id, len(pushes))
            raise
        for item in pushes:
            _failure(session, connection, item.patient_id, item.references, exc.status, str(exc))
        results = [PushResult([], PushState.REJECTED) for _ in pushes]
    except EhrError as exc:
        if exc.transient:
            ehr_pushes_failed(connection.id, len(pushes))
        raise
    ehr_pushes(session, connection.id, (r.state for r in results))
    return results


def _push_batch(
    session: Session, settings: Settings, connection: EhrConnection, pushes: list[Pending]
) -> list[PushResult]:
    check_circuit(connection)
    stored = _read_current(session, connection.tenant_id, (r for p in pushes for r in p.references))
    parsed = {ref: item.as_dict() for ref, item in stored.items()}
    wanted: set[str] = set(stored)
    for resource in parsed.values():
        referenced(resource, wanted)
    written = {
        w.reference: w
        for w in session.execute(
            select(EhrWrite).where(
                col(EhrWrite.connection_id) == connection.id,
                col(EhrWrite.reference).in_(sorted(wanted)),
            )
        )
        .scalars()
        .all()
    }
    results = [PushResult([], PushState.NOTHING) for _ in pushes]
    todo: list[tuple[int, list[StoredResource]]] = []
    taken: set[str] = set()
    for index, item in enumerate(pushes):
        items = []
        for ref in item.references:
            current = stored.get(ref)
            if current is None or ref in taken:
                continue
            taken.add(ref)  # a resource in two pushes goes once, in the first
            previous = written.get(ref)
            if (
                previous is None
                or previous.state != WriteState.WRITTEN
                or previous.version_synced < current.version_id
            ):
                items.append(current)
        if items:
            todo.append((index, items))
    if not todo:
        return results
    known = _load_links(session, connection.id, {pushes[index].patient_id for index, _ in todo})
    with ehr_client(session, settings, connection) as client:
        parts: list[_Part] = []
        links: dict[str, PatientLink | None] = {}
        for index, items in todo:
            patient_id = pushes[index].patient_id
            if patient_id not in links:
                try:
                    links[patient_id] = resolve_link(
                        session, client, connection, patient_id, known.get(patient_id)
                    )
                except EgressBlocked:
                    links[patient_id] = None
            link = links[patient_id]
            if link is None:
                results[index] = PushResult([], PushState.BLOCKED)
            elif link.state != LinkState.LINKED or link.ehr_patient_id is None:
                for stored_item in items:
                    _mark(
                        session,
                        connection,
                        patient_id,
                        stored_item,
                        WriteState.WAITING,
                        None,
                        written,
                    )
                results[index] = PushResult([], PushState.WAITING)
            else:
                parts.append(_Part(index, patient_id, link.ehr_patient_id, items))
        parts = _consented(client, parts, results)
        for part in parts:
            part.entries = bundle_entries(part.items, written, parsed)
        if parts:
            _send(session, client, connection, parts, written, results)
    return results


def _load_links(
    session: Session, connection_id: str, patient_ids: set[str]
) -> dict[str, PatientLink]:
    """The patients' links that exist, in one query."""
    rows = session.execute(
        select(PatientLink).where(
            col(PatientLink.connection_id) == connection_id,
            col(PatientLink.patient_id).in_(sorted(patient_ids)),
        )
    )
    return {link.patient_id: link for link in rows.scalars().all()}


def _read_current(
    session: Session, tenant_id: str, references: Iterable[str]
) -> dict[str, StoredResource]:
    """The current versions of ``references`` (``Type/id``) that exist, one query per type."""
    by_type: dict[str, set[str]] = defaultdict(set)
    for reference in references:
        rtype, _, rid = reference.partition("/")
        by_type[rtype].add(rid)
    found: dict[str, StoredResource] = {}
    for rtype, ids in by_type.items():
        rows = session.execute(
            select(_R.c.id, _R.c.version_id, _R.c.last_updated, _R.c.content).where(
                _R.c.tenant_id == tenant_id, _R.c.resource_type == rtype, _R.c.id.in_(sorted(ids))
            )
        ).all()
        for row in rows:
            item = StoredResource(rtype, row.id, row.version_id, row.last_updated, row.content)
            found[item.reference] = item
    return found


def _disclosure(part: _Part) -> Disclosure:
    return Disclosure(part.patient_id, tuple(s.reference for s in part.items), EHR_SYNC)


def _consented(client: FhirClient, parts: list[_Part], results: list[PushResult]) -> list[_Part]:
    """The parts whose patients' consent allows the disclosure; the others are BLOCKED.

    A single part is checked (and audited) by the egress client with its request.
    """
    if len(parts) < 2:
        return parts
    label = destination_label(client.http.channel, client.base_url)
    client.http.guard.prefetch([part.patient_id for part in parts])  # one query, not one each
    allowed = []
    for part in parts:
        try:
            client.http.guard.require_consent(_disclosure(part), label)
        except EgressBlocked:
            results[part.index] = PushResult([], PushState.BLOCKED)
            continue
        allowed.append(part)
    return allowed


def _post(client: FhirClient, parts: list[_Part], bundle: dict[str, Any]) -> dict[str, Any]:
    """POST the Bundle; audited once per patient whose data it carries."""
    if len(parts) == 1:
        return client.request("POST", "", bundle, disclosure=_disclosure(parts[0]))
    label = destination_label(client.http.channel, client.base_url)
    outcome: Outcome = "failed"
    try:
        response = client.request("POST", "", bundle)
        outcome = "success"
        return response
    finally:
        for part in parts:
            client.http.guard.record(label, outcome, _disclosure(part))


def _send(
    session: Session,
    client: FhirClient,
    connection: EhrConnection,
    parts: list[_Part],
    written: dict[str, EhrWrite],
    results: list[PushResult],
) -> None:
    """Write ``parts`` in one transaction; a refused one is split until the refusal stands alone."""
    entries = [e for p in parts for e in p.entries]
    patients = {p.patient_id: p.ehr_patient_id for p in parts}
    bundle = transaction_bundle(entries, patients, written)
    try:
        response = _post(client, parts, bundle)
    except EgressBlocked:
        for part in parts:
            results[part.index] = PushResult([], PushState.BLOCKED)
        return
    except EhrError as exc:
        if exc.transient:
            raise
        if len(parts) > 1:
            half = len(parts) // 2
            _send(session, client, connection, parts[:half], written, results)
            _send(session, client, connection, parts[half:], written, results)
            return
        [part] = parts
        refs = tuple(s.reference for s in part.items)
        _failure(session, connection, part.patient_id, refs, exc.status, exc.reason or str(exc))
        for item in part.items:
            _mark(session, connection, part.patient_id, item, WriteState.FAILED, None, written)
        log.warning("EHR %s refused a write (%s)", connection.name, exc.status)
        results[part.index] = PushResult([], PushState.REJECTED)
        return
    answers = response.get("entry")
    answers = answers if isinstance(answers, list) else []
    by_entry = dict(zip((id(e) for e in entries), answers, strict=False))
    for part in parts:
        done = []
        for entry in part.entries:
            answer = by_entry.get(id(entry))
            if answer is None:
                continue
            location = (answer.get("response") or {}).get("location", "")
            ehr_ref = location_reference(location) if location else None
            _mark(
                session,
                connection,
                part.patient_id,
                entry.stored,
                WriteState.WRITTEN,
                ehr_ref,
                written,
            )
            done.append(entry.stored.reference)
        results[part.index] = PushResult(done, PushState.WRITTEN)


def _failure(
    session: Session,
    connection: EhrConnection,
    patient_id: str,
    references: Iterable[str],
    status: int | None,
    reason: str,
) -> None:
    session.add(
        EhrFailure(
            connection_id=connection.id,
            patient_id=patient_id,
            references=" ".join(references),
            status_code=status or 0,
            reason=reason,
        )
    )


def push_to_ehr(
    session: Session,
    settings: Settings,
    connection_id: str,
    patient_id: str,
    references: list[str],
) -> PushState:
    """The ``ehr.push`` task's unit of work: this push and the connection's other pending ones
    (claimed in this transaction, see ``workflows.ehr.claim``), then the connection's remaining
    pending pushes until none is left (``drain``); the state of this push."""
    connection = session.get(EhrConnection, connection_id)
    if connection is None or not connection.active:
        return PushState.INACTIVE
    # Pushes for one patient take turns on the patient's link row, so two versions of a
    # resource are never conditionally created at the same moment.
    _lock_patient(session, connection_id, patient_id)
    check_circuit(connection)
    own = Pending(patient_id, tuple(references))
    claimed = claim_pending(session, connection_id, own, BATCH_PUSHES - 1)
    batch = [own, *_take(session, connection_id, own, claimed)]
    state = push_batch(session, settings, connection, batch)[0].state
    _succeeded(session, connection)
    while drain_slots.take(connection_id):
        try:
            drain(session, settings, connection)
        finally:
            drain_slots.give_back(connection_id)
        # A push that found the slot taken left its connection's other pushes to this drain.
        if not _open_pushes(session, connection_id):
            break
    return state


def drain(session: Session, settings: Settings, connection: EhrConnection) -> int:
    """Push the connection's pending pushes, a Bundle per transaction, until none is left; how
    many Bundles' worth were taken.

    One running push drains its connection, so the relay publishes one push per connection of
    what it relays, not one per report (``Handler.drains``); the others wait in the outbox,
    leased, for a drain to claim them. Each round commits the one before, claims the oldest
    open pushes (``FOR UPDATE SKIP LOCKED``: what another push holds is its to do) and waits
    for the first one's patient, as a push waits for its own. If a round fails, its pushes are
    given back due at once (their run may have been this one), and the error is raised for the
    task's retry and the connection's circuit.
    """
    rounds = 0
    while True:
        commit(session)
        claimed = claim_pending(session, connection.id, None, BATCH_PUSHES)
        if not claimed:
            return rounds
        lead, others = claimed[0], claimed[1:]
        try:
            _lock_patient(session, connection.id, lead.patient_id)
            batch = [lead, *_take(session, connection.id, lead, others)]
            push_batch(session, settings, connection, batch)
        except Exception:
            rollback(session)
            _due_now(session, claimed)
            raise
        _succeeded(session, connection)
        rounds += 1


def _open_pushes(session: Session, connection_id: str) -> bool:
    """Whether the connection has open pushes no other transaction holds."""
    found = bool(claim_pending(session, connection_id, None, 1, peek=True))
    commit(session)
    return found


def _due_now(session: Session, items: list[Pending]) -> None:
    """Make claimed pushes (open again after a rollback) due at once; failing that, their lease
    still ends."""
    ids = [i.message_id for i in items if i.message_id is not None]
    try:
        session.execute(update(_O).where(_O.c.id.in_(ids)).values(available_at=utcnow()))
        commit(session)
    except DBAPIError:
        rollback(session)
        log.warning("could not give %d pushes back; their leases end", len(ids))


def _lock_patient(session: Session, connection_id: str, patient_id: str) -> None:
    session.get(PatientLink, (connection_id, patient_id), with_for_update=True)


def _succeeded(session: Session, connection: EhrConnection) -> None:
    """Close the connection's circuit after a push got through."""
    if connection.consecutive_failures or connection.circuit_open_until is not None:
        record_success(connection)
        session.add(connection)


def _take(
    session: Session, connection_id: str, lead: Pending, claimed: list[Pending]
) -> list[Pending]:
    """Of ``claimed``, what goes with ``lead`` (its patient held): the pushes whose patients no
    other push holds, up to ``BATCH_ENTRIES`` resources; the others are given back."""
    others = {c.patient_id for c in claimed} - {lead.patient_id}
    ours = lock_patients(session, connection_id, others) | {lead.patient_id}
    batch, give_back = [], []
    size = len(lead.references)
    for item in claimed:
        if item.patient_id in ours and size + len(item.references) <= BATCH_ENTRIES:
            batch.append(item)
            size += len(item.references)
        else:
            give_back.append(item)
    reopen(session, give_back)
    return batch


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
