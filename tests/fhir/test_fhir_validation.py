"""validate_resource: R4B model lookup, readable issue paths, canonical output."""

from typing import Any

import pytest

from careloop.fhir.validation import FhirValidationError, FieldIssue, validate_resource


def _observation(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        **extra,
    }


def _issues(resource: Any) -> list[FieldIssue]:
    with pytest.raises(FhirValidationError) as info:
        validate_resource(resource)
    assert isinstance(info.value, ValueError)
    return info.value.issues


def test_valid_resource_returns_canonical_json() -> None:
    out = validate_resource(
        _observation(
            effectiveDateTime="2024-03-01T10:00:00+01:00",
            issued="2024-03-01T09:01:02.5+00:00",
            valueQuantity={"value": 7.5, "unit": "h"},
        )
    )
    assert out["resourceType"] == "Observation"
    assert out["effectiveDateTime"] == "2024-03-01T10:00:00+01:00"
    assert isinstance(out["issued"], str) and out["issued"].startswith("2024-03-01T09:01:02.5")
    assert out["valueQuantity"] == {"value": 7.5, "unit": "h"}
    assert validate_resource(out) == out  # round trip


def test_uses_r4_models_not_r5() -> None:
    # Encounter.class is a Coding in R4 (a list of CodeableConcepts in R5)
    out = validate_resource(
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "VR"}}
    )
    assert out["class"] == {"code": "VR"}


@pytest.mark.parametrize(
    "resource",
    [{}, {"resourceType": "Nope"}, {"resourceType": "Coding"}, {"resourceType": 3}, []],
)
def test_unknown_resource_type(resource: Any) -> None:
    assert [i.expression for i in _issues(resource)] == ["resourceType"]


def test_issue_expressions() -> None:
    issues = _issues(_observation(valueQuantity={"value": "lots"}, status=None, colour="red"))
    expressions = {i.expression for i in issues}
    assert "Observation.valueQuantity.value" in expressions
    assert "Observation.colour" in expressions
    assert all(i.message for i in issues)


def test_missing_required_element() -> None:
    resource = _observation()
    del resource["code"]
    assert [i.expression for i in _issues(resource)] == ["Observation.code"]


def test_nested_bundle_expression() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": _observation()},
            {"resource": _observation()},
            {"resource": {"resourceType": "Observation", "code": {"text": "x"}}},
        ],
    }
    assert [i.expression for i in _issues(bundle)] == ["Bundle.entry[2].resource.status"]


def test_list_index_expression() -> None:
    resource = _observation(component=[{"code": {"text": "a"}}, {"valueInteger": 1}])
    assert [i.expression for i in _issues(resource)] == ["Observation.component[1].code"]


def test_messages_do_not_echo_values() -> None:
    issues = _issues(_observation(valueInteger="SECRET-VALUE"))
    assert all("SECRET-VALUE" not in i.message for i in issues)
    assert "SECRET-VALUE" not in str(FhirValidationError(issues))
