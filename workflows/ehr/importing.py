"""Importing one resource pulled from an EHR: references rewritten to careloop's ids, careloop's
identifiers added, validated, then created or updated in careloop's store."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlmodel import Session

from careloop.fhir.identifiers import business_identifier, identifier_kind
from careloop.fhir.validation import FhirValidationError, validate_resource
from careloop.services.ehr.models import EhrConnection, EhrImport
from careloop.services.store.repository import ResourceStore
from careloop.workflows.ehr.bundles import CARELOOP_SID

log = logging.getLogger("careloop.ehr")


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


def import_resource(
    session: Session,
    store: ResourceStore,
    connection: EhrConnection,
    resource: dict[str, Any],
    refs: dict[str, str],
) -> str | None:
    """Import ``resource`` into careloop; its careloop ``Type/id``, or None if skipped."""
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
