"""Whom the dashboard may show: each patient's consent to care-team alerts, read at view time.

The dashboard is an exit like the others (purpose ``care-team-alerts``): a patient whose
Consent, or the tenant policy, denies it is left out of the inbox and caseload, and their
patient page and alert pages show only a notice. Lists read the Consents of their patients in
one batched read and write no audit; each direct view that is withheld is audited ``blocked``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import Request
from sqlmodel import Session
from starlette.responses import Response

from careloop.integrations.egress import CARE_TEAM_ALERTS, TENANT_POLICY, Disclosure, Guard
from careloop.services.audit.egress_guard import session_guard
from careloop.services.clinicians.sessions import SignedIn
from careloop.services.consents.policy import tenant_defaults
from careloop.services.dashboard.templating import render
from careloop.services.settings import Settings
from careloop.services.unit_of_work import commit

NOTICE = "This patient has not consented to sharing with the care team through careloop."


@dataclass(frozen=True)
class DashboardConsent:
    """The consent checks of one page load, for the signed-in clinician."""

    guard: Guard
    destination: str
    """``dashboard:<clinician id>`` (the session's prefix for an EHR launch without one)."""

    def withheld(self, patient_ids: Iterable[str]) -> set[str]:
        """Those of ``patient_ids`` the care team may not see (their Consents read at once)."""
        wanted = list(dict.fromkeys(patient_ids))
        self.guard.prefetch(wanted)
        return {p for p in wanted if self.guard.consent(p, CARE_TEAM_ALERTS) is not None}

    def refused(self, session: Session, patient_id: str) -> bool:
        """Whether ``patient_id``'s page is withheld; if so the refusal is audited and committed."""
        denying = self.guard.consent(patient_id, CARE_TEAM_ALERTS)
        if denying is None:
            return False
        why = denying if denying == TENANT_POLICY else f"Consent/{denying}"
        disclosure = Disclosure(patient_id, purpose=CARE_TEAM_ALERTS)
        self.guard.record(self.destination, "blocked", disclosure, why)
        commit(session)
        return True


def dashboard_consent(session: Session, settings: Settings, signed: SignedIn) -> DashboardConsent:
    """The consent checks for ``signed``'s page, under the tenant's consent policy."""
    defaults = tenant_defaults(settings.consent_defaults, signed.tenant_id)
    guard = session_guard(session, signed.tenant_id, signed.actor, defaults)
    who = signed.clinician_id or f"session-{signed.session_id[:8]}"
    return DashboardConsent(guard, f"dashboard:{who}")


def withheld_page(request: Request, signed: SignedIn, patient_id: str, active: str) -> Response:
    """The 403 notice that stands for a page of a patient who has not consented."""
    return render(
        request,
        "withheld.html",
        signed,
        status=403,
        patient_id=patient_id,
        notice=NOTICE,
        active=active,
    )
