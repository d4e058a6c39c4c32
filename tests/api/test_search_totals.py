"""Search totals and keyset pages: ``_total``, a total counted once and carried, token pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from support.clients import Caller
from support.reports import phq9

from careloop.services.store import search

CODE = "http://loinc.org|44261-6"


def _get(caller: Caller, url: str, **params: Any) -> dict[str, Any]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    response = caller.get(path, params=params or None)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _seed(caller: Caller, patient: str, days: int) -> None:
    reports = [phq9(patient, effective=f"2026-11-{d:02d}T09:00:00Z") for d in range(1, days + 1)]
    results = caller.post("/v1/symptom-reports/batch", json=reports).json()["results"]
    assert all(r["status"] == 201 for r in results)


def _pages(caller: Caller, **params: Any) -> list[dict[str, Any]]:
    pages = [_get(caller, "/fhir/Observation", **params)]
    while link := next((k["url"] for k in pages[-1]["link"] if k["relation"] == "next"), None):
        pages.append(_get(caller, link))
    return pages


def _ids(pages: list[dict[str, Any]]) -> list[str]:
    return [e["resource"]["id"] for page in pages for e in page.get("entry", [])]


@pytest.mark.parametrize("sort", ["", "-date", "date", "_lastUpdated", "-_lastUpdated", "_id"])
def test_token_search_pages_cover_every_match_once(caller: Caller, sort: str) -> None:
    _seed(caller, "tp-1", 9)
    params = {"code": CODE, "_count": "4", **({"_sort": sort} if sort else {})}
    pages = _pages(caller, **params)
    ids = _ids(pages)
    assert len(pages) == 3
    assert len(ids) == len(set(ids)) == 9
    assert sorted(ids) == sorted(_ids([_get(caller, "/fhir/Observation", code=CODE)]))


def test_accurate_total_is_counted_once_and_carried(caller: Caller) -> None:
    _seed(caller, "tp-2", 7)
    first = _get(caller, "/fhir/Observation", code=CODE, _total="accurate", _count="3")
    _seed(caller, "tp-3", 2)  # arrives between pages: not in this search's snapshot
    pages = [first]
    while link := next((k["url"] for k in pages[-1]["link"] if k["relation"] == "next"), None):
        assert "_total=accurate" in link
        pages.append(_get(caller, link))
    assert [p["total"] for p in pages] == [7, 7, 7]
    assert len(_ids(pages)) == 7


def test_total_none_is_omitted_on_every_page(caller: Caller) -> None:
    _seed(caller, "tp-4", 5)
    pages = _pages(caller, code=CODE, _total="none", _count="2")
    assert len(pages) == 3
    assert all("total" not in page for page in pages)


def test_beyond_the_cap_total_is_omitted_or_estimated(
    caller: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(caller, "tp-5", 6)
    monkeypatch.setattr(search, "COUNT_CAP", 4)
    assert all("total" not in page for page in _pages(caller, code=CODE, _count="4"))
    estimated = _get(caller, "/fhir/Observation", code=CODE, _total="estimate")
    assert estimated["total"] >= 5
    assert _get(caller, "/fhir/Observation", code=CODE, _total="accurate")["total"] == 6
    assert _get(caller, "/fhir/Observation", code=CODE, _count="0")["total"] == 6
    assert "total" not in _get(caller, "/fhir/Observation", code=CODE, _count="0", _total="none")
    monkeypatch.setattr(search, "COUNT_CAP", 6)
    assert _get(caller, "/fhir/Observation", code=CODE)["total"] == 6


def test_unknown_total_mode_is_refused(caller: Caller) -> None:
    response = caller.get("/fhir/Observation", params={"_total": "exact"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_total"]


def _native(caller: Caller, patient_ref: str, when: str | None) -> str:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "44261-6"}]},
        "subject": {"reference": patient_ref},
        "valueInteger": 3,
    }
    if when:
        observation["effectiveDateTime"] = when
    headers = {"Content-Type": "application/fhir+json"}
    response = caller.post("/fhir/Observation", json=observation, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("sort", ["date", "-date"])
def test_date_sort_pages_put_undated_resources_first_ascending(caller: Caller, sort: str) -> None:
    patient_ref = caller.post("/v1/symptom-reports", json=phq9("tp-6")).json()["patient"]
    dated = [
        _native(caller, patient_ref, f"2026-10-{day:02d}T08:00:00Z") for day in (5, 3, 9, 3, 1)
    ]
    undated = [_native(caller, patient_ref, None) for _ in range(3)]
    pages = _pages(caller, patient=patient_ref, _sort=sort, _count="2")
    ids = [i for i in _ids(pages) if i in dated or i in undated]
    assert len(ids) == len(set(ids)) == 8
    if sort == "date":
        assert ids[:3] == undated
        assert ids[3:] == [dated[4], dated[1], dated[3], dated[0], dated[2]]
    else:
        assert ids[-3:] == undated[::-1]
        assert ids[:5] == [dated[2], dated[0], dated[3], dated[1], dated[4]]
