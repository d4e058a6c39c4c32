"""How the dashboard names who acted or was paged (patients: ``services/patients/labels``)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from careloop.services.clinicians.models import Clinician
from careloop.services.store.repository import ResourceStore


def actor_labels(session: Session, tenant_id: str, actors: Iterable[str]) -> dict[str, str]:
    """A readable name for who acted or was paged: ``Practitioner/{id}``, ``oncall``, a client.

    A clinician account (``clinician:{id}``) is named by its name; a practitioner by the
    clinician account linked to it, else by the Practitioner's own name, else by its reference.
    """
    wanted = sorted({a for a in actors if a})
    labels = {a: ("On-call" if a == "oncall" else a) for a in wanted}
    accounts = [a.removeprefix("clinician:") for a in wanted if a.startswith("clinician:")]
    if accounts:
        for clinician_id, name in session.exec(
            select(Clinician.id, Clinician.name).where(
                Clinician.tenant_id == tenant_id, col(Clinician.id).in_(accounts)
            )
        ).all():
            labels[f"clinician:{clinician_id}"] = name
    practitioners = [a for a in wanted if a.startswith("Practitioner/")]
    if not practitioners:
        return labels
    named = session.exec(
        select(Clinician.practitioner, Clinician.name).where(
            Clinician.tenant_id == tenant_id, col(Clinician.practitioner).in_(practitioners)
        )
    ).all()
    for reference, name in named:
        if reference:
            labels[reference] = name
    store = ResourceStore(session, tenant_id)
    for reference in practitioners:
        if labels[reference] != reference:
            continue
        stored = store.read("Practitioner", reference.removeprefix("Practitioner/"))
        if stored is None:
            continue
        names = stored.as_dict().get("name") or []
        text = names[0].get("text") if names and isinstance(names[0], dict) else None
        if isinstance(text, str) and text:
            labels[reference] = text[:200]
    return labels
