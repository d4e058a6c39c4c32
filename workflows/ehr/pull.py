"""Reading from EHRs: care plans, goals, care teams and people for linked patients, and the
status of alert Tasks clinicians worked on in the EHR."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from careloop.integrations.egress import EHR_SYNC
from careloop.integrations.ehr.fhir_client import FhirClient
from careloop.services.ehr.models import EhrConnection, EhrCursor, EhrImport, PatientLink
from careloop.services.ehr.vocabulary import LinkState
from careloop.services.settings import Settings
from careloop.services.store.repository import ResourceStore
from careloop.workflows.ehr.circuit import check_circuit
from careloop.workflows.ehr.client import ehr_client
from careloop.workflows.ehr.importing import import_resource
from careloop.workflows.ehr.task_status import apply_task_status

PULLED_TYPES = ("Practitioner", "PractitionerRole", "Goal", "CarePlan", "CareTeam")
"""In dependency order: what a later type references is imported first."""
PATIENT_BOUND = {"Goal", "CarePlan", "CareTeam"}
MAX_PAGES = 100


@dataclass
class PullResult:
    """Counts of what one pull imported and applied."""

    imported: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    tasks_applied: int = 0


def _search_all(client: FhirClient, rtype: str, since: str | None) -> list[dict[str, Any]]:
    params = {"_count": "200"}
    if since:
        params["_lastUpdated"] = f"gt{since}"
    bundle = client.request("GET", rtype, params=params)
    resources = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
    for _ in range(MAX_PAGES):
        next_url = next(
            (link["url"] for link in bundle.get("link", []) if link.get("relation") == "next"),
            None,
        )
        if not next_url:
            break
        path = next_url.removeprefix(client.base_url.rstrip("/") + "/")
        bundle = client.request("GET", path)
        resources.extend(e["resource"] for e in bundle.get("entry", []) if "resource" in e)
    return resources


def _cursor(session: Session, connection: EhrConnection, rtype: str) -> EhrCursor | None:
    return session.get(EhrCursor, (connection.id, rtype))


def _advance(
    session: Session, connection: EhrConnection, rtype: str, resources: list[dict[str, Any]]
) -> None:
    stamps = [str((r.get("meta") or {}).get("lastUpdated", "")) for r in resources]
    stamps = [s for s in stamps if s]
    if not stamps:
        return
    cursor = _cursor(session, connection, rtype) or EhrCursor(
        connection_id=connection.id, resource_type=rtype, last_updated=""
    )
    cursor.last_updated = max([cursor.last_updated, *stamps])
    session.add(cursor)


def pull(session: Session, settings: Settings, connection: EhrConnection) -> PullResult:
    """One incremental pull (``_lastUpdated`` since the last one) from ``connection``."""
    check_circuit(connection)
    result = PullResult()
    store = ResourceStore(session, connection.tenant_id)
    links = session.exec(
        select(PatientLink).where(
            PatientLink.connection_id == connection.id, PatientLink.state == LinkState.LINKED
        )
    ).all()
    refs = {f"Patient/{link.ehr_patient_id}": f"Patient/{link.patient_id}" for link in links}
    refs.update(
        {
            row.ehr_reference: row.reference
            for row in session.exec(
                select(EhrImport).where(EhrImport.connection_id == connection.id)
            )
        }
    )
    with ehr_client(session, settings, connection) as client:
        guard = client.http.guard
        guard.prefetch([link.patient_id for link in links])
        # A patient whose consent denies EHR sync gets nothing imported (skipped as unknown).
        denied = {
            f"Patient/{link.patient_id}"
            for link in links
            if guard.consent(link.patient_id, EHR_SYNC) is not None
        }
        refs = {ehr: local for ehr, local in refs.items() if local not in denied}
        for rtype in PULLED_TYPES:
            cursor = _cursor(session, connection, rtype)
            resources = _search_all(client, rtype, cursor.last_updated if cursor else None)
            count = 0
            for resource in resources:
                if import_resource(session, store, connection, resource, refs):
                    count += 1
                else:
                    result.skipped += 1
            result.imported[rtype] = count
            _advance(session, connection, rtype, resources)
        cursor = _cursor(session, connection, "Task")
        tasks = _search_all(client, "Task", cursor.last_updated if cursor else None)
        result.tasks_applied = apply_task_status(session, connection, tasks)
        _advance(session, connection, "Task", tasks)
    return result
