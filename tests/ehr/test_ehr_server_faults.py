"""Fault injection in the test EHR, observed by a real HTTP client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ehr_server import Fault, TestEHR
from ehr_server.helpers import issue_token

SYSTEM = "urn:careloop:test"


@pytest.fixture
def fhir(ehr: TestEHR) -> Iterator[httpx.Client]:
    token = issue_token(ehr, "system/*.cruds")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    with httpx.Client(base_url=ehr.base_url, headers=headers, timeout=10, trust_env=False) as c:
        yield c


@pytest.fixture
def patient_id(ehr: TestEHR) -> str:
    return str(ehr.seed({"resourceType": "Patient"})["id"])


def observation(patient_id: str, ident: str = "obs-1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": SYSTEM, "value": ident}],
        "status": "final",
        "code": {"text": "PHQ-9 total"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueInteger": 4,
    }


@pytest.mark.parametrize(
    ("fault", "status", "retry_after"),
    [
        (Fault.HTTP_500, 500, None),
        (Fault.HTTP_503, 503, "1"),
        (Fault.HTTP_429, 429, "1"),
        (Fault.http_429(retry_after="2"), 429, "2"),
        (
            Fault.http_503(retry_after="Wed, 21 Oct 2015 07:28:00 GMT"),
            503,
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ),
    ],
)
def test_http_error_faults_answer_without_writing(
    ehr: TestEHR,
    fhir: httpx.Client,
    patient_id: str,
    fault: Fault,
    status: int,
    retry_after: str | None,
) -> None:
    ehr.inject(fault, method="POST", path_prefix="/fhir")

    failed = fhir.post("Observation", json=observation(patient_id))
    retried = fhir.post("Observation", json=observation(patient_id))

    assert failed.status_code == status
    assert failed.headers.get("retry-after") == retry_after
    assert failed.json()["resourceType"] == "OperationOutcome"
    assert retried.status_code == 201
    assert len(ehr.resources("Observation")) == 1
    assert [s for m, p, s in ehr.requests if p == "/fhir/Observation"] == [status, 201]


def test_faults_honour_count_method_and_path(
    ehr: TestEHR, fhir: httpx.Client, patient_id: str
) -> None:
    ehr.inject(Fault.HTTP_503, count=2, method="POST", path_prefix="/fhir/Observation")

    get = fhir.get("Observation")
    other_path = fhir.post("Patient", json={"resourceType": "Patient"})
    statuses = [
        fhir.post("Observation", json=observation(patient_id)).status_code for _ in range(3)
    ]

    assert get.status_code == 200
    assert other_path.status_code == 201
    assert statuses == [503, 503, 201]


def test_clear_faults(ehr: TestEHR, fhir: httpx.Client) -> None:
    ehr.inject(Fault.HTTP_500, count=5)

    ehr.clear_faults()

    assert fhir.get("Patient").status_code == 200


def test_token_endpoint_can_fail(ehr: TestEHR) -> None:
    ehr.inject(Fault.HTTP_503, path_prefix="/auth/token")

    with pytest.raises(httpx.HTTPStatusError) as failure:
        issue_token(ehr, "system/*.cruds")

    assert failure.value.response.status_code == 503
    assert issue_token(ehr, "system/*.cruds")
    assert ehr.issued_tokens == 1


def test_hang_lasts_until_the_client_times_out(
    ehr: TestEHR, fhir: httpx.Client, patient_id: str
) -> None:
    ehr.inject(Fault.HANG, method="POST")

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        fhir.post("Observation", json=observation(patient_id), timeout=0.3)

    assert time.monotonic() - started >= 0.3
    assert ehr.resources("Observation") == []
    assert fhir.post("Observation", json=observation(patient_id)).status_code == 201
    assert ("POST", "/fhir/Observation", 0) in ehr.requests


def test_hanging_request_does_not_block_shutdown(patient_id: str) -> None:
    errors: list[BaseException] = []
    with TestEHR() as ehr:
        token = issue_token(ehr, "system/*.cruds")
        ehr.inject(Fault.HANG)

        def call() -> None:
            try:
                with httpx.Client(trust_env=False, timeout=30) as http:
                    http.get(
                        f"{ehr.base_url}/Patient", headers={"Authorization": f"Bearer {token}"}
                    )
            except httpx.HTTPError as exc:
                errors.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        log = ehr.wait_for_requests(2)  # the token request, then the hanging one
        started = time.monotonic()
    stop_time = time.monotonic() - started
    caller.join(5)

    assert log[-1] == ("GET", "/fhir/Patient", 0)
    assert stop_time < 2
    assert len(errors) == 1
    assert isinstance(errors[0], httpx.RemoteProtocolError)


def test_drop_after_commit_stores_but_never_answers(
    ehr: TestEHR, fhir: httpx.Client, patient_id: str
) -> None:
    ehr.inject(Fault.DROP_AFTER_COMMIT, method="POST", path_prefix="/fhir/Observation")
    condition = {"If-None-Exist": f"identifier={SYSTEM}|obs-1"}

    with pytest.raises(httpx.RemoteProtocolError):
        fhir.post("Observation", json=observation(patient_id), headers=condition)

    stored = ehr.resources("Observation")
    assert len(stored) == 1
    retry = fhir.post("Observation", json=observation(patient_id), headers=condition)
    assert retry.status_code == 200  # the conditional retry finds the committed write
    assert retry.json()["id"] == stored[0]["id"]
    assert len(ehr.resources("Observation")) == 1


def test_drop_after_commit_of_a_transaction(
    ehr: TestEHR, fhir: httpx.Client, patient_id: str
) -> None:
    ehr.inject(Fault.DROP_AFTER_COMMIT, method="POST", path_prefix="/fhir")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": observation(patient_id, f"t{i}"),
                "request": {"method": "POST", "url": "Observation"},
            }
            for i in range(3)
        ],
    }

    with pytest.raises(httpx.RemoteProtocolError):
        fhir.post("", json=bundle)

    assert len(ehr.resources("Observation")) == 3


def test_drop_before_stores_nothing(ehr: TestEHR, fhir: httpx.Client, patient_id: str) -> None:
    ehr.inject(Fault.DROP_BEFORE, method="POST")

    with pytest.raises(httpx.TransportError):
        fhir.post("Observation", json=observation(patient_id))

    assert ehr.resources("Observation") == []
    assert fhir.post("Observation", json=observation(patient_id)).status_code == 201
