"""Every AuditEvent careloop builds is valid R4 (fhir.resources and HL7's JSON schema)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from support.builder_proofs import assert_valid

from careloop.fhir.audit_events import KINDS, OUTCOMES, AuditEntry, map_audit_event
from careloop.integrations.egress.consent import PURPOSE_CODINGS

FHIR_IDS = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)
TYPES = st.sampled_from(["Patient", "Observation", "QuestionnaireResponse", "Consent", "Task"])
REFERENCES = st.builds(lambda t, i: f"{t}/{i}", TYPES, FHIR_IDS)
# What entries hold besides references: a query label or a reason (never shown as an entity).
OTHER = st.sampled_from(
    [
        "search Observation",
        "(+3 more)",
        "Observation/o1/_history/2",
        "cli:clients.revoke",
        "client:cl_1",
        "export:job-1",
        "research-export",
    ]
)
AGENTS = st.one_of(
    st.builds(lambda i: f"client:{i}", FHIR_IDS),
    st.builds(lambda i: f"clinician:{i}", FHIR_IDS),
    st.sampled_from(
        [
            "worker:ehr-sync",
            "client:?",
            "cli:ops-user",
            "ehr:hospital",
            "cds:https://ehr.example/cds",
            "Practitioner/pr-1",
            "unknown",
        ]
    ),
)
ENTRIES = st.builds(
    AuditEntry,
    id=st.builds(lambda n: f"audit-{n}", st.integers(1, 2**62)),
    kind=st.sampled_from(KINDS),
    action=st.sampled_from("CRUDE"),
    recorded=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    agent=AGENTS,
    outcome=st.sampled_from(sorted(OUTCOMES)),
    entities=st.lists(st.one_of(REFERENCES, OTHER), max_size=5),
    purpose=st.one_of(st.none(), st.sampled_from(sorted(PURPOSE_CODINGS.values()))),
    destination=st.sampled_from(["", "ehr:ehr.example", "email:smtp.example:587"]),
)


@settings(max_examples=150, deadline=None)
@given(ENTRIES)
def test_audit_events_are_valid(entry: AuditEntry) -> None:
    event = map_audit_event(entry)
    assert_valid(event)
    assert event["agent"][0]["who"]["identifier"]["value"] == entry.agent
    refs = [e["what"]["reference"] for e in event.get("entity", [])]
    assert all(ref.count("/") in (1, 3) for ref in refs)


# kind -> (type code, subtype code or None), as BALP and DICOM name them.
EXPECTED_CODES = {
    "create": ("rest", "create"),
    "update": ("rest", "update"),
    "alert-ack": ("rest", "update"),
    "alert-resolve": ("rest", "update"),
    "export": ("110106", None),
    "admin": ("110100", None),
    "consent": ("rest", None),
}


def _entry(kind: str, action: str) -> AuditEntry:
    return AuditEntry(
        id="audit-1",
        kind=kind,
        action=action,
        recorded=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        agent="cli:ops-user" if kind == "admin" else "client:cl_1",
        outcome="success",
        entities=("Patient/p1", "Task/t1", "cli:notify.remove"),
    )


def test_new_kinds_carry_their_balp_codes() -> None:
    for kind, (type_code, subtype_code) in EXPECTED_CODES.items():
        action = {"create": "C", "admin": "E", "export": "E", "consent": "E"}.get(kind, "U")
        event = map_audit_event(_entry(kind, action))
        assert_valid(event)
        assert event["type"]["code"] == type_code, kind
        subtypes = [c["code"] for c in event.get("subtype", [])]
        assert subtypes == ([subtype_code] if subtype_code else []), kind
        assert event["action"] == action
        assert [e["what"]["reference"] for e in event["entity"]] == ["Patient/p1", "Task/t1"]


def test_an_unknown_kind_is_shown_as_application_activity() -> None:
    event = map_audit_event(_entry("something-new", "E"))
    assert event["type"]["code"] == "110100"
