"""Every resource careloop builds is valid FHIR R4, for every input its callers can pass.

Production does not validate careloop's own output as it is built (``checked`` validates only
with CARELOOP_CHECK_OWN_FHIR on, as in this test suite): these tests are the proof that stands in
for it. Each builder gets inputs drawn from the whole space its callers admit (the app API's
pydantic bounds: every instrument, every answer at every item, optional fields present or not,
any text the bounds take, date-times over the full range and every UTC offset FHIR allows) and
its output is validated with fhir.resources (``check_resource``, R4B) and with HL7's official
R4 JSON schema (``support.fhir_schema``). Closed sets (answers, ratings) are also walked
exhaustively.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar
from unicodedata import category

import orjson
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from support.builder_proofs import (
    OFFSETS,
    SPECIAL,
    admitted,
    assert_valid,
    optional,
    texts,
)
from support.clients import Caller
from support.fhir_schema import (
    ECMA_ONLY_SPACES,
    r4_schema_errors,
)

from careloop.fhir.alerts import (
    PRIORITY,
    TASK_STATUS,
    TaskNote,
    map_alert_communication,
    map_alert_task,
    task_id_for,
)
from careloop.fhir.encounters import (
    ENCOUNTER_STATUSES,
    MODALITIES,
    TelehealthSession,
    map_encounter,
)
from careloop.fhir.errors import MappingError
from careloop.fhir.patients import map_patient
from careloop.fhir.provenance import ACTIVITIES, map_provenance
from careloop.fhir.reports import ReportContext, map_rating_report, map_scored_report
from careloop.fhir.terminology import RATING_INSTRUMENTS, SCORED_INSTRUMENTS
from careloop.fhir.validation import (
    OWN_OUTPUT_CHECKS_ENV,
    FhirValidationError,
    check_resource,
    checked,
    own_output_checks,
)
from careloop.services.alerts.models import Alert
from careloop.services.alerts.vocabulary import AlertStatus, Channel, Severity
from careloop.services.cds.cards import cards_for
from careloop.services.common.bounds import LAST_YEAR
from careloop.services.common.constrained import (
    SafeDatetime,
    Text100,
    Text200,
    Text2000,
    Text4000,
    Uri300,
)
from careloop.services.reports.schemas import PatientRef, SymptomReportIn
from careloop.services.reports.service import _map, _Prepared

T = TypeVar("T")
FAST = settings(max_examples=50, deadline=None)


@pytest.fixture(autouse=True)
def _builders_unchecked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The builders run as in production, without their runtime check: each test validates."""
    monkeypatch.setenv(OWN_OUTPUT_CHECKS_ENV, "false")
    own_output_checks.cache_clear()
    yield
    monkeypatch.undo()
    own_output_checks.cache_clear()


FIRST_INSTANT = datetime(1, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=14)))  # 0001-01-01Z
LAST_INSTANT = datetime(
    LAST_YEAR + 1, 1, 1, 13, 59, 59, 999999, tzinfo=timezone(timedelta(hours=14))
)
# Any aware date-time in years 1..9999 (local) whose UTC year lies in 1..9998, as SafeDatetime.
SAFE_DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=OFFSETS,
).filter(admitted(SafeDatetime))
# What careloop itself stamps (utcnow, database timestamps): UTC.
UTC_DATETIMES = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(LAST_YEAR, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
)
UUIDS = st.uuids(version=4).map(str)
FHIR_IDS = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)
CLIENT_IDS = st.from_regex(r"cl_[A-Za-z0-9_\-]{16}", fullmatch=True)  # "cl_" + token_urlsafe(12)

PATIENT_REFS = st.fixed_dictionaries(
    {"system": texts(Uri300, 300, uri=True), "value": texts(Text200, 200)}
)
CONTEXTS = st.builds(
    ReportContext,
    report_id=UUIDS,
    patient_id=UUIDS,
    effective=SAFE_DATETIMES,
    recorded=UTC_DATETIMES,
    client_id=CLIENT_IDS,
    device_name=optional(texts(Text200, 200)),
    device_version=optional(texts(Text100, 100)),
    app_report_id=optional(texts(Text200, 200)),
    note=optional(texts(Text4000, 4000)),
)


def _context(**changes: Any) -> ReportContext:
    base = {
        "report_id": str(uuid.UUID(int=1, version=4)),
        "patient_id": str(uuid.UUID(int=2, version=4)),
        "effective": datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
        "recorded": datetime(2026, 11, 20, 9, 31, tzinfo=UTC),
        "client_id": "cl_" + "a" * 16,
    }
    return ReportContext(**(base | changes))


EDGE_CONTEXT = _context(
    effective=FIRST_INSTANT,
    recorded=datetime(LAST_YEAR, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    device_name="\u3000名前\u00a0",
    device_version="\ufeffv" * 50,
    app_report_id="x" * 200,
    note="\n".join(["\u00e9\u0301 \U0001f600 <b>&amp;</b>"] * 200)[:4000],
)


# --- symptom reports -------------------------------------------------------------------------


def test_every_answer_at_every_item_and_every_total_is_valid() -> None:
    """Exhaustive over the closed sets: each item at each answer, each total, each difficulty."""
    for key, spec in SCORED_INSTRUMENTS.items():
        n = len(spec.items)
        answer_sets = [
            [value if i == item else 0 for i in range(n)]
            for item in range(n)
            for value in range(spec.min_score, spec.max_score + 1)
        ]
        for total in range(spec.max_total + 1):  # every total, so every severity band
            answers = [min(spec.max_score, max(0, total - spec.max_score * i)) for i in range(n)]
            assert sum(answers) == total
            answer_sets.append(answers)
        for answers in answer_sets:
            for resource in map_scored_report(_context(), key, answers):
                assert_valid(resource)
        if spec.difficulty is not None:  # each difficulty (mapped apart from the answers)
            for option in spec.difficulty.options:
                for resource in map_scored_report(_context(), key, answer_sets[-1], option.score):
                    assert_valid(resource)


def test_every_integer_rating_is_valid() -> None:
    for key, spec in RATING_INSTRUMENTS.items():
        if spec.integer:
            for value in range(int(spec.minimum), int(spec.maximum) + 1):
                for v in (value, float(value)):
                    [observation] = map_rating_report(_context(), key, v)
                    assert_valid(observation)
                    assert observation["valueInteger"] == value


@st.composite
def scored_inputs(draw: st.DrawFn) -> tuple[str, list[int], int | None]:
    key = draw(st.sampled_from(sorted(SCORED_INSTRUMENTS)))
    spec = SCORED_INSTRUMENTS[key]
    answers = draw(
        st.lists(
            st.integers(spec.min_score, spec.max_score),
            min_size=len(spec.items),
            max_size=len(spec.items),
        )
    )
    difficulty = None
    if spec.difficulty is not None:
        scores = [o.score for o in spec.difficulty.options]
        difficulty = draw(optional(st.integers(min(scores), max(scores))))
    return key, answers, difficulty


@FAST
@given(ctx=CONTEXTS, report=scored_inputs())
@example(ctx=EDGE_CONTEXT, report=("phq-9", [3] * 9, 3))
@example(ctx=_context(effective=LAST_INSTANT), report=("gad-7", [0] * 7, None))
def test_scored_reports_are_valid(
    ctx: ReportContext, report: tuple[str, list[int], int | None]
) -> None:
    key, answers, difficulty = report
    questionnaire_response, observation = map_scored_report(ctx, key, answers, difficulty)
    assert_valid(questionnaire_response)
    assert_valid(observation)


SLEEP = RATING_INSTRUMENTS["sleep-duration"]
INTEGER_RATINGS = sorted(k for k, s in RATING_INSTRUMENTS.items() if s.integer)


@FAST
@given(ctx=CONTEXTS, hours=st.floats(SLEEP.minimum, SLEEP.maximum))
@example(ctx=EDGE_CONTEXT, hours=-0.0)
@example(ctx=_context(), hours=5e-324)
@example(ctx=_context(), hours=24.0)
@example(ctx=_context(), hours=23.999999999999996)
@example(ctx=_context(), hours=1e-7)
def test_sleep_durations_are_valid(ctx: ReportContext, hours: float) -> None:
    [observation] = map_rating_report(ctx, "sleep-duration", hours)
    assert_valid(observation)
    assert observation["valueQuantity"]["value"] == hours


@FAST
@given(
    ctx=CONTEXTS,
    key=st.sampled_from(INTEGER_RATINGS),
    value=st.integers(0, 10),
)
def test_integer_ratings_are_valid(ctx: ReportContext, key: str, value: int) -> None:
    [observation] = map_rating_report(ctx, key, value)
    assert_valid(observation)


# What an app sends for each instrument: the answers of a questionnaire, a rating in its range.
CONSISTENT_PAYLOADS = st.one_of(
    scored_inputs().map(
        lambda r: (
            {"instrument": r[0], "answers": r[1]}
            | ({"difficulty": r[2]} if r[2] is not None else {})
        )
    ),
    st.builds(
        lambda key, value: {"instrument": key, "value": value},
        st.sampled_from(INTEGER_RATINGS),
        st.one_of(st.integers(0, 10), st.integers(0, 10).map(float)),
    ),
    st.floats(SLEEP.minimum, SLEEP.maximum).map(
        lambda v: {"instrument": "sleep-duration", "value": v}
    ),
)
_SMALL_INTS = st.one_of(st.integers(-1, 4), st.integers(-(2**31), 2**31 - 1))
# Anything else the schema takes: any instrument with any answers, difficulty and value.
ARBITRARY_PAYLOADS = st.fixed_dictionaries(
    {"instrument": st.sampled_from(sorted(SCORED_INSTRUMENTS) + sorted(RATING_INSTRUMENTS))},
    optional={
        "answers": st.lists(_SMALL_INTS, max_size=20),
        "difficulty": _SMALL_INTS,
        "value": st.one_of(
            st.integers(-1, 11),
            st.floats(-1, 25),
            st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False),
        ),
    },
)
REPORT_EXTRAS = st.fixed_dictionaries(
    {},
    optional={
        "note": texts(Text4000, 4000),
        "device": st.fixed_dictionaries(
            {}, optional={"name": texts(Text200, 200), "version": texts(Text100, 100)}
        ),
        "app_report_id": texts(Text200, 200),
    },
)


def report_bodies(effective: st.SearchStrategy[datetime]) -> st.SearchStrategy[dict[str, Any]]:
    """Report bodies over the whole schema, two in three consistent (and so mapped).

    The others (a PHQ-9 with three answers, a mood of 11) are mostly refused by the mapping:
    whatever is not refused must map to valid resources too.
    """
    return st.builds(
        lambda patient, when, payload, extras: (
            {"patient": patient, "effective": when} | payload | extras
        ),
        PATIENT_REFS,
        effective,
        st.one_of(CONSISTENT_PAYLOADS, CONSISTENT_PAYLOADS, ARBITRARY_PAYLOADS),
        REPORT_EXTRAS,
    )


@FAST
@given(body=report_bodies(SAFE_DATETIMES), recorded=UTC_DATETIMES, client_id=CLIENT_IDS)
def test_any_admitted_report_maps_to_valid_resources_or_is_refused(
    body: dict[str, Any], recorded: datetime, client_id: str
) -> None:
    """The service's own dispatch (``_map``) on any report the schema admits."""
    try:
        report = SymptomReportIn.model_validate(body)
    except ValidationError:
        event("refused by the schema")
        return  # not admitted: never reaches a builder (the API answers 422)
    ctx = ReportContext(
        report_id=str(uuid.uuid4()),
        patient_id=str(uuid.uuid4()),
        effective=report.effective,
        recorded=recorded,
        client_id=client_id,
        device_name=report.device.name if report.device else None,
        device_version=report.device.version if report.device else None,
        app_report_id=report.app_report_id,
        note=report.note,
    )
    prepared = _Prepared(0, report, "", (report.patient.system, report.patient.value))
    try:
        resources = _map(prepared, ctx)
    except MappingError:
        event("refused by the mapping")
        return
    event(f"mapped: {report.instrument}")
    assert resources
    for resource in resources:
        assert_valid(resource)


# --- provenance, patients, encounters --------------------------------------------------------

TARGET_TYPES = ["Observation", "QuestionnaireResponse", "Patient", "Encounter", "CarePlan"]
TARGET_TYPES += ["Goal", "CareTeam", "Practitioner", "PractitionerRole"]
TARGETS = st.lists(
    st.builds(lambda t, i: f"{t}/{i}", st.sampled_from(TARGET_TYPES), st.one_of(UUIDS, FHIR_IDS)),
    min_size=1,
    max_size=4,
)
PROVENANCE_REPORT_IDS = st.one_of(
    UUIDS, st.builds(lambda i, v: f"{i}/v{v}", UUIDS, st.integers(1, 2**31 - 1))
)


@FAST
@given(
    report_id=PROVENANCE_REPORT_IDS,
    targets=TARGETS,
    recorded=UTC_DATETIMES,
    client_id=CLIENT_IDS,
    patient_id=UUIDS,
    activity=st.sampled_from(sorted(ACTIVITIES)),
)
def test_provenance_is_valid(
    report_id: str,
    targets: list[str],
    recorded: datetime,
    client_id: str,
    patient_id: str,
    activity: str,
) -> None:
    assert_valid(map_provenance(report_id, targets, recorded, client_id, patient_id, activity))


@FAST
@given(patient_id=UUIDS, refs=st.lists(PATIENT_REFS, min_size=1, max_size=3))
# Found here: a BOM in a system passed Uri300 (Python's isspace is false for U+FEFF) and made an
# Identifier.system the R4 JSON schema refuses (^\S*$); Uri300 now refuses it, as its documented
# pattern always did.
@example(patient_id="p-1", refs=[{"system": "https://app.example/\ufeffpatients", "value": "1"}])
@example(patient_id="p-1", refs=[{"system": "\ufeff", "value": "\ufeff"}])
def test_patients_are_valid(patient_id: str, refs: list[dict[str, str]]) -> None:
    """The Patient of the identifiers the app API admits (PatientRef)."""
    taken = [PatientRef.model_validate(r) for r in refs if admitted(PatientRef)(r)]
    if not taken:
        return
    assert_valid(map_patient(patient_id, [(p.system, p.value) for p in taken]))


@FAST
@given(
    session=st.builds(
        TelehealthSession,
        session_id=UUIDS,
        patient_id=UUIDS,
        practitioner=optional(st.tuples(texts(Uri300, 300, uri=True), texts(Text200, 200))),
        status=st.sampled_from(sorted(ENCOUNTER_STATUSES)),
        modality=st.sampled_from(sorted(MODALITIES)),
        start=optional(SAFE_DATETIMES),
        end=optional(SAFE_DATETIMES),
        platform=optional(texts(Text200, 200)),
        reason=optional(texts(Text2000, 2000)),
    )
)
def test_encounters_are_valid(session: TelehealthSession) -> None:
    if session.start and session.end and session.end < session.start:
        with pytest.raises(MappingError):
            map_encounter(session)
        return
    assert_valid(map_encounter(session))


# --- alerts: Task and Communication ----------------------------------------------------------

PRACTITIONER_REFS = FHIR_IDS.map(lambda i: f"Practitioner/{i}")
# Who acknowledged or resolved: an app client's or clinician's name (AckIn.by: Text200), or
# Practitioner/{id} when a clinician of the dashboard or the EHR did.
ACTORS = st.one_of(
    PRACTITIONER_REFS, texts(Text200, 200), texts(Text200, 187).map(lambda s: f"Practitioner/{s}")
)
TITLES = texts(Text2000, 2000)  # "; "-joined rule titles of a care program, or the rule id
NOTES = st.builds(TaskNote, text=texts(Text4000, 4000), time=UTC_DATETIMES, author=optional(ACTORS))


@FAST
@given(
    alert_id=UUIDS,
    patient_id=UUIDS,
    observation_id=optional(UUIDS),
    severity=st.sampled_from(sorted(PRIORITY)),
    status=st.sampled_from(sorted(TASK_STATUS)),
    title=TITLES,
    owner=optional(st.one_of(PRACTITIONER_REFS, ACTORS.filter(lambda a: a.startswith("Pr")))),
    authored=UTC_DATETIMES,
    modified=UTC_DATETIMES,
    note=optional(texts(Text4000, 4000)),
    notes=st.lists(NOTES, max_size=2),
)
def test_alert_tasks_are_valid(
    alert_id: str,
    patient_id: str,
    observation_id: str | None,
    severity: str,
    status: str,
    title: str,
    owner: str | None,
    authored: datetime,
    modified: datetime,
    note: str | None,
    notes: Sequence[TaskNote],
) -> None:
    task = map_alert_task(
        alert_id,
        patient_id,
        observation_id,
        severity,
        status,
        title,
        owner,
        authored,
        modified,
        note,
        notes=notes,
    )
    assert_valid(task)


@FAST
@given(
    notification_id=UUIDS,
    alert_id=UUIDS,
    patient_id=UUIDS,
    observation_id=optional(UUIDS),
    recipient=st.one_of(st.just("oncall"), PRACTITIONER_REFS),  # RouteIn.recipient
    channel=st.sampled_from([c.value for c in Channel]),
    sent=UTC_DATETIMES,
    title=TITLES,
)
def test_alert_communications_are_valid(
    notification_id: str,
    alert_id: str,
    patient_id: str,
    observation_id: str | None,
    recipient: str,
    channel: str,
    sent: datetime,
    title: str,
) -> None:
    communication = map_alert_communication(
        notification_id, alert_id, patient_id, observation_id, recipient, channel, sent, title
    )
    assert_valid(communication)


@FAST
@given(
    alert_id=UUIDS,
    severity=st.sampled_from([s.value for s in Severity]),
    status=st.sampled_from([AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]),
    rule_id=st.sampled_from(["phq9-item9", "phq9-total", "gad7-total"]),
    title=optional(texts(Text200, 200)),
    ehr_patient_id=FHIR_IDS,  # CdsPatientViewContext.patientId
)
def test_cds_card_suggested_tasks_are_valid(
    alert_id: str,
    severity: str,
    status: str,
    rule_id: str,
    title: str | None,
    ehr_patient_id: str,
) -> None:
    """The Tasks a CDS Hooks card suggests to the EHR (built without ``checked``)."""
    alert = Alert(
        id=alert_id,
        tenant_id="t",
        patient_id=str(uuid.uuid4()),
        rule_id=rule_id,
        severity=severity,
        status=status,
        explanation=orjson.dumps({"rule": rule_id, "title": title}).decode(),
        opened_at=datetime(2026, 11, 20, tzinfo=UTC),
        task_id=task_id_for(alert_id),
    )
    [card] = cards_for(
        [alert], [], "https://careloop.example", "t", alert.patient_id, ehr_patient_id
    )
    actions = [a for suggestion in card["suggestions"] for a in suggestion["actions"]]
    assert len(actions) == (2 if status == AlertStatus.OPEN else 1)
    for action in actions:
        assert_valid(action["resource"])


# --- the R4 JSON schema's reading of whitespace ----------------------------------------------


def test_r4_json_schema_refuses_only_the_ecma_spaces_that_fhir_resources_accepts() -> None:
    """The one place the two validators disagree on careloop's output, pinned per character.

    The R4 JSON schema (informative) reads ``[ \\r\\n\\t\\S]`` with ECMA-262's ``\\s``, so it
    refuses a no-break or ideographic space inside a string; fhir.resources (and the R4 XML schema)
    accept them, and careloop keeps a patient's text as written. Every other character the app
    API admits passes both (the property tests above, with these characters mapped to spaces).
    """
    # every separator, format and C1 control character, and the specials: the others are
    # letters, marks, numbers, symbols and punctuation, which no \s of any regex dialect matches
    kinds = ("Zs", "Zl", "Zp", "Cf", "Cc")
    candidates = set(SPECIAL) | {chr(c) for c in range(0x110000) if category(chr(c)) in kinds}
    refused = set()
    for c in sorted(candidates):
        if not admitted(Text4000)(f"a{c}b"):
            continue
        [observation] = map_rating_report(_context(note=f"a{c}b"), "mood", 5)
        check_resource(observation)
        if r4_schema_errors(observation):
            refused.add(c)
    assert refused == ECMA_ONLY_SPACES


# --- through the API ---------------------------------------------------------------------------


def _json_body(body: dict[str, Any]) -> dict[str, Any]:
    return body | {"effective": body["effective"].isoformat()}


PAST = datetime(2026, 1, 1, tzinfo=UTC)  # before any test runs, so never "in the future"


# One caller (tenant) for all examples of a backend: an example that repeats an earlier one's
# patient and effective time is a duplicate (200, or 409 if its content differs), nothing new.
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=report_bodies(SAFE_DATETIMES.filter(lambda d: d < PAST)))
def test_reports_through_the_api_store_valid_resources(
    caller: Caller, body: dict[str, Any]
) -> None:
    """What the API stores for a report, read back over the FHIR API, is valid."""
    response = caller.post("/v1/symptom-reports", json=_json_body(body))
    event(f"answered {response.status_code}")
    if response.status_code in (409, 422):
        return  # a different report under the same key, or refused by the schema or the mapping
    assert response.status_code in (200, 201), response.text
    created = response.json()
    for ref in [*created["resources"], created["patient"]]:
        stored = caller.get(f"/fhir/{ref}")
        assert stored.status_code == 200, stored.text
        assert_valid(stored.json())


# --- checked: on in tests, off in production -------------------------------------------------


def test_checked_validates_only_when_own_output_checks_are_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    invalid = {"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}}
    try:
        for off in (None, "", "0", "false", "no", "off"):
            if off is None:
                monkeypatch.delenv(OWN_OUTPUT_CHECKS_ENV, raising=False)
            else:
                monkeypatch.setenv(OWN_OUTPUT_CHECKS_ENV, off)
            own_output_checks.cache_clear()
            assert checked(invalid) is invalid
        for on in ("true", "1", "yes", " TRUE "):
            monkeypatch.setenv(OWN_OUTPUT_CHECKS_ENV, on)
            own_output_checks.cache_clear()
            with pytest.raises(FhirValidationError) as info:
                checked(invalid)
            assert [i.expression for i in info.value.issues] == ["Observation.status"]
    finally:
        monkeypatch.undo()
        own_output_checks.cache_clear()
    assert own_output_checks()  # the rest of the suite validates again
