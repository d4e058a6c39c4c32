"""The tenant policy: what a patient with no deciding Consent gets, per purpose."""

from __future__ import annotations

from functools import lru_cache
from typing import cast

from careloop.integrations.egress.consent import DEFAULT_POLICY, PURPOSES, Decision

Policy = dict[str, dict[str, Decision]]
"""Overrides by tenant id ("" for every tenant), then by purpose."""


@lru_cache(maxsize=32)
def parse_policy(text: str) -> Policy:
    """``purpose=permit|deny`` or ``tenant:purpose=permit|deny``, comma-separated.

    Raises ValueError naming the bad entry (never a value beyond it).
    """
    policy: Policy = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        key, sep, decision = entry.partition("=")
        tenant, colon, purpose = key.strip().rpartition(":")
        purpose, decision = purpose.strip(), decision.strip()
        if not sep or purpose not in PURPOSES or decision not in ("permit", "deny"):
            raise ValueError(
                f"consent default {entry!r}: use [tenant:]purpose=permit|deny with purpose one "
                f"of {', '.join(PURPOSES)}"
            )
        policy.setdefault(tenant.strip() if colon else "", {})[purpose] = cast(Decision, decision)
    return policy


def tenant_defaults(text: str, tenant_id: str) -> dict[str, Decision]:
    """The defaults for ``tenant_id``: safe defaults, then every tenant's, then its own."""
    policy = parse_policy(text)
    return {**DEFAULT_POLICY, **policy.get("", {}), **policy.get(tenant_id, {})}
