"""Reading a patient's FHIR Consents: what do they decide for one purpose of use?

careloop knows three purposes (`PURPOSES`). A Consent's provision names its purpose with a
coding (`PURPOSE_CODINGS`: HL7 v3 ActReason where one fits exactly, careloop's CodeSystem
otherwise). Rules, erring on the side of the patient's refusal:

- only ``active`` Consents count, and a provision only while now is within its ``period``;
- a ``deny`` provision with no purpose denies every purpose; a ``permit`` must name the purpose;
- v3 ``TREAT`` (treatment) denies both treatment purposes (care-team alerts, EHR sync) but
  permits only care-team alerts: EHR sync needs its own permit;
- in one Consent a deny beats a permit; across Consents the newest (``dateTime``, else
  ``meta.lastUpdated``) that decides the purpose wins;
- a patient none of whose Consents decides gets the tenant policy's default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

Decision = Literal["permit", "deny"]
CARE_TEAM_ALERTS = "care-team-alerts"
EHR_SYNC = "ehr-sync"
RESEARCH_EXPORT = "research-export"
PURPOSES = (CARE_TEAM_ALERTS, EHR_SYNC, RESEARCH_EXPORT)
V3_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
CARELOOP_PURPOSE = "https://careloop.io/fhir/CodeSystem/consent-purpose"
PURPOSE_CODINGS: dict[str, tuple[str, str]] = {
    CARE_TEAM_ALERTS: (V3_ACT_REASON, "TREAT"),
    EHR_SYNC: (CARELOOP_PURPOSE, EHR_SYNC),
    RESEARCH_EXPORT: (V3_ACT_REASON, "HRESCH"),
}
"""The coding a provision carries for each purpose."""
_ALSO_DENIED_BY: dict[str, set[tuple[str, str]]] = {EHR_SYNC: {(V3_ACT_REASON, "TREAT")}}
DEFAULT_POLICY: dict[str, Decision] = {
    CARE_TEAM_ALERTS: "permit",
    EHR_SYNC: "deny",
    RESEARCH_EXPORT: "deny",
}
"""What a patient with no deciding Consent gets, unless the tenant's policy says otherwise."""
TENANT_POLICY = "tenant-policy"
"""The reason `deciding_consent` gives when the tenant policy (no Consent) denies."""


def _codes(provision: dict[str, Any]) -> set[tuple[str, str]] | None:
    """The (system, code) purposes a provision names; None when it names none."""
    purposes = provision.get("purpose")
    if not isinstance(purposes, list) or not purposes:
        return None
    return {
        (str(p.get("system", "")), str(p.get("code", ""))) for p in purposes if isinstance(p, dict)
    }


def _in_period(provision: dict[str, Any], now: datetime) -> bool:
    period = provision.get("period")
    if not isinstance(period, dict):
        return True
    start, end = _instant(period.get("start")), _instant(period.get("end"))
    if period.get("start") is not None and start is None:
        return False  # an unreadable bound: the provision does not apply
    if period.get("end") is not None and end is None:
        return False
    return (start is None or start <= now) and (end is None or now < end)


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _provision_decides(provision: dict[str, Any], purpose: str, now: datetime) -> Decision | None:
    kind = provision.get("type")
    if kind not in ("permit", "deny") or not _in_period(provision, now):
        return None
    codes = _codes(provision)
    own = PURPOSE_CODINGS.get(purpose)
    if kind == "deny":
        if codes is None or own in codes or codes & _ALSO_DENIED_BY.get(purpose, set()):
            return "deny"
        return None
    return "permit" if codes is not None and own in codes else None


def consent_decides(consent: dict[str, Any], purpose: str, now: datetime) -> Decision | None:
    """What one Consent decides for ``purpose`` now (None: it does not say)."""
    if consent.get("status") != "active":
        return None
    provision = consent.get("provision")
    if not isinstance(provision, dict):
        return None
    nested = provision.get("provision")
    provisions = (
        [provision, *(p for p in nested if isinstance(p, dict))]
        if isinstance(nested, list)
        else [provision]
    )
    decided = {_provision_decides(p, purpose, now) for p in provisions}
    if "deny" in decided:
        return "deny"
    return "permit" if "permit" in decided else None


def recorded_at(consent: dict[str, Any]) -> datetime:
    """When the Consent was given (``dateTime``, else ``meta.lastUpdated``), for newest-wins."""
    meta = consent.get("meta")
    last_updated = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return (
        _instant(consent.get("dateTime"))
        or _instant(last_updated)
        or datetime.min.replace(tzinfo=UTC)
    )


def deciding_consent(
    consents: Iterable[tuple[str, dict[str, Any]]],
    purpose: str,
    default: Mapping[str, Decision] = DEFAULT_POLICY,
    now: datetime | None = None,
) -> tuple[Decision, str | None]:
    """The decision for ``purpose`` and the id of the Consent that made it (None: the policy).

    ``consents`` are ``(id, resource)`` pairs; ``default`` the tenant policy (an unknown
    purpose defaults to deny).
    """
    moment = now or datetime.now(UTC)
    deciding: list[tuple[datetime, str, Decision]] = []
    for consent_id, consent in consents:
        decision = consent_decides(consent, purpose, moment)
        if decision is not None:
            deciding.append((recorded_at(consent), consent_id, decision))
    if not deciding:
        return default.get(purpose, "deny"), None
    # Newest wins; at the same instant a deny wins.
    _when, consent_id, decision = max(deciding, key=lambda d: (d[0], d[2] == "deny"))
    return decision, consent_id


def denying_consent(
    consents: Iterable[tuple[str, dict[str, Any]]],
    purpose: str,
    default: Mapping[str, Decision] = DEFAULT_POLICY,
    now: datetime | None = None,
) -> str | None:
    """Why ``purpose`` is denied (the deciding Consent's id, or `TENANT_POLICY`), or None."""
    decision, consent_id = deciding_consent(consents, purpose, default, now)
    if decision == "permit":
        return None
    return consent_id or TENANT_POLICY
