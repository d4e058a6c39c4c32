"""schemathesis against careloop's OpenAPI, FHIR operations only: never a server error.

Requests are generated from the documented bodies, parameters and headers, valid and
deliberately broken; every answer must be below 500 and have a documented status code, content
type and schema. Each operation gets a few dozen examples, so the run stays within a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.clients import Caller

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fhir_operations_never_answer_a_server_error(
    app_client: TestClient, caller: Caller, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_client.app)
    operations = [
        result.ok() for result in schema.include(path_regex="^/fhir").get_all_operations()
    ]
    assert len(operations) == 15  # with the six Bulk Data $export operations

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.path == "/fhir/metadata":
            continue  # takes nothing, so nothing can be broken

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=20,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Case) -> None:
            response = case.call(headers=caller.headers)
            case.validate_response(response, checks=CHECKS)

        run()
