"""``GET /v1/patients/{patient_id}/measures``: measurement-based care for one patient."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Path
from starlette.responses import Response

from careloop.services.auth.tokens import Principal
from careloop.services.common.errors import ApiError
from careloop.services.common.openapi import errors, json_ok
from careloop.services.deps import SessionDep, require
from careloop.services.measures.series import patient_exists
from careloop.services.measures.service import patient_summaries, summary_json

router = APIRouter(tags=["measures"], responses=errors(400, 401, 403, 422))
CanRead = Annotated[Principal, Depends(require("Observation", "s"))]
PatientId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9\-.]{1,64}$")]


@router.get(
    "/v1/patients/{patient_id}/measures",
    summary="Measurement-based care: baseline, response, remission, reliable change",
    responses={200: json_ok("PHQ-9 and GAD-7 judgements, by instrument"), **errors(404)},
)
def read_measures(patient_id: PatientId, principal: CanRead, session: SessionDep) -> Response:
    """PHQ-9 and GAD-7: baseline, latest, change, response, remission, reliable change,
    not on track and trend, each with the method used."""
    if not patient_exists(session, principal.tenant_id, patient_id):
        raise ApiError.not_found(f"Patient/{patient_id}")
    summaries = patient_summaries(session, principal.tenant_id, patient_id)
    body = {
        "patient": f"Patient/{patient_id}",
        "measures": {key: summary_json(s) for key, s in summaries.items()},
    }
    return Response(orjson.dumps(body), 200, media_type="application/json")
