"""Reading from EHRs: care plans, goals, care teams and people for linked patients, and the
status of alert Tasks clinicians worked on in the EHR."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, select

from careloop.fhir.identifiers import business_identifier, identifier_kind
from careloop.fhir.validation import FhirValidationError, validate_resource
from careloop.integrations.ehr.fhir_client import FhirClient
from careloop.services.alerts.models import Alert
from careloop.services.alerts.service import acknowledge, resolve
from careloop.services.ehr.models import EhrConnection, EhrCursor, EhrImport, PatientLink
from careloop.services.settings import Settings
from careloop.services.store.repository import ResourceStore
from careloop.workflows.ehr_sync import CARELOOP_SID, check_circuit, ehr_client

log = logging.getLogger("careloop.ehr")
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


def _rewrite(value: Any, refs: dict[str, str]) -> tuple[Any, bool]:
    """References rewritten from EHR ids to careloop ids; False if a patient is unknown."""
    ok = True
    if isinstance(value, list):
        items = []
        for item in value:
            new, fine = _rewrite(item, refs)
            items.append(new)
            ok = ok and fine
        return items, ok
    if not isinstance(value, dict):
        return value, True
    out = {}
    for key, item in value.items():
        new, fine = _rewrite(item, refs)
        out[key] = new
        ok = ok and fine
    reference = out.get("reference")
    if isinstance(reference, str) and "/" in reference:
        local = reference.split("/_history")[0]
        local = "/".join(local.split("/")[-2:])
        if local in refs:
            out["reference"] = refs[local]
        else:
            if local.startswith("Patient/"):
                ok = False
            del out["reference"]
            out.setdefault("display", local.split("/")[0])
    return out, ok


def _import(
    session: Session,
    store: ResourceStore,
    connection: EhrConnection,
    resource: dict[str, Any],
    refs: dict[str, str],
) -> str | None:
    rtype, ehr_id = resource["resourceType"], str(resource["id"])
    ehr_reference = f"{rtype}/{ehr_id}"
    rewritten, patient_known = _rewrite(resource, refs)
    if not patient_known:
        return None
    existing = session.get(EhrImport, (connection.id, ehr_reference))
    local_id = existing.reference.split("/", 1)[1] if existing else str(uuid.uuid4())
    rewritten["id"] = local_id
    rewritten.pop("meta", None)
    source = {"system": f"urn:careloop:ehr:{connection.id}", "value": ehr_reference}
    identifiers = [
        i
        for i in rewritten.get("identifier", [])
        if not str(i.get("system", "")).startswith((CARELOOP_SID, "urn:careloop:ehr:"))
    ]
    rewritten["identifier"] = [
        *identifiers,
        source,
        business_identifier(identifier_kind(rtype), local_id),
    ]
    try:
        rewritten = validate_resource(rewritten)
    except FhirValidationError:
        log.warning("EHR %s sent an invalid %s; skipped", connection.name, rtype)
        return None
    if existing is None:
        store.create_many([rewritten])
        session.add(
            EhrImport(
                connection_id=connection.id,
                ehr_reference=ehr_reference,
                reference=f"{rtype}/{local_id}",
                ehr_version=(resource.get("meta") or {}).get("versionId"),
            )
        )
    else:
        store.update(rewritten)
        existing.ehr_version = (resource.get("meta") or {}).get("versionId")
        session.add(existing)
    refs[ehr_reference] = f"{rtype}/{local_id}"
    return f"{rtype}/{local_id}"


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


def _apply_task_status(
    session: Session, connection: EhrConnection, tasks: list[dict[str, Any]]
) -> int:
    applied = 0
    system = business_identifier("task", "x")["system"]
    for task in tasks:
        alert_id = next(
            (i["value"] for i in task.get("identifier", []) if i.get("system") == system), None
        )
        if alert_id is None:
            continue
        alert = session.get(Alert, alert_id)
        if alert is None or alert.tenant_id != connection.tenant_id or alert.status == "resolved":
            continue
        owner = (task.get("owner") or {}).get("reference")
        actor = f"ehr:{connection.name}" + (f":{owner}" if owner else "")
        status = task.get("status")
        if status in ("accepted", "in-progress") and alert.status == "open":
            acknowledge(session, connection.tenant_id, alert.id, actor)
            applied += 1
        elif status == "completed":
            notes = task.get("note") or [{}]
            resolve(session, connection.tenant_id, alert.id, actor, notes[-1].get("text"))
            applied += 1
    return applied


def pull(session: Session, settings: Settings, connection: EhrConnection) -> PullResult:
    """One incremental pull (``_lastUpdated`` since the last one) from ``connection``."""
    check_circuit(connection)
    result = PullResult()
    store = ResourceStore(session, connection.tenant_id)
    links = session.exec(
        select(PatientLink).where(
            PatientLink.connection_id == connection.id, PatientLink.state == "linked"
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
        for rtype in PULLED_TYPES:
            cursor = _cursor(session, connection, rtype)
            resources = _search_all(client, rtype, cursor.last_updated if cursor else None)
            count = 0
            for resource in resources:
                if _import(session, store, connection, resource, refs):
                    count += 1
                else:
                    result.skipped += 1
            result.imported[rtype] = count
            _advance(session, connection, rtype, resources)
        cursor = _cursor(session, connection, "Task")
        tasks = _search_all(client, "Task", cursor.last_updated if cursor else None)
        result.tasks_applied = _apply_task_status(session, connection, tasks)
        _advance(session, connection, "Task", tasks)
    return result
