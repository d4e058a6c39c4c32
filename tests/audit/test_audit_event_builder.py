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
OTHER = st.sampled_from(["search Observation", "(+3 more)", "Observation/o1/_history/2"])
AGENTS = st.one_of(
    st.builds(lambda i: f"client:{i}", FHIR_IDS),
    st.builds(lambda i: f"clinician:{i}", FHIR_IDS),
    st.sampled_from(["worker:ehr-sync", "client:?"]),
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
