"""Clinicians who arrive by SMART App Launch: found (or added) by the EHR's ``fhirUser``."""

from __future__ import annotations

import re
import uuid

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from careloop.services.clinicians.models import Clinician
from careloop.services.unit_of_work import savepoint

MAX_FHIR_USER = 200
"""Characters (the session's ``fhir_user`` column); a longer fhirUser is refused."""
DEFAULT_NAME = "EHR user"
_PRACTITIONER = re.compile(r"(?:^|/)Practitioner/([A-Za-z0-9\-.]{1,64})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def practitioner_of(fhir_user: str) -> str | None:
    """``Practitioner/{id}`` when ``fhir_user`` is a Practitioner's URL (or reference)."""
    found = _PRACTITIONER.search(fhir_user)
    return f"Practitioner/{found.group(1)}" if found else None


def _display_name(claim: object) -> str:
    if not isinstance(claim, str):
        return DEFAULT_NAME
    name = " ".join(_CONTROL.sub(" ", claim).split())[:200]
    return name or DEFAULT_NAME


def clinician_for(session: Session, tenant_id: str, fhir_user: str, name: object) -> Clinician:
    """The tenant's clinician with this ``fhirUser``, added on their first launch.

    ``name`` is the id_token's ``name`` claim (any JSON value; "EHR user" unless a string).
    Two first launches at once both end with the one row the unique index lets in.
    """
    query = select(Clinician).where(
        Clinician.tenant_id == tenant_id, Clinician.fhir_user == fhir_user
    )
    found = session.exec(query).first()
    if found is not None:
        return found
    clinician = Clinician(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        name=_display_name(name),
        practitioner=practitioner_of(fhir_user),
        fhir_user=fhir_user,
    )
    try:
        with savepoint(session):
            session.add(clinician)
    except IntegrityError:
        found = session.exec(query).first()
        if found is None:
            raise
        return found
    return clinician
