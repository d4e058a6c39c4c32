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


def referenced(resource: Any, into: set[str]) -> set[str]:
    """Add the relative ``Type/id`` references found anywhere in ``resource`` to ``into``."""
    if isinstance(resource, list):
        for value in resource:
            referenced(value, into)
    elif isinstance(resource, dict):
        for key, value in resource.items():
            if key == "reference" and isinstance(value, str):
                if "/" in value and not value.startswith("urn:"):
                    into.add(value)
            elif isinstance(value, dict | list):
                referenced(value, into)
    return into


@dataclass(frozen=True)
class BundleEntry:
    """One stored resource (parsed) and the transaction request that writes it."""

    stored: StoredResource
    request: dict[str, str]
    resource: dict[str, Any]


def bundle_entries(
    stored: list[StoredResource],
    written: dict[str, EhrWrite],
    parsed: dict[str, dict[str, Any]] | None = None,
) -> list[BundleEntry]:
    """The request for each resource: create once, then update by identifier.

    ``parsed``: the resources already parsed, by ``Type/id`` (else parsed here).
    """
    entries = []
    for item in stored:
        resource = (parsed or {}).get(item.reference) or item.as_dict()
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
        entries.append(BundleEntry(item, request, resource))
    return entries


def transaction_bundle(
    entries: list[BundleEntry], patients: dict[str, str], written: dict[str, EhrWrite]
) -> dict[str, Any]:
    """The transaction Bundle of ``entries``, references rewritten to the EHR's.

    ``patients``: careloop patient id to EHR Patient id, for every patient in the Bundle.
    """
    refs = {f"Patient/{pid}": f"Patient/{ehr_pid}" for pid, ehr_pid in patients.items()}
    refs.update({w.reference: w.ehr_reference for w in written.values() if w.ehr_reference})
    refs.update({e.stored.reference: _urn(e.stored.reference) for e in entries})
    entries_out = []
    for entry in entries:
        resource = _rewrite(entry.resource, refs)
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
