"""Each group-session write has one Provenance: valid FHIR, resolving targets, never duplicated."""

from __future__ import annotations

from typing import Any

from group_bodies import group_session, participant
from sqlalchemy import Engine, select
from sqlmodel import Session
from support.clients import Caller
from support.fhir_schema import r4_schema_errors

from careloop.fhir.groups import group_provenance_id
from careloop.fhir.identifiers import APP_CLIENT_SYSTEM
from careloop.fhir.validation import check_resource
from careloop.services.store.models import FhirResource
from careloop.services.tenancy.models import Tenant

NPI = {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}


def _post(caller: Caller, body: dict[str, Any], status: int) -> dict[str, Any]:
    response = caller.post("/v1/group-sessions", json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _provenances(engine: Engine, caller: Caller) -> list[dict[str, Any]]:
    """The Provenances stored in the caller's tenant (as the FHIR API serves them)."""
    with Session(engine) as session:
        tenant = session.exec(
            select(Tenant.id).where(Tenant.name == caller.tenant)  # type: ignore[call-overload]
        ).one()
        ids = session.execute(
            select(FhirResource.id).where(
                FhirResource.tenant_id == tenant[0],  # type: ignore[arg-type]
                FhirResource.resource_type == "Provenance",  # type: ignore[arg-type]
            )
        ).scalars()
        found = list(ids)
    return [_fhir(caller, f"Provenance/{i}") for i in found]


def _fhir(caller: Caller, reference: str) -> dict[str, Any]:
    response = caller.get(f"/fhir/{reference}")
    assert response.status_code == 200, f"{reference}: {response.text}"
    resource: dict[str, Any] = response.json()
    return resource


def _written(answer: dict[str, Any]) -> list[str]:
    return [answer["group"], answer["encounter"], *(p["encounter"] for p in answer["participants"])]


def _valid(provenance: dict[str, Any]) -> None:
    check_resource(provenance)
    assert r4_schema_errors(provenance) == []


def _activity(provenance: dict[str, Any]) -> str:
    code: str = provenance["activity"]["coding"][0]["code"]
    return code


def test_a_recorded_session_has_one_provenance_of_what_it_wrote(
    caller: Caller, engine: Engine
) -> None:
    answer = _post(caller, group_session("grp-prov-1"), 201)
    [provenance] = _provenances(engine, caller)
    _valid(provenance)
    encounter_id = answer["encounter"].removeprefix("Encounter/")
    assert provenance["id"] == group_provenance_id(encounter_id, "CREATE")
    assert _activity(provenance) == "CREATE"
    targets = [t["reference"] for t in provenance["target"]]
    assert targets == _written(answer)
    for target in targets:
        assert _fhir(caller, target)["id"] == target.partition("/")[2]
    client, facilitator = provenance["agent"]
    assert client["type"]["coding"][0]["code"] == "assembler"
    assert client["who"]["identifier"] == {"system": APP_CLIENT_SYSTEM, "value": caller.client_id}
    assert facilitator["type"]["coding"][0]["code"] == "performer"
    assert facilitator["who"] == {"type": "Practitioner", "identifier": NPI}
    business = provenance["extension"][0]["valueIdentifier"]
    assert business["value"] == provenance["id"]


def test_a_retry_writes_no_second_provenance(caller: Caller, engine: Engine) -> None:
    body = group_session("grp-prov-retry")
    first = _post(caller, body, 201)
    assert _post(caller, body, 200) == first
    assert _post(caller, body, 200) == first
    assert len(_provenances(engine, caller)) == 1


def test_a_planned_session_held_later_gets_an_update_provenance_once(
    caller: Caller, engine: Engine
) -> None:
    people = [participant("g-prov-1", None), participant("g-prov-2", None)]
    planned = group_session("grp-prov-plan", people, status="planned")
    _post(caller, planned, 201)
    held = group_session(
        "grp-prov-plan", [participant("g-prov-1", "attended"), participant("g-prov-2", "no-show")]
    )
    done = _post(caller, held, 200)
    assert _post(caller, held, 200) == done  # a retry of the update
    provenances = {_activity(p): p for p in _provenances(engine, caller)}
    assert sorted(provenances) == ["CREATE", "UPDATE"]
    update = provenances["UPDATE"]
    _valid(update)
    # The update rewrote the Encounters (not the Group): those are its targets.
    assert [t["reference"] for t in update["target"]] == _written(done)[1:]
    assert provenances["CREATE"]["id"] != update["id"]
    for target in update["target"]:
        assert _fhir(caller, target["reference"])["meta"]["versionId"] == "2"


def test_a_refused_session_writes_no_provenance(caller: Caller, engine: Engine) -> None:
    body = group_session("grp-prov-409")
    _post(caller, body, 201)
    changed = group_session("grp-prov-409", modality="phone")
    assert caller.post("/v1/group-sessions", json=changed).status_code == 409
    assert len(_provenances(engine, caller)) == 1
