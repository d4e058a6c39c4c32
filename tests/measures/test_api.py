"""``GET /v1/patients/{id}/measures`` on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from support.clients import Caller, make_caller
from support.patient_data import (
    care_plan,
    gad7_answers,
    phq9_answers,
    post_fhir,
    post_reports,
    report,
)

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def _weekly(patient: str, phq9: list[int], gad7: list[int]) -> list[dict[str, object]]:
    reports = [
        report(patient, "phq-9", T0 + timedelta(weeks=i), answers=phq9_answers(t))
        for i, t in enumerate(phq9)
    ]
    reports += [
        report(patient, "gad-7", T0 + timedelta(weeks=i, hours=1), answers=gad7_answers(t))
        for i, t in enumerate(gad7)
    ]
    return reports


def test_measures_judge_response_remission_and_reliable_change(caller: Caller) -> None:
    patient = post_reports(caller, _weekly("m-1", [18, 15, 12, 9, 8], [12, 12, 11, 10, 10, 10, 10]))
    response = caller.get(f"/v1/patients/{patient}/measures")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["patient"] == f"Patient/{patient}"
    phq9, gad7 = body["measures"]["phq-9"], body["measures"]["gad-7"]
    assert phq9["baseline"]["value"] == 18 and phq9["latest"]["value"] == 8
    assert phq9["change"] == -10 and phq9["response"] is True and phq9["remission"] is False
    assert phq9["reliable_change"] == "improved" and phq9["trend"] == "down"
    assert phq9["not_on_track"] is False
    assert "Jacobson & Truax" in phq9["method"]["text"]
    assert phq9["method"]["reliable_change_points"] == 6
    # GAD-7: 12 -> 10 over six weeks, 17% better: not on track, no reliable change, flat.
    assert gad7["change"] == -2 and gad7["reliable_change"] == "none"
    assert gad7["not_on_track"] is True and gad7["trend"] == "flat"
    assert gad7["method"]["reliable_change_points"] == 4


def test_baseline_is_the_first_score_of_the_care_plan(caller: Caller) -> None:
    patient = post_reports(caller, _weekly("m-2", [25, 20, 16, 14, 6], []))
    post_fhir(caller, care_plan(patient, (T0 + timedelta(weeks=2)).isoformat()))
    phq9 = caller.get(f"/v1/patients/{patient}/measures").json()["measures"]["phq-9"]
    assert phq9["baseline"]["value"] == 16 and phq9["latest"]["value"] == 6
    assert phq9["response"] is True and phq9["weeks_in_treatment"] == 2.0
    gad7 = caller.get(f"/v1/patients/{patient}/measures").json()["measures"]["gad-7"]
    assert gad7["latest"] is None and gad7["response"] is None


def test_remission_at_four_not_five(caller: Caller) -> None:
    five = post_reports(caller, _weekly("m-3", [12, 5], [9, 5]))
    four = post_reports(caller, _weekly("m-4", [12, 4], [9, 4]))
    measures5 = caller.get(f"/v1/patients/{five}/measures").json()["measures"]
    measures4 = caller.get(f"/v1/patients/{four}/measures").json()["measures"]
    assert measures5["phq-9"]["remission"] is False and measures5["gad-7"]["remission"] is False
    assert measures4["phq-9"]["remission"] is True and measures4["gad-7"]["remission"] is True


def test_unknown_and_other_tenants_patients_are_404(
    caller: Caller, app_client: TestClient, engine: Engine
) -> None:
    patient = post_reports(caller, _weekly("m-5", [10], []))
    other = make_caller(app_client, engine)
    response = other.get(f"/v1/patients/{patient}/measures")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert caller.get("/v1/patients/nobody-here/measures").status_code == 404


@pytest.mark.parametrize("bad", ["a" * 65, "bad%20id", "x;drop", "%00"])
def test_hostile_ids_are_refused_with_an_outcome(caller: Caller, bad: str) -> None:
    response = caller.get(f"/v1/patients/{bad}/measures")
    assert 400 <= response.status_code < 500
    assert response.json()["resourceType"] == "OperationOutcome"


def test_needs_observation_read_scope(app_client: TestClient, engine: Engine) -> None:
    narrow = make_caller(app_client, engine, scope="system/Patient.rs")
    assert narrow.get("/v1/patients/whoever/measures").status_code == 403
    assert app_client.get("/v1/patients/whoever/measures").status_code == 401


def test_scores_behind_many_daily_ratings_are_found(caller: Caller) -> None:
    """The newest PHQ-9 sits behind 1,200 daily ratings: the bounded reader pages past them."""
    reports = [report("m-6", "phq-9", T0, answers=phq9_answers(14))]
    reports.append(report("m-6", "phq-9", T0 + timedelta(days=1), answers=phq9_answers(11)))
    reports += [
        report("m-6", kind, T0 + timedelta(days=2 + d, hours=h), value=5)
        for d in range(600)
        for kind, h in (("mood", 20), ("sleep-duration", 7))
    ]
    patient = post_reports(caller, reports)
    phq9 = caller.get(f"/v1/patients/{patient}/measures").json()["measures"]["phq-9"]
    assert phq9["baseline"]["value"] == 14 and phq9["latest"]["value"] == 11
    assert phq9["previous"]["value"] == 14 and phq9["trend"] == "down"
