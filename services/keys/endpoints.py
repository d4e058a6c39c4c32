"""``/.well-known/jwks.json``: the public keys EHRs use to verify careloop's assertions."""

from __future__ import annotations

from datetime import timedelta

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from careloop.services.common.openapi import errors, json_ok
from careloop.services.deps import SessionDep, SettingsDep
from careloop.services.keys.service import ensure_keys, published
from careloop.services.unit_of_work import commit

router = APIRouter(tags=["keys"])


@router.get(
    "/.well-known/jwks.json",
    summary="careloop's public signing keys",
    responses={200: json_ok("A JWK Set"), **errors(400)},
)
def jwks(session: SessionDep, settings: SettingsDep) -> Response:
    """Active keys plus rotated ones still within their grace period."""
    ensure_keys(session, settings.secret_key)
    body = published(session, timedelta(hours=settings.key_grace_hours))
    commit(session)
    return Response(
        orjson.dumps(body),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
