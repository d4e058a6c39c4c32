"""Whatever a client sends to the ``$export`` endpoints, careloop answers below 500."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from support.clients import Caller

_NAMES = st.sampled_from(
    [
        "_type",
        "_since",
        "_outputFormat",
        "_typeFilter",
        "_elements",
        "patient",
        "includeAssociatedData",
    ]
) | st.text(min_size=1, max_size=80)
_VALUES = st.sampled_from(
    [
        "Patient",
        "Patient,Observation",
        "AuditEvent",
        "2026-01-01T00:00:00Z",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "2026-02-30T00:00:00Z",
        "ndjson",
        ",",
        "",
    ]
) | st.text(max_size=3000)
_PREFER = st.sampled_from(
    ["respond-async", "respond-async, handling=lenient", "handling=strict", "", "x" * 2000]
) | st.text(max_size=100)
_ACCEPT = st.none() | st.sampled_from(["application/fhir+json", "*/*", "text/plain", ";;"])
_PATHS = st.sampled_from(["/fhir/$export", "/fhir/Patient/$export", "/fhir/Group/{}/$export"])
_IDS = st.sampled_from(["g", "x" * 65, "..", "%00"]) | st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"),
    min_size=1,
    max_size=70,
)


def _safe_header(value: str) -> str:
    return "".join(c for c in value if 32 <= ord(c) < 127)


@hsettings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=_PATHS,
    group=_IDS,
    params=st.lists(st.tuples(_NAMES, _VALUES), max_size=25),
    prefer=_PREFER,
    accept=_ACCEPT,
)
def test_kick_off_values_never_cause_a_server_error(
    exporter: Caller,
    path: str,
    group: str,
    params: list[tuple[str, str]],
    prefer: str,
    accept: str | None,
) -> None:
    headers = {"Prefer": _safe_header(prefer)}
    if accept is not None:
        headers["Accept"] = accept
    response = exporter.get(path.format(group), params=params, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code == 202:  # a job started: cancel it, so the client's limit stays free
        status = response.headers["content-location"].removeprefix("http://testserver")
        cancelled = exporter.http.delete(status, headers=exporter.headers)
        assert cancelled.status_code == 202
    else:
        body: dict[str, Any] = response.json()
        assert body["resourceType"] == "OperationOutcome"


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(job=_IDS, rtype=_IDS, number=_IDS)
def test_status_and_file_paths_never_cause_a_server_error(
    exporter: Caller, job: str, rtype: str, number: str
) -> None:
    for response in (
        exporter.get(f"/fhir/$export-status/{job}"),
        exporter.http.delete(f"/fhir/$export-status/{job}", headers=exporter.headers),
        exporter.get(f"/fhir/$export-file/{job}/{rtype}/{number}"),
    ):
        assert response.status_code < 500, response.text
