"""The group-session builders give valid FHIR R4 for every input the app API admits.

As in tests/fhir/test_builders_valid.py: inputs are drawn from the whole space the API's pydantic
bounds admit (any identifier text, every date-time and UTC offset, up to the participant bound),
closed sets (modality, attendance, status) are walked exhaustively, and each output is validated
with fhir.resources (R4B) and HL7's R4 JSON schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.builder_proofs import OFFSETS, admitted, assert_valid, texts

from careloop.fhir.errors import MappingError
from careloop.fhir.groups import (
    ATTENDANCE,
    MODALITIES,
    SESSION_STATUSES,
    GroupSession,
    Participant,
    attendance_of,
    map_group,
    map_group_encounter,
    map_participant_encounter,
)
from careloop.fhir.validation import OWN_OUTPUT_CHECKS_ENV, own_output_checks
from careloop.services.common.constrained import SafeDatetime, Text200, Uri300
from careloop.services.groups.schemas import Attendance, Modality, SessionStatus

FAST = settings(max_examples=60, deadline=None)


@pytest.fixture(autouse=True)
def _builders_unchecked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The builders run as in production, without their runtime check: each test validates."""
    monkeypatch.setenv(OWN_OUTPUT_CHECKS_ENV, "false")
    own_output_checks.cache_clear()
    yield
    monkeypatch.undo()
    own_output_checks.cache_clear()


SAFE_DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=OFFSETS,
).filter(admitted(SafeDatetime))
UUIDS = st.uuids().map(str)


@st.composite
def sessions(draw: st.DrawFn) -> GroupSession:
    """A session as the service hands it over after the API's checks."""
    status = draw(st.sampled_from(sorted(SESSION_STATUSES)))
    start = draw(SAFE_DATETIMES)
    end = draw(st.one_of(st.none(), SAFE_DATETIMES.filter(lambda e: e >= start)))
    count = draw(st.integers(min_value=1, max_value=8))
    participants = []
    for _ in range(count):
        attendance = None if status == "planned" else draw(st.sampled_from(sorted(ATTENDANCE)))
        left_at = None
        if attendance == "left-early" and draw(st.booleans()):
            left_at = draw(
                SAFE_DATETIMES.filter(lambda t: t >= start and (end is None or t <= end))
            )
        participants.append(Participant(draw(UUIDS), draw(UUIDS), attendance, left_at))
    return GroupSession(
        group_id=draw(UUIDS),
        encounter_id=draw(UUIDS),
        facilitator=(draw(texts(Uri300, 300, uri=True)), draw(texts(Text200, 200))),
        modality=draw(st.sampled_from(sorted(MODALITIES))),
        status=status,
        start=start,
        end=end,
        participants=tuple(participants),
    )


def _session(**changes: Any) -> GroupSession:
    base: dict[str, Any] = {
        "group_id": "5f0e2c4e-8d1b-5f4e-9a55-0d6f3c1b2a90",
        "encounter_id": "0b7e3a51-4c1d-4e8f-9a2b-6d5c4b3a2f10",
        "facilitator": ("http://hl7.org/fhir/sid/us-npi", "1234567893"),
        "modality": "video",
        "status": "finished",
        "start": datetime(2026, 11, 24, 17, tzinfo=UTC),
        "end": datetime(2026, 11, 24, 18, tzinfo=UTC),
        "participants": (Participant("p-1", "pe-1", "attended"),),
    }
    return GroupSession(**(base | changes))


def test_the_builders_cover_exactly_what_the_api_takes() -> None:
    for literal, known in (
        (Modality, MODALITIES),
        (Attendance, ATTENDANCE),
        (SessionStatus, SESSION_STATUSES),
    ):
        assert set(literal.__args__) == set(known)  # type: ignore[attr-defined]


def test_every_modality_and_attendance_is_valid() -> None:
    for modality in MODALITIES:
        for attendance in ATTENDANCE:
            participant = Participant("p-1", "pe-1", attendance)
            session = _session(modality=modality, participants=(participant,))
            assert_valid(map_group(session))
            assert_valid(map_group_encounter(session))
            encounter = map_participant_encounter(session, participant)
            assert_valid(encounter)
            assert encounter["status"] == ATTENDANCE[attendance][0]
            assert attendance_of(encounter) == attendance
            assert encounter["class"]["code"] == MODALITIES[modality][0]


@FAST
@given(session=sessions())
def test_groups_and_encounters_are_valid(session: GroupSession) -> None:
    group = map_group(session)
    assert_valid(group)
    assert group == map_group(session)  # a retry maps to the same resource
    assert [m["entity"]["reference"] for m in group["member"]] == [
        f"Patient/{p.patient_id}" for p in session.participants
    ]
    whole = map_group_encounter(session)
    assert_valid(whole)
    assert whole["subject"] == {"reference": f"Group/{session.group_id}"}
    for participant in session.participants:
        encounter = map_participant_encounter(session, participant)
        assert_valid(encounter)
        assert encounter["partOf"] == {"reference": f"Encounter/{session.encounter_id}"}
        assert attendance_of(encounter) == participant.attendance


@pytest.mark.parametrize(
    ("changes", "participant", "field"),
    [
        ({"modality": "fax"}, Participant("p", "pe", "attended"), "modality"),
        ({}, Participant("p", "pe", "maybe"), "attendance"),
        ({}, Participant("p", "pe", None), "attendance"),
        ({"status": "planned"}, Participant("p", "pe", "attended"), "attendance"),
        (
            {},
            Participant("p", "pe", "attended", datetime(2026, 11, 24, 17, 30, tzinfo=UTC)),
            "left_at",
        ),
        (
            {},
            Participant("p", "pe", "left-early", datetime(2026, 11, 24, 19, tzinfo=UTC)),
            "left_at",
        ),
        ({}, Participant("not an id!", "pe", "attended"), "patient_id"),
    ],
)
def test_what_the_api_refuses_is_a_mapping_error(
    changes: dict[str, Any], participant: Participant, field: str
) -> None:
    with pytest.raises(MappingError) as caught:
        map_participant_encounter(_session(**changes), participant)
    assert caught.value.field == field


def test_an_end_before_the_start_is_a_mapping_error() -> None:
    session = _session(end=datetime(2026, 11, 24, 16, tzinfo=UTC) - timedelta(minutes=1))
    with pytest.raises(MappingError) as caught:
        map_group_encounter(session)
    assert caught.value.field == "end"
    with pytest.raises(MappingError):
        map_group_encounter(_session(status="in-progress"))
