"""How the clinicians' pages name a patient: the EHR's label, else a name, else an identifier.

Labels are PHI: they go into pages only, never into logs, errors or traces.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import select
from sqlmodel import Session

from careloop.fhir.identifiers import IDENTIFIER_BASE
from careloop.services.ehr.models import EhrConnection, PatientLink
from careloop.services.ehr.vocabulary import LinkState
from careloop.services.store.models import FhirResource

_R = FhirResource.__table__  # type: ignore[attr-defined]
_L = PatientLink.__table__  # type: ignore[attr-defined]
_C = EhrConnection.__table__  # type: ignore[attr-defined]
MAX_LABEL = 200
_MRN_TYPE = "MR"
_CHUNK = 500


def _name_text(name: Any) -> str | None:
    if not isinstance(name, dict):
        return None
    if isinstance(name.get("text"), str) and name["text"].strip():
        return str(name["text"]).strip()
    given = [g for g in name.get("given") or [] if isinstance(g, str)]
    family = name.get("family") if isinstance(name.get("family"), str) else None
    parts = [*given, *([family] if family else [])]
    return " ".join(p.strip() for p in parts if p.strip()) or None


def patient_name(patient: dict[str, Any]) -> str | None:
    """The Patient's name (its official one first), or None."""
    names = [n for n in patient.get("name") or [] if isinstance(n, dict)]
    names.sort(key=lambda n: n.get("use") != "official")
    return next((t for t in (_name_text(n) for n in names) if t), None)


def patient_mrn(patient: dict[str, Any]) -> str | None:
    """The Patient's medical record number (an identifier typed ``MR``), or None."""
    for identifier in patient.get("identifier") or []:
        if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
            continue
        codings = ((identifier.get("type") or {}).get("coding")) or []
        if any(isinstance(c, dict) and c.get("code") == _MRN_TYPE for c in codings):
            return str(identifier["value"])
    return None


def ehr_label(patient: dict[str, Any]) -> str | None:
    """How an EHR's Patient is shown: ``Name (MRN x)``, the name, or ``MRN x``; None if neither."""
    name, mrn = patient_name(patient), patient_mrn(patient)
    if name and mrn:
        label = f"{name} (MRN {mrn})"
    elif name or mrn:
        label = name or f"MRN {mrn}"
    else:
        return None
    return label[:MAX_LABEL]


def _app_identifier(patient: dict[str, Any]) -> str | None:
    for identifier in patient.get("identifier") or []:
        if not isinstance(identifier, dict):
            continue
        system, value = identifier.get("system", ""), identifier.get("value")
        if isinstance(value, str) and value and not str(system).startswith(IDENTIFIER_BASE):
            return value
    return None


def _own_label(patient: dict[str, Any]) -> str | None:
    return patient_name(patient) or _app_identifier(patient)


def fallback_label(patient_id: str) -> str:
    """The label of a patient careloop knows nothing readable about."""
    return "Patient " + patient_id[:8]


def patient_labels(session: Session, tenant_id: str, patient_ids: Iterable[str]) -> dict[str, str]:
    """The label of each patient: the EHR's (when linked), the Patient's name, an app
    identifier, else ``Patient`` and the first 8 characters of the id."""
    wanted = sorted(set(patient_ids))
    labels: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        links = session.execute(
            select(_L.c.patient_id, _L.c.ehr_label)
            .join(_C, _C.c.id == _L.c.connection_id)
            .where(
                _C.c.tenant_id == tenant_id,
                _L.c.patient_id.in_(chunk),
                _L.c.state == LinkState.LINKED,
                _L.c.ehr_label.is_not(None),
            )
            .order_by(_L.c.updated_at.desc())
        ).all()
        for row in links:
            labels.setdefault(row.patient_id, row.ehr_label)
        rest = [p for p in chunk if p not in labels]
        if rest:
            rows = session.execute(
                select(_R.c.id, _R.c.content).where(
                    _R.c.tenant_id == tenant_id,
                    _R.c.resource_type == "Patient",
                    _R.c.id.in_(rest),
                )
            ).all()
            for row in rows:
                own = _own_label(orjson.loads(row.content))
                if own:
                    labels[row.id] = own[:MAX_LABEL]
    return {p: labels.get(p) or fallback_label(p) for p in wanted}


def patient_label(session: Session, tenant_id: str, patient_id: str) -> str:
    """The label clinicians recognise the patient by (see ``patient_labels``)."""
    return patient_labels(session, tenant_id, [patient_id])[patient_id]
