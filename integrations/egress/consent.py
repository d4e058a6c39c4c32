"""Reading a patient's FHIR Consents: does one deny sharing for a purpose?"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _provision_denies(provision: dict[str, Any], purpose: str) -> bool:
    if provision.get("type") != "deny":
        return False
    purposes = provision.get("purpose") or []
    codes = (
        {p.get("code") for p in purposes if isinstance(p, dict)}
        if isinstance(purposes, list)
        else set()
    )
    return not codes or purpose in codes


def denying_consent(consents: Iterable[tuple[str, dict[str, Any]]], purpose: str) -> str | None:
    """The id of the first active Consent (``(id, resource)`` pairs) denying ``purpose``.

    A Consent whose top-level provision (or a nested one) is ``deny`` with no purpose, or with
    this purpose, blocks. careloop errs on the side of the patient's refusal.
    """
    for consent_id, consent in consents:
        if consent.get("status") != "active":
            continue
        provision = consent.get("provision") or {}
        nested = provision.get("provision") or []
        if _provision_denies(provision, purpose) or any(
            _provision_denies(p, purpose) for p in nested if isinstance(p, dict)
        ):
            return consent_id
    return None
