"""The bounds input is held to: JSON shape, strict integers, date ranges, page cursors, Bundles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from careloop.fhir.inbound import _authored
from careloop.fhir.validation import FieldIssue
from careloop.services.common.bounds import (
    MAX_JSON_DEPTH,
    OutOfBounds,
    check_datetime,
    json_problem,
    parse_bounded_int,
)
from careloop.services.common.errors import ApiError
from careloop.services.common.fhirtime import FhirTimeError, parse_fhir_datetime_range
from careloop.services.fhirapi.bundles import BundleEntry, creation_order
from careloop.services.store.cursors import (
    CursorError,
    PageCursor,
    decode_cursor,
    encode_cursor,
)


@pytest.mark.parametrize(
    ("data", "path", "deep"),
    [
        ({"a": [1, {"b": "x\x00"}]}, ("a", 1, "b"), False),
        ({"a\x00": 1}, (), False),
        ({"v": 1e308}, ("v",), False),
        ({"v": -(10**18)}, ("v",), False),
        ({"v": float("nan")}, ("v",), False),
        ({"v": float("-inf")}, ("v",), False),
    ],
)
def test_json_problem_names_where(data: Any, path: tuple[Any, ...], deep: bool) -> None:
    problem = json_problem(data)
    assert problem is not None and problem.path == path and problem.too_deep is deep


def test_json_problem_walks_any_depth_without_recursion() -> None:
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]
    problem = json_problem(deep)
    assert problem is not None and problem.too_deep
    assert len(problem.path) == MAX_JSON_DEPTH
    assert json_problem({"ok": [1, 2.5, "text", None, True, {"n": 10**17}]}) is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("42", 42), ("²", None), ("٣", None), ("１", None), ("9" * 40, None), ("-1", None)]
    + [(" 1", None), ("1\n", None), ("", None), ("101", None)],
)
def test_bounded_int_takes_ascii_digits_only(text: str, value: int | None) -> None:
    assert parse_bounded_int(text, 100) == value


@pytest.mark.parametrize(
    "text",
    ["9999", "9999-12-31", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00", "٢٠٢٦"]
    + ["２０２６-01-01", "2026-01-01\n", "2026-02-30", "2026-01-01T25:00:00Z"],
)
def test_dates_outside_what_careloop_stores_are_refused(text: str) -> None:
    with pytest.raises(FhirTimeError):
        parse_fhir_datetime_range(text)


def test_the_stored_range_spans_year_1_to_9998() -> None:
    lo, _ = parse_fhir_datetime_range("0001-01-01T00:00:00-05:00")
    assert lo == datetime(1, 1, 1, 5, tzinfo=UTC)
    _, hi = parse_fhir_datetime_range("9998")
    assert hi.year == 9998 and hi.month == 12
    with pytest.raises(OutOfBounds):
        check_datetime(datetime(9999, 12, 31, 23, tzinfo=UTC))


@pytest.mark.parametrize("authored", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_questionnaire_authored_outside_the_stored_years_is_an_issue(authored: str) -> None:
    issues: list[FieldIssue] = []
    assert _authored({"authored": authored}, issues) is None
    assert [i.expression for i in issues] == ["QuestionnaireResponse.authored"]


def test_page_cursors_round_trip_and_refuse_tampering_and_other_searches() -> None:
    when = datetime(2026, 11, 1, 9, tzinfo=UTC)
    token = encode_cursor(PageCursor(10, when, 7, 5), "key", "Observation\n-date")
    assert decode_cursor(token, "key", "Observation\n-date", "-date") == PageCursor(10, when, 7, 5)
    for key, binding in [("other", "Observation\n-date"), ("key", "Observation\ndate")]:
        with pytest.raises(CursorError):
            decode_cursor(token, key, binding, "-date")
    payload, _, mac = token.partition(".")
    for forged in [payload, f"{payload}.", f"{payload[:-1]}A.{mac}", "²." + mac, "x" * 600]:
        with pytest.raises(CursorError):
            decode_cursor(forged, "key", "Observation\n-date", "-date")


def _entry(full_url: str | None, *references: str, url: str = "Observation") -> BundleEntry:
    resource = {"derivedFrom": [{"reference": r} for r in references]}
    return BundleEntry.model_validate(
        {"fullUrl": full_url, "request": {"method": "POST", "url": url}, "resource": resource}
    )


def test_creation_order_follows_references_and_refuses_circles() -> None:
    a, b, c = (f"urn:uuid:{n}" for n in "abc")
    entries = [_entry(a, b), _entry(b, c), _entry(c), _entry(None, url="QuestionnaireResponse")]
    assert creation_order(entries, ("QuestionnaireResponse",)) == [3, 2, 1, 0]
    with pytest.raises(ApiError) as circle:
        creation_order([_entry(a, b), _entry(b, a)])
    assert circle.value.status == 422
    with pytest.raises(ApiError):
        creation_order([_entry(a, a)])
    with pytest.raises(ApiError):
        creation_order([_entry(a), _entry(a)])
