"""The floor for ``bench/ingest.py``: a bare FastAPI endpoint that parses a report, stores nothing.

It reads the same JSON body as ``POST /v1/symptom-reports``, parses it with orjson and validates
it with careloop's own ``SymptomReportIn``, then answers 201 with a small JSON. No auth, no
database, no middleware: what is left is uvicorn + FastAPI + parsing, the cost any careloop
request pays before doing its own work.

Serve it as careloop is served, e.g.::

    .venv/bin/uvicorn bare_app:app --app-dir bench --workers 2 --no-access-log
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from pydantic import ValidationError
from starlette.responses import Response

from careloop.services.reports.schemas import SymptomReportIn

app = FastAPI(title="careloop bench: bare endpoint")


@app.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    """Readiness, as careloop answers it."""
    return {"status": "ok"}


@app.post("/v1/symptom-reports", status_code=201)
async def create_report(request: Request) -> Response:
    """Parse and validate one report, write nothing, answer 201."""
    raw = await request.body()
    try:
        report = SymptomReportIn.model_validate(orjson.loads(raw))
    except (orjson.JSONDecodeError, ValidationError):
        return Response(b'{"error":"invalid"}', 422, media_type="application/json")
    body = orjson.dumps({"instrument": report.instrument, "patient": report.patient.value})
    return Response(body, 201, media_type="application/json")
