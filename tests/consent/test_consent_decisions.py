"""What a patient's Consents decide per purpose: permit/deny, period, newest wins, the policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from careloop.integrations.egress import (
    CARE_TEAM_ALERTS,
    DEFAULT_POLICY,
    EHR_SYNC,
    RESEARCH_EXPORT,
    TENANT_POLICY,
    deciding_consent,
    denying_consent,
)
from careloop.integrations.egress.consent import PURPOSE_CODINGS
from careloop.services.consents.policy import parse_policy, tenant_defaults

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _consent(
    decision: str,
    purpose: str | None,
    when: str = "2026-11-01T00:00:00Z",
    period: dict[str, str] | None = None,
    status: str = "active",
) -> dict[str, Any]:
    provision: dict[str, Any] = {"type": decision}
    if purpose is not None:
        system, code = PURPOSE_CODINGS[purpose]
        provision["purpose"] = [{"system": system, "code": code}]
    if period is not None:
        provision["period"] = period
    return {"resourceType": "Consent", "status": status, "dateTime": when, "provision": provision}


def test_with_no_consent_the_safe_defaults_apply() -> None:
    assert DEFAULT_POLICY == {
        CARE_TEAM_ALERTS: "permit",
        EHR_SYNC: "deny",
        RESEARCH_EXPORT: "deny",
    }
    assert denying_consent([], CARE_TEAM_ALERTS, now=NOW) is None
    assert denying_consent([], EHR_SYNC, now=NOW) == TENANT_POLICY
    assert denying_consent([], RESEARCH_EXPORT, now=NOW) == TENANT_POLICY
    assert denying_consent([], "something-else", now=NOW) == TENANT_POLICY


def test_a_permit_or_deny_decides_only_its_own_purpose() -> None:
    consents = [("p", _consent("permit", EHR_SYNC)), ("d", _consent("deny", RESEARCH_EXPORT))]
    assert deciding_consent(consents, EHR_SYNC, now=NOW) == ("permit", "p")
    assert deciding_consent(consents, RESEARCH_EXPORT, now=NOW) == ("deny", "d")
    assert deciding_consent(consents, CARE_TEAM_ALERTS, now=NOW) == ("permit", None)


def test_a_deny_without_purpose_denies_everything_a_permit_without_purpose_nothing() -> None:
    denial = [("all", _consent("deny", None))]
    for purpose in (CARE_TEAM_ALERTS, EHR_SYNC, RESEARCH_EXPORT):
        assert denying_consent(denial, purpose, now=NOW) == "all"
    blanket = [("all", _consent("permit", None))]
    assert denying_consent(blanket, EHR_SYNC, now=NOW) == TENANT_POLICY


def test_a_treatment_deny_also_stops_ehr_sync_but_its_permit_does_not_start_it() -> None:
    treat_deny = [("t", _consent("deny", CARE_TEAM_ALERTS))]
    assert denying_consent(treat_deny, EHR_SYNC, now=NOW) == "t"
    treat_permit = [("t", _consent("permit", CARE_TEAM_ALERTS))]
    assert denying_consent(treat_permit, EHR_SYNC, now=NOW) == TENANT_POLICY


def test_the_newest_deciding_consent_wins() -> None:
    older = ("old", _consent("deny", EHR_SYNC, "2026-10-01T00:00:00Z"))
    newer = ("new", _consent("permit", EHR_SYNC, "2026-11-01T00:00:00Z"))
    assert deciding_consent([newer, older], EHR_SYNC, now=NOW) == ("permit", "new")
    newest = ("newest", _consent("deny", EHR_SYNC, "2026-11-10T00:00:00Z"))
    assert deciding_consent([newer, newest, older], EHR_SYNC, now=NOW) == ("deny", "newest")
    same_instant = ("tie", _consent("deny", EHR_SYNC, "2026-11-01T00:00:00Z"))
    assert deciding_consent([newer, same_instant], EHR_SYNC, now=NOW) == ("deny", "tie")


def test_an_inactive_consent_decides_nothing() -> None:
    revoked = [("r", _consent("deny", CARE_TEAM_ALERTS, status="inactive"))]
    assert denying_consent(revoked, CARE_TEAM_ALERTS, now=NOW) is None


@pytest.mark.parametrize(
    ("period", "decides"),
    [
        ({"start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z"}, True),
        ({"start": "2026-11-21T00:00:00Z"}, False),  # not yet
        ({"end": "2026-11-20T12:00:00Z"}, False),  # ended (the end is exclusive)
        ({"end": "2026-11-20T12:00:01+00:00"}, True),
        ({"start": "not a date"}, False),  # unreadable: never stretches a permit
    ],
)
def test_a_decision_holds_only_within_its_period(period: dict[str, str], decides: bool) -> None:
    consents = [("p", _consent("permit", EHR_SYNC, period=period))]
    assert deciding_consent(consents, EHR_SYNC, now=NOW) == (
        ("permit", "p") if decides else ("deny", None)
    )


def test_an_expired_newer_consent_leaves_the_older_in_force() -> None:
    older = ("old", _consent("permit", EHR_SYNC, "2026-10-01T00:00:00Z"))
    expired = (
        "new",
        _consent("deny", EHR_SYNC, "2026-11-01T00:00:00Z", {"end": "2026-11-02T00:00:00Z"}),
    )
    assert deciding_consent([older, expired], EHR_SYNC, now=NOW) == ("permit", "old")


def test_a_nested_deny_inside_a_permit_wins() -> None:
    consent = _consent("permit", EHR_SYNC)
    system, code = PURPOSE_CODINGS[RESEARCH_EXPORT]
    consent["provision"]["provision"] = [
        {"type": "deny", "purpose": [{"system": system, "code": code}]}
    ]
    assert deciding_consent([("c", consent)], EHR_SYNC, now=NOW) == ("permit", "c")
    assert deciding_consent([("c", consent)], RESEARCH_EXPORT, now=NOW) == ("deny", "c")


def test_the_tenant_policy_overrides_defaults_for_all_or_one_tenant() -> None:
    text = "care-team-alerts=deny, clinic-b:ehr-sync=permit"
    assert tenant_defaults(text, "clinic-a") == {
        CARE_TEAM_ALERTS: "deny",
        EHR_SYNC: "deny",
        RESEARCH_EXPORT: "deny",
    }
    assert tenant_defaults(text, "clinic-b")[EHR_SYNC] == "permit"
    assert tenant_defaults("", "any") == DEFAULT_POLICY
    policy = tenant_defaults("research-export=permit", "t")
    assert denying_consent([], RESEARCH_EXPORT, policy, NOW) is None


@pytest.mark.parametrize(
    "bad", ["ehr-sync", "ehr-sync=maybe", "marketing=permit", "t:=deny", "=permit"]
)
def test_a_malformed_policy_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="consent default"):
        parse_policy(bad)
