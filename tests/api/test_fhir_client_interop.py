"""An independent, published FHIR client (fhirpy) reads careloop's FHIR API over real HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fhirpy import SyncFHIRClient
from sqlalchemy import Engine
from support.reports import phq9

from careloop.services.settings import Settings
from careloop.services.tenancy.service import create_client
from careloop.services.unit_of_work import session_scope
from careloop.workflows.web import create_app


@pytest.fixture
def live_url(settings: Settings, engine: Engine) -> Iterator[str]:
    """careloop served by uvicorn on a loopback port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections queue here until the server accepts: no start-up wait needed
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings.model_copy(update={"base_url": url}), engine)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_fhirpy_searches_pages_and_reads(live_url: str, engine: Engine) -> None:
    with session_scope(engine) as session:
        new = create_client(session, "interop", "system/*.cruds", "tenant-interop")
    with httpx.Client(base_url=live_url, timeout=10) as http:
        token = http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": new.client_id,
                "client_secret": new.client_secret,
            },
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        reports = [phq9("fp-1", effective=f"2026-11-{d:02d}T07:00:00Z") for d in range(1, 13)]
        response = http.post("/v1/symptom-reports/batch", json=reports, headers=auth)
        assert response.status_code == 200
        patient_ref = response.json()["results"][0]["patient"]

    client = SyncFHIRClient(f"{live_url}/fhir", authorization=f"Bearer {token}")
    observations = (
        client.resources("Observation")
        .search(patient=patient_ref, code="http://loinc.org|44261-6")
        .sort("-date")
        .limit(5)
        .fetch_all()
    )
    assert len(observations) == 12  # fetch_all followed our next links across 3 pages
    dates = [o["effectiveDateTime"] for o in observations]
    assert dates == sorted(dates, reverse=True)
    assert len({o["id"] for o in observations}) == 12
    one = client.reference("Observation", observations[0]["id"]).to_resource()
    assert one["valueInteger"] == observations[0]["valueInteger"]
    patient = (
        client.resources("Patient").search(identifier="https://app.example/patients|fp-1").first()
    )
    assert f"Patient/{patient['id']}" == patient_ref
    assert client.resources("Encounter").search(patient=patient_ref).count() == 0
