"""POST /v1/group-sessions: validation, the FHIR it stores, retries and the FHIR API.

Runs on SQLite and PostgreSQL as every API test does.
"""

from __future__ import annotations

from typing import Any

from group_bodies import group_session, participant
from sqlalchemy import Engine, func, select
from sqlmodel import Session
from support.clients import Caller

from careloop.fhir.groups import ATTENDANCE_SYSTEM
from careloop.services.store.models import FhirResource
from careloop.services.tenancy.models import Tenant


def _post(caller: Caller, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = caller.post("/v1/group-sessions", json=body)
    assert response.status_code == status, response.text
    created: dict[str, Any] = response.json()
    return created


def _count(engine: Engine, tenant: str) -> int:
    """The FHIR resources stored in the tenant named ``tenant``."""
    with Session(engine) as session:
        tenant_id = session.execute(select(Tenant.id).where(Tenant.name == tenant)).scalar_one()
        return int(
            session.execute(
                select(func.count())
                .select_from(FhirResource)
                .where(
                    FhirResource.tenant_id == tenant_id  # type: ignore[arg-type]
                )
            ).scalar_one()
        )


def _fhir(caller: Caller, reference: str) -> dict[str, Any]:
    response = caller.get(f"/fhir/{reference}")
    assert response.status_code == 200, response.text
    resource: dict[str, Any] = response.json()
    return resource


def _attendance(encounter: dict[str, Any]) -> str:
    return next(
        c["code"]
        for t in encounter["type"]
        for c in t["coding"]
        if c["system"] == ATTENDANCE_SYSTEM
    )


def test_a_session_is_a_group_a_group_encounter_and_one_encounter_per_participant(
    caller: Caller,
) -> None:
    created = _post(caller, group_session())
    group = _fhir(caller, created["group"])
    assert (group["type"], group["actual"], group["quantity"]) == ("person", True, 3)
    members = [m["entity"]["reference"] for m in group["member"]]
    assert members == [p["patient"] for p in created["participants"]]
    whole = _fhir(caller, created["encounter"])
    assert whole["subject"]["reference"] == created["group"]
    assert (whole["status"], whole["class"]["code"]) == ("finished", "VR")
    assert whole["participant"][0]["individual"]["identifier"]["value"] == "1234567893"
    assert whole["period"] == {"start": "2026-11-24T17:00:00Z", "end": "2026-11-24T18:00:00Z"}
    by_attendance = {}
    for p in created["participants"]:
        encounter = _fhir(caller, p["encounter"])
        assert encounter["subject"]["reference"] == p["patient"]
        assert encounter["partOf"]["reference"] == created["encounter"]
        assert _attendance(encounter) == p["attendance"]
        by_attendance[p["attendance"]] = encounter
    assert by_attendance["attended"]["status"] == "finished"
    assert by_attendance["attended"]["period"]["end"] == "2026-11-24T18:00:00Z"
    assert by_attendance["left-early"]["status"] == "finished"
    assert by_attendance["left-early"]["period"]["end"] == "2026-11-24T17:40:00Z"
    assert by_attendance["no-show"]["status"] == "cancelled"
    again = caller.get(f"/v1/group-sessions/{created['id']}")
    assert again.status_code == 200 and again.json() == created


def test_in_person_is_ambulatory_and_a_planned_session_has_no_attendance(caller: Caller) -> None:
    planned = group_session(
        "grp-planned",
        [participant("g-p1", None)],
        status="planned",
        modality="in-person",
        end=None,
    )
    created = _post(caller, planned)
    whole = _fhir(caller, created["encounter"])
    assert (whole["status"], whole["class"]["code"]) == ("planned", "AMB")
    [p] = created["participants"]
    assert p["attendance"] is None
    assert _fhir(caller, p["encounter"])["status"] == "planned"


def test_a_retry_duplicates_nothing_and_different_content_is_a_conflict(
    caller: Caller, engine: Engine
) -> None:
    first = _post(caller, group_session("grp-retry"))
    stored = _count(engine, caller.tenant)
    assert _post(caller, group_session("grp-retry"), 200) == first
    assert _count(engine, caller.tenant) == stored
    changed = group_session("grp-retry", [participant("g-1", "no-show")])
    conflict = caller.post("/v1/group-sessions", json=changed)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["issue"][0]["expression"] == ["app_session_id"]
    assert _count(engine, caller.tenant) == stored


def test_the_same_app_id_of_another_client_is_another_session(
    caller: Caller, app_client: Any, engine: Engine
) -> None:
    from support.clients import make_caller

    other = make_caller(app_client, engine, tenant=caller.tenant)
    assert _post(caller, group_session("grp-x"))["id"] != _post(other, group_session("grp-x"))["id"]


def test_the_fhir_api_searches_groups_and_encounters(caller: Caller) -> None:
    created = _post(caller, group_session("grp-search"))
    patient = created["participants"][0]["patient"]
    groups = caller.get("/fhir/Group", params={"member": patient}).json()
    assert [e["resource"]["id"] for e in groups["entry"]] == [created["group"].split("/")[1]]
    parts = caller.get("/fhir/Encounter", params={"part-of": created["encounter"]}).json()
    assert parts["total"] == 3
    mine = caller.get("/fhir/Encounter", params={"patient": patient}).json()
    assert [e["resource"]["id"] for e in mine["entry"]] == [
        created["participants"][0]["encounter"].split("/")[1]
    ]
    cancelled = caller.get(
        "/fhir/Encounter", params={"part-of": created["encounter"], "status": "cancelled"}
    ).json()
    assert cancelled["total"] == 1
    capability = caller.get("/fhir/metadata").json()
    types = {r["type"] for r in capability["rest"][0]["resource"]}
    assert "Group" in types


def _issues(response: Any) -> list[str]:
    return [e for i in response.json()["issue"] for e in i.get("expression", [])]


def test_invalid_bodies_are_refused_naming_the_field_and_write_nothing(
    caller: Caller, engine: Engine
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (group_session(modality="carrier-pigeon"), "modality"),
        (group_session(participants=[]), "participants"),
        (group_session(participants=[participant("a", "maybe")]), "participants[0].attendance"),
        (group_session(participants=[participant("a", None)]), "participants[0].attendance"),
        (
            group_session(status="planned", participants=[participant("a", "attended")]),
            "participants[0].attendance",
        ),
        (
            group_session(participants=[participant("a"), participant("a")]),
            "participants[1].patient",
        ),
        (
            group_session(
                participants=[participant("a", "attended", left_at="2026-11-24T17:10:00Z")]
            ),
            "participants[0].left_at",
        ),
        (
            group_session(
                participants=[participant("a", "left-early", left_at="2026-11-24T19:00:00Z")]
            ),
            "participants[0].left_at",
        ),
        (group_session(end="2026-11-24T16:00:00Z"), "end"),
        (group_session(start="2026-11-24T17:00:00"), "start"),
        ({k: v for k, v in group_session().items() if k != "facilitator"}, "facilitator"),
        (
            group_session(facilitator={"system": "x", "value": "1", "name": "Dr X"}),
            "facilitator.name",
        ),
        ({k: v for k, v in group_session().items() if k != "app_session_id"}, "app_session_id"),
        (group_session(participants=[participant(str(i)) for i in range(101)]), "participants"),
    ]
    for body, field in cases:
        response = caller.post("/v1/group-sessions", json=body)
        assert response.status_code == 422, (field, response.text)
        assert field in _issues(response), (field, response.text)
    assert _count(engine, caller.tenant) == 0


def test_a_token_without_encounter_scope_is_refused(app_client: Any, engine: Engine) -> None:
    from support.clients import make_caller

    reader = make_caller(app_client, engine, scope="system/Observation.c")
    response = reader.post("/v1/group-sessions", json=group_session())
    assert response.status_code == 403, response.text


def test_a_planned_session_posted_again_as_finished_records_attendance(
    caller: Caller, engine: Engine
) -> None:
    people = [participant("g-plan-1", None), participant("g-plan-2", None)]
    planned = group_session("grp-plan", people, status="planned", end="2026-11-24T18:00:00Z")
    first = _post(caller, planned)
    stored = _count(engine, caller.tenant)
    held = group_session(
        "grp-plan",
        [participant("g-plan-1", "attended"), participant("g-plan-2", "no-show")],
        end="2026-11-24T18:10:00Z",
    )
    done = _post(caller, held, 200)
    assert (done["id"], done["encounter"]) == (first["id"], first["encounter"])
    assert [p["attendance"] for p in done["participants"]] == ["attended", "no-show"]
    whole = _fhir(caller, done["encounter"])
    assert (whole["status"], whole["meta"]["versionId"]) == ("finished", "2")
    assert whole["period"]["end"] == "2026-11-24T18:10:00Z"
    missed = _fhir(caller, done["participants"][1]["encounter"])
    assert (missed["status"], _attendance(missed)) == ("cancelled", "no-show")
    assert _count(engine, caller.tenant) == stored + 1  # new versions and the UPDATE Provenance
    assert _post(caller, held, 200) == done  # a retry of the update changes nothing
    assert _fhir(caller, done["encounter"])["meta"]["versionId"] == "2"
    assert caller.post("/v1/group-sessions", json=planned).status_code == 409  # no way back
    other = group_session("grp-plan", [participant("g-plan-1", "attended")])
    assert caller.post("/v1/group-sessions", json=other).status_code == 409  # not the same people
