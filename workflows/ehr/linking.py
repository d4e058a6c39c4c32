"""Linking careloop patients to EHR Patients by identifier search (by hand: ``services.ehr``)."""

from __future__ import annotations

from sqlmodel import Session, select

from careloop.integrations.egress import EHR_SYNC, Disclosure
from careloop.integrations.ehr.fhir_client import FhirClient
from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection, PatientLink
from careloop.services.ehr.vocabulary import LinkMethod, LinkState
from careloop.services.patients.labels import ehr_label
from careloop.services.patients.models import PatientIdentifier


def _identifiers(session: Session, tenant_id: str, patient_id: str) -> list[tuple[str, str]]:
    rows = session.exec(
        select(PatientIdentifier).where(
            PatientIdentifier.tenant_id == tenant_id, PatientIdentifier.patient_id == patient_id
        )
    ).all()
    return [(r.system, r.value) for r in rows]


def resolve_link(
    session: Session,
    client: FhirClient,
    connection: EhrConnection,
    patient_id: str,
    link: PatientLink | None = None,
) -> PatientLink:
    """The patient's link, searching the EHR by identifier unless already linked.

    Exactly one EHR Patient carrying one of the patient's identifiers links; none leaves the
    patient unlinked, several ambiguous. careloop never guesses. A link keeps the EHR's name or
    MRN of the patient as ``ehr_label`` for the clinicians' pages. The search carries the
    patient's identifiers to the EHR, so it passes consent and audit (EgressBlocked). ``link``:
    the link row, if the caller has read it already.
    """
    if link is None:
        link = session.get(PatientLink, (connection.id, patient_id))
    if link is not None and link.state == LinkState.LINKED:
        return link
    matches: dict[str, dict[str, object]] = {}
    for system, value in _identifiers(session, connection.tenant_id, patient_id):
        bundle = client.request(
            "GET",
            "Patient",
            params={"identifier": f"{system}|{value}"},
            disclosure=Disclosure(patient_id, purpose=EHR_SYNC),
        )
        for entry in bundle.get("entry", []):
            resource = entry.get("resource", {})
            if resource.get("resourceType") == "Patient" and resource.get("id"):
                matches[str(resource["id"])] = resource
    if link is None:
        link = PatientLink(
            connection_id=connection.id, patient_id=patient_id, state=LinkState.UNLINKED
        )
    link.state = {0: LinkState.UNLINKED, 1: LinkState.LINKED}.get(len(matches), LinkState.AMBIGUOUS)
    link.ehr_patient_id = next(iter(matches)) if len(matches) == 1 else None
    # How the EHR shows the patient (name or MRN), for the clinicians' pages only (PHI: no logs).
    link.ehr_label = ehr_label(next(iter(matches.values()))) if len(matches) == 1 else None
    link.method = LinkMethod.IDENTIFIER
    link.updated_at = utcnow()
    session.add(link)
    return link
