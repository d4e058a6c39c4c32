"""Properties of the pure de-identification (careloop.fhir.deidentify), whatever the input."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from careloop.fhir.deidentify import (
    MASKED_URL,
    RESTRICTED_ZIP3,
    STRUCTURAL_KEYS,
    Deidentifier,
)

TODAY = date(2026, 12, 2)
DEID = Deidentifier(b"k" * 32, "tenant-a", TODAY)
FAST = settings(max_examples=200, deadline=None)

# Keys a resource may hold, known and not: structural ones, free text, dates, references,
# identifiers, addresses, extensions, and made-up names.
KEYS = st.one_of(
    st.sampled_from(sorted(STRUCTURAL_KEYS)),
    st.sampled_from(
        [
            "text", "note", "display", "valueString", "valueUri", "reference", "identifier",
            "address", "extension", "modifierExtension", "url", "linkId", "value", "family",
            "birthDate", "effectiveDateTime", "issued", "period", "start", "end", "authored",
            "line", "city", "state", "postalCode", "country", "answer", "item", "coding", "id",
            "_birthDate", "subject", "valueCoding", "component", "contained", "Zelda Doe",
        ]
    ),
    st.text(min_size=1, max_size=12),
)  # fmt: skip
# Planted values: free text with a space (never a code), and code-shaped strings and dates.
SPACED = st.builds(lambda a, b: f"PLANT{a} {b}", st.text(max_size=8), st.text(max_size=8))
TOKEN = st.builds(lambda a: f"PLANT{a}", st.text(st.characters(categories=["L", "N"]), max_size=8))
DATES = st.dates().map(lambda d: f"{d:%Y-%m-%d}T10:20:30Z")


def _values(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    scalars = st.one_of(leaf, st.integers(), st.booleans(), st.floats(allow_nan=False))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)
        ),
        max_leaves=25,
    )


def _resources(leaf: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    rtype = st.sampled_from(["Patient", "Observation", "QuestionnaireResponse", "Encounter"])
    body = st.dictionaries(KEYS, _values(leaf), max_size=8)
    return st.builds(lambda t, b: {**b, "resourceType": t}, rtype, body)


def _strings(value: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every (key, string) of ``value``, keys included as strings of their own."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield "<key>", k
            yield from _strings(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, key)
    elif isinstance(value, str):
        yield key, value


@FAST
@given(_resources(SPACED))
def test_free_text_never_survives_anywhere(resource: dict[str, Any]) -> None:
    for key, text in _strings(DEID.resource(resource)):
        assert "PLANT" not in text, (key, text)


@FAST
@given(_resources(st.one_of(TOKEN, DATES)))
def test_a_planted_code_survives_only_under_a_structural_key(resource: dict[str, Any]) -> None:
    for key, text in _strings(DEID.resource(resource)):
        if "PLANT" in text or re.search(r"\d{4}-\d{2}", text):
            assert key in STRUCTURAL_KEYS | {"url"}, (key, text)


@FAST
@given(st.dates(max_value=date(2026, 12, 2)))
def test_a_birth_date_keeps_its_year_only_below_90(born: date) -> None:
    patient = DEID.resource({"resourceType": "Patient", "birthDate": born.isoformat()})
    age = TODAY.year - born.year - ((TODAY.month, TODAY.day) < (born.month, born.day))
    if age >= 90:
        assert "birthDate" not in patient
        assert patient["extension"][0]["valueCode"] == "90+"
    else:
        assert patient["birthDate"] == str(born.year).zfill(4)
        assert "extension" not in patient


@FAST
@given(st.from_regex(r"\A\d{5}(-\d{4})?\Z"), st.sampled_from(["US", "USA", None, "CA"]))
def test_zip_codes_keep_three_digits_or_none(zip_code: str, country: str | None) -> None:
    address = {"postalCode": zip_code, "city": "X", **({"country": country} if country else {})}
    out = DEID.resource({"resourceType": "Patient", "address": [address]}).get("address", [{}])
    postal = out[0].get("postalCode")
    if country == "CA":
        assert postal is None
    elif zip_code[:3] in RESTRICTED_ZIP3:
        assert postal == "000"
    else:
        assert postal == zip_code[:3]


def test_pseudonyms_link_within_a_tenant_and_key_only() -> None:
    obs = {"resourceType": "Observation", "subject": {"reference": "Patient/p1/_history/3"}}
    patient = DEID.resource({"resourceType": "Patient", "id": "p1"})
    assert DEID.resource(obs)["subject"] == {"reference": f"Patient/{patient['id']}"}
    other_tenant = Deidentifier(b"k" * 32, "tenant-b", TODAY)
    other_key = Deidentifier(b"j" * 32, "tenant-a", TODAY)
    assert len({d.pseudonym("Patient/p1") for d in (DEID, other_tenant, other_key)}) == 3
    absolute = {
        "resourceType": "Observation",
        "subject": {"reference": "https://x.example/Patient/p1"},
    }
    masked = DEID.resource(absolute)["subject"]
    assert masked == {"extension": [{"url": MASKED_URL, "valueCode": "masked"}]}


def test_ages_over_89_become_90_or_more() -> None:
    age = {"value": 104, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}
    young = {**age, "value": 89}
    obs = DEID.resource({"resourceType": "Observation", "valueQuantity": age, "x": {"y": young}})
    assert obs["valueQuantity"] == {**age, "value": 90, "comparator": ">="}
    assert obs["x"]["y"] == young


def test_ages_in_months_or_days_over_89_years_become_90_years() -> None:
    ucum = "http://unitsofmeasure.org"
    months = {"value": 1090, "unit": "mo", "system": ucum, "code": "mo"}
    days = {"value": 33000, "unit": "d", "system": ucum, "code": "d"}
    young = {"value": 1000, "unit": "mo", "system": ucum, "code": "mo"}
    answers = [{"valueQuantity": q} for q in (months, days, young)]
    qr = DEID.resource(
        {"resourceType": "QuestionnaireResponse", "item": [{"linkId": "a", "answer": answers}]}
    )
    capped = {"value": 90, "comparator": ">=", "unit": "years", "system": ucum, "code": "a"}
    assert [a["valueQuantity"] for a in qr["item"][0]["answer"]] == [capped, capped, young]


def test_uri_elements_keep_only_uris() -> None:
    coding = {"system": "PLANT-not-a-uri", "code": "x"}
    obs = DEID.resource({"resourceType": "Observation", "code": {"coding": [coding]}})
    assert obs["code"]["coding"] == [{"code": "x"}]
