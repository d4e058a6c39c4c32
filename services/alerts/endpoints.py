"""The in-app inbox: ``/v1/alerts``, acknowledge and resolve; ``/v1/notification-routes``."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from sqlmodel import select
from starlette.responses import Response

from careloop.services.alerts.models import Alert
from careloop.services.alerts.routes_service import RouteError, add_route
from careloop.services.alerts.service import acknowledge, alert_json, get_alert, resolve
from careloop.services.alerts.vocabulary import AlertStatus, Channel, Severity
from careloop.services.audit.service import record_admin
from careloop.services.auth.tokens import Principal
from careloop.services.common.body import RawBody, parse_as, read_json_body
from careloop.services.common.constrained import Text200, Text4000, Uri2000
from careloop.services.common.egress import destination_policy
from careloop.services.common.errors import ApiError
from careloop.services.common.idempotency import ApiResult, result_response, run_unit_of_work
from careloop.services.common.openapi import errors, json_body, json_ok
from careloop.services.deps import SessionDep, SettingsDep, require
from careloop.services.unit_of_work import commit

router = APIRouter(tags=["alerts"], responses=errors(400, 401, 403, 422))
_ALERT = json_ok("The alert with its explanation")
BodyDep = Annotated[RawBody, Depends(read_json_body)]
CanRead = Annotated[Principal, Depends(require("Task", "s"))]
CanUpdate = Annotated[Principal, Depends(require("Task", "u"))]
AlertId = Annotated[str, Path(max_length=64)]
FHIR_ID = r"[A-Za-z0-9\-.]{1,64}"


class AckIn(BaseModel):
    """Who acknowledges (defaults to the calling client), with an optional note."""

    model_config = ConfigDict(extra="forbid")

    by: Text200 | None = None
    """``Practitioner/{id}`` (then the Task's owner) or another name of who acted."""
    note: Text4000 | None = None
    """What the follow-up will be (free text: kept out of logs)."""

    @field_validator("by")
    @classmethod
    def _practitioner_reference(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("Practitioner/"):
            if not re.fullmatch(FHIR_ID, value.removeprefix("Practitioner/")):
                raise ValueError("Practitioner/{id} takes a FHIR id (A-Z a-z 0-9 - . up to 64)")
        return value


class ResolveIn(AckIn):
    """Who resolves, and a note on the follow-up done."""


class RouteIn(BaseModel):
    """Where a clinician (``Practitioner/{id}``) or on-call (``oncall``) hears about alerts."""

    model_config = ConfigDict(extra="forbid")

    recipient: str = Field(max_length=200, pattern=rf"^(oncall|Practitioner/{FHIR_ID})$")
    channel: Channel
    address: Annotated[Uri2000, Field(min_length=3)]
    secret: str | None = Field(default=None, max_length=200, pattern=r"^whsec_[A-Za-z0-9+/=]+$")
    min_severity: Severity = Severity.INFO

    @field_validator("secret")
    @classmethod
    def _base64_secret(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value.removeprefix("whsec_"), validate=True)
            except binascii.Error:
                raise ValueError("a webhook secret is whsec_ and base64") from None
        return value


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _optional_body(body: RawBody | None) -> Any:
    return {} if body is None or body.raw.strip() == b"" else body.data


async def _maybe_body(request: Request) -> RawBody | None:
    if not (await request.body()).strip():
        return None
    return await read_json_body(request)


@router.get(
    "/v1/alerts",
    summary="The inbox: alerts of this tenant",
    responses={200: json_ok("Alerts, newest first")},
)
def list_alerts(
    principal: CanRead,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[AlertStatus | None, Query()] = None,
    patient: Annotated[
        str | None, Query(max_length=100, pattern=rf"^(Patient/)?{FHIR_ID}$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Response:
    """Alerts, newest first, optionally by status and patient (``Patient/{id}``)."""
    query = select(Alert).where(Alert.tenant_id == principal.tenant_id)
    if status:
        query = query.where(Alert.status == status)
    if patient:
        query = query.where(Alert.patient_id == patient.removeprefix("Patient/"))
    alerts = session.exec(query.order_by(Alert.opened_at.desc()).limit(limit)).all()  # type: ignore[attr-defined]
    return _json({"alerts": [alert_json(a, settings.base_url) for a in alerts]})


@router.get(
    "/v1/alerts/{alert_id}",
    summary="One alert with its explanation",
    responses={200: _ALERT, **errors(404)},
)
def read_alert(
    alert_id: AlertId, principal: CanRead, session: SessionDep, settings: SettingsDep
) -> Response:
    """The alert: rule, values, threshold and where it came from."""
    return _json(alert_json(get_alert(session, principal.tenant_id, alert_id), settings.base_url))


def _lifecycle(
    session: SessionDep, principal: Principal, settings: SettingsDep, raw: bytes, action: Any
) -> Response:
    def work() -> ApiResult:
        alert = action()
        return ApiResult(200, orjson.dumps(alert_json(alert, settings.base_url)))

    return result_response(run_unit_of_work(session, principal, work, body=raw))


@router.post(
    "/v1/alerts/{alert_id}/acknowledge",
    summary="Take ownership of the follow-up",
    openapi_extra=json_body(AckIn, required=False),
    responses={200: _ALERT, **errors(404, 409, 413, 415, 503)},
)
def acknowledge_alert(
    alert_id: AlertId,
    principal: CanUpdate,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[RawBody | None, Depends(_maybe_body)],
) -> Response:
    """Acknowledge: escalation stops and the Task becomes accepted."""
    data = parse_as(TypeAdapter(AckIn), _optional_body(body))
    agent = f"client:{principal.client_id}"
    actor = data.by or agent
    return _lifecycle(
        session,
        principal,
        settings,
        body.raw if body else b"",
        lambda: acknowledge(
            session, principal.tenant_id, alert_id, actor, note=data.note, agent=agent
        ),
    )


@router.post(
    "/v1/alerts/{alert_id}/resolve",
    summary="Close the alert with a note",
    openapi_extra=json_body(ResolveIn, required=False),
    responses={200: _ALERT, **errors(404, 409, 413, 415, 503)},
)
def resolve_alert(
    alert_id: AlertId,
    principal: CanUpdate,
    session: SessionDep,
    settings: SettingsDep,
    body: Annotated[RawBody | None, Depends(_maybe_body)],
) -> Response:
    """Resolve: the alert closes and its Task completes."""
    data = parse_as(TypeAdapter(ResolveIn), _optional_body(body))
    agent = f"client:{principal.client_id}"
    actor = data.by or agent
    return _lifecycle(
        session,
        principal,
        settings,
        body.raw if body else b"",
        lambda: resolve(session, principal.tenant_id, alert_id, actor, data.note, agent=agent),
    )


@router.post(
    "/v1/notification-routes",
    status_code=201,
    summary="Route alerts somewhere",
    openapi_extra=json_body(RouteIn),
    responses={201: json_ok("The route, with the webhook secret"), **errors(413, 415)},
)
def create_route(
    body: BodyDep,
    principal: Annotated[Principal, Depends(require("CareTeam", "u"))],
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Register a webhook or email for a clinician or for on-call; returns the webhook secret."""
    data = parse_as(TypeAdapter(RouteIn), body.data)
    try:
        route = add_route(
            session,
            principal.tenant_id,
            data.recipient,
            data.channel,
            data.address,
            data.secret,
            data.min_severity,
            destinations=destination_policy(settings),
        )
    except RouteError as exc:
        raise ApiError.invalid(exc.field, exc.message) from exc
    # The route's id and recipient reference only: its address can be a person's email.
    recipient = [data.recipient] if data.recipient.startswith("Practitioner/") else []
    record_admin(session, principal, "notification-routes.create", f"route:{route.id}", *recipient)
    commit(session)
    return _json(
        {
            "id": route.id,
            "recipient": route.recipient,
            "channel": route.channel,
            "secret": route.secret,
            "min_severity": route.min_severity,
        },
        201,
    )
