"""Driving a bulk export in the tests: kick-off, the worker's chunks, manifest and files."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine
from support.clients import BASE_URL, Caller

from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.bulk_export import run_chunk

ASYNC = {"Prefer": "respond-async"}
MAX_CHUNKS = 200


def kick_off(caller: Caller, path: str = "/fhir/$export", **params: str) -> Any:
    """A kick-off request; asserts it was accepted and returns the response."""
    response = caller.get(path, params=params, headers=ASYNC)
    assert response.status_code == 202, response.text
    assert response.headers["content-location"].startswith(f"{BASE_URL}/fhir/$export-status/")
    return response


def status_path(kickoff: Any) -> str:
    """The path polled for the job started by ``kickoff``."""
    return str(kickoff.headers["content-location"]).removeprefix(BASE_URL)


def job_of(kickoff: Any) -> str:
    """The job id of a kick-off response."""
    return status_path(kickoff).rsplit("/", 1)[1]


def chunk(engine: Engine, settings: Settings, job_id: str) -> bool:
    """One worker run of the job (committed); whether the job is done."""
    with session_scope(engine) as session:
        return run_chunk(session, settings, job_id)


def finish(engine: Engine, settings: Settings, job_id: str) -> int:
    """Run the job's chunks until it is done; how many runs it took."""
    for runs in range(1, MAX_CHUNKS + 1):
        if chunk(engine, settings, job_id):
            return runs
    raise AssertionError("the export did not finish")


def manifest(caller: Caller, kickoff: Any) -> dict[str, Any]:
    """The completed job's manifest (asserts a 200 with an Expires header)."""
    response = caller.get(status_path(kickoff))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["expires"].endswith("GMT")
    body: dict[str, Any] = response.json()
    return body


def download(caller: Caller, url: str) -> list[dict[str, Any]]:
    """The resources of one file (asserts NDJSON: one JSON object per line)."""
    response = caller.get(url.removeprefix(BASE_URL))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+ndjson")
    text = response.text
    assert text == "" or text.endswith("\n")
    return [orjson.loads(line) for line in text.splitlines()]


def everything(caller: Caller, body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every file of a manifest downloaded, by type; asserts each file's count."""
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in body["output"]:
        resources = download(caller, entry["url"])
        assert len(resources) == entry["count"]
        assert all(r["resourceType"] == entry["type"] for r in resources)
        out.setdefault(entry["type"], []).extend(resources)
    return out


def ids(resources: list[dict[str, Any]]) -> list[str]:
    """The ids of ``resources``."""
    return [str(r["id"]) for r in resources]
