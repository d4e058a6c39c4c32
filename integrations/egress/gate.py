"""Consent and audit around every transfer that carries patient data out of careloop.

The gate knows nothing of careloop's database: the caller hands it a `Guard` holding the
tenant's consent lookup and audit sink (services/audit/egress_guard.py builds one on a session).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from careloop.integrations.egress.consent import CARE_TEAM_ALERTS, TENANT_POLICY

T = TypeVar("T")
TREATMENT = CARE_TEAM_ALERTS
"""The purpose of care-team alerts (v3-ActReason TREAT); EHR sync is `consent.EHR_SYNC`."""
Outcome = Literal["success", "failed", "blocked", "refused"]


class EgressBlocked(Exception):
    """The patient's Consent forbids this data leaving for this purpose."""


@dataclass(frozen=True)
class Disclosure:
    """The patient data one transfer carries: whose, which resources (ids), and why.

    ``purpose`` is one of `consent.PURPOSES` (care-team alerts unless said otherwise).
    """

    patient_id: str
    entities: tuple[str, ...] = ()
    purpose: str = TREATMENT


@dataclass(frozen=True)
class EgressEvent:
    """One audited attempt; ``destination`` is ``channel:host[:port]``, never a full URL."""

    tenant_id: str
    agent: str
    destination: str
    outcome: Outcome
    disclosure: Disclosure | None = None
    reason: str | None = None


class ConsentLookup(Protocol):
    """Why sharing ``patient_id``'s data for ``purpose`` is denied now, or None if permitted.

    The reason is the deciding Consent's id, or `consent.TENANT_POLICY` when the patient has
    no Consent deciding the purpose and the tenant's default denies it.
    """

    def __call__(self, patient_id: str, purpose: str) -> str | None: ...


class AuditSink(Protocol):
    """Keeps an audit record of ``event`` (in the caller's unit of work)."""

    def __call__(self, event: EgressEvent) -> None: ...


def _nothing(_patient_ids: Sequence[str]) -> None:
    return None


@dataclass(frozen=True)
class Guard:
    """What the gate needs from careloop for one tenant: consent lookup and audit sink."""

    tenant_id: str
    agent: str
    consent: ConsentLookup
    audit: AuditSink
    prefetch: Callable[[Sequence[str]], None] = _nothing
    """Read the Consents of these patients at once (a Bundle carries many); optional."""

    def record(
        self,
        destination: str,
        outcome: Outcome,
        disclosure: Disclosure | None = None,
        reason: str | None = None,
    ) -> None:
        """Audit one attempt."""
        self.audit(
            EgressEvent(self.tenant_id, self.agent, destination, outcome, disclosure, reason)
        )

    def require_consent(self, disclosure: Disclosure, destination: str) -> None:
        """Raise EgressBlocked (audited as ``blocked``) unless consent permits the disclosure.

        Checked when the data leaves (send time), so a revocation stops what was queued.
        """
        denying = self.consent(disclosure.patient_id, disclosure.purpose)
        if denying is not None:
            why = denying if denying == TENANT_POLICY else f"Consent/{denying}"
            self.record(destination, "blocked", disclosure, why)
            raise EgressBlocked(f"{why} denies {disclosure.purpose}")


def send(
    guard: Guard,
    destination: str,
    disclosure: Disclosure,
    transfer: Callable[[], T],
    succeeded: Callable[[T], bool],
) -> T:
    """Run a non-HTTP ``transfer`` (e.g. SMTP) if consent allows, and audit it either way.

    HTTP transfers go through `EgressClient`, which does the same per request.
    """
    guard.require_consent(disclosure, destination)
    result = transfer()
    guard.record(destination, "success" if succeeded(result) else "failed", disclosure)
    return result
