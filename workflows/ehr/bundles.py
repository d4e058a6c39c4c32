"""Transaction Bundles for writing careloop's resources into an EHR.

Conditional creates on careloop's business identifiers (update-as-create on careloop's id where a
resource has none), references rewritten to what the EHR knows, and the EHR's answer read back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from careloop.services.ehr.models import EhrWrite
from careloop.services.ehr.vocabulary import WriteState
from careloop.services.store.repository import StoredResource

CARELOOP_SID = "https://careloop.io/fhir/sid/"
_NS = uuid.UUID("4b0c58a4-2f2b-5d1e-9a57-6f2f0e7c1c11")


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
class BundleEntry:
    """One stored resource and the transaction request that writes it."""

    stored: StoredResource
    request: dict[str, str]


def bundle_entries(stored: list[StoredResource], written: dict[str, EhrWrite]) -> list[BundleEntry]:
    """The request for each resource: create once, then update by identifier."""
    entries = []
    for item in stored:
        resource = item.as_dict()
        ident = _business_identifier(resource)
        previous = written.get(item.reference)
        if item.resource_type == "Provenance" or ident is None:
            # R4 Provenance has no identifier: update-as-create on careloop's stable id.
            request = {"method": "PUT", "url": f"{item.resource_type}/{item.id}"}
        elif previous is not None and previous.state == WriteState.WRITTEN:
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
        entries.append(BundleEntry(item, request))
    return entries


def transaction_bundle(
    entries: list[BundleEntry], patient_id: str, ehr_patient_id: str, written: dict[str, EhrWrite]
) -> dict[str, Any]:
    """The transaction Bundle of ``entries``, references rewritten to the EHR's."""
    refs = {f"Patient/{patient_id}": f"Patient/{ehr_patient_id}"}
    refs.update({w.reference: w.ehr_reference for w in written.values() if w.ehr_reference})
    refs.update({e.stored.reference: _urn(e.stored.reference) for e in entries})
    entries_out = []
    for entry in entries:
        resource = _rewrite(entry.stored.as_dict(), refs)
        resource.pop("meta", None)
        if entry.request["method"] == "POST" or "?" in entry.request["url"]:
            resource.pop("id", None)
        entries_out.append(
            {
                "fullUrl": _urn(entry.stored.reference),
                "resource": resource,
                "request": entry.request,
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries_out}


def location_reference(location: str) -> str:
    """The ``Type/id`` of a transaction response's ``location`` (with or without ``_history``)."""
    parts = location.split("/fhir/")[-1].split("/")
    return "/".join(parts[-4:-2]) if "_history" in parts else "/".join(parts[-2:])
