"""SMART App Launch (EHR and standalone): authorization code with PKCE S256 and state."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from sqlmodel import Session, col, select

from careloop.integrations.egress import DestinationRefused, EgressClient
from careloop.services.alerts.models import Alert
from careloop.services.clinicians.ehr_users import MAX_FHIR_USER, clinician_for
from careloop.services.clinicians.sessions import open_session
from careloop.services.common.constrained import CONTROL
from careloop.services.common.egress import egress_client
from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection, PatientLink
from careloop.services.ehr.vocabulary import LinkState
from careloop.services.keys.service import decrypt_secret
from careloop.services.launch.id_token import IdTokenRefused, jwks_uri, validate_id_token
from careloop.services.launch.models import ClinicianSession, LaunchState
from careloop.services.settings import Settings

STATE_TTL = timedelta(minutes=10)
EHR_LAUNCH_SCOPE = "launch openid fhirUser patient/Patient.rs patient/Observation.rs"
STANDALONE_SCOPE = "launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs"


_BROWSER_KEY = re.compile(r"^[A-Za-z0-9_-]{43,100}$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ALERT_ID = re.compile(r"[A-Za-z0-9\-]{1,64}")
MAX_APP_CONTEXT = 2000
"""The longest ``appContext`` read from a token response (careloop's own are under 150)."""


class LaunchError(Exception):
    """A launch that cannot go on; the message is safe to show."""


def browser_key(existing: str | None) -> str:
    """The launch cookie value: the browser's own if it sent a well-formed one, else a new one.

    Reusing it lets one browser run launches in several tabs at once.
    """
    if existing and _BROWSER_KEY.match(existing):
        return existing
    return secrets.token_urlsafe(32)


def _browser_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class BrowserMismatch(LaunchError):
    """The callback came from a browser other than the one that started the launch."""


@dataclass(frozen=True)
class Launched:
    """A finished launch: the new session, and the alert to land on (from ``appContext``)."""

    session: ClinicianSession
    alert_id: str | None = None


@dataclass(frozen=True)
class Authorize:
    """Where to send the clinician's browser."""

    url: str


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _connection_for(session: Session, iss: str) -> EhrConnection:
    connection = session.exec(
        select(EhrConnection).where(
            EhrConnection.fhir_base_url == iss.rstrip("/"), col(EhrConnection.active)
        )
    ).first()
    if connection is None or not connection.launch_client_id:
        raise LaunchError("this EHR is not registered for launching careloop")
    return connection


def _http(session: Session, settings: Settings, connection: EhrConnection) -> EgressClient:
    return egress_client(session, settings, connection.tenant_id, "ehr-launch", "careloop-launch")


def _smart_configuration(http: EgressClient, iss: str) -> dict[str, Any]:
    try:
        response = http.request("GET", iss.rstrip("/") + "/.well-known/smart-configuration")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        token_endpoint = str(data["token_endpoint"])
    except (httpx.HTTPError, DestinationRefused, ValueError, KeyError, TypeError) as exc:
        raise LaunchError("the EHR's SMART configuration could not be read") from exc
    if "S256" not in data.get("code_challenge_methods_supported", []):
        raise LaunchError("the EHR does not support PKCE S256")
    try:
        http.policy.check_token_endpoint(token_endpoint, iss)
    except DestinationRefused as exc:
        raise LaunchError("the EHR's token endpoint is not allowed") from exc
    return data


def begin(
    session: Session,
    settings: Settings,
    iss: str,
    launch: str | None,
    browser: str,
) -> Authorize:
    """Start an EHR launch (with ``launch``) or a standalone launch (without).

    ``browser`` is the launch cookie's value: only a browser presenting it can finish the launch.

    Only a registered EHR (its base URL checked by the egress rules) is contacted, through the
    egress client; the token endpoint it names must pass the same rules.
    """
    connection = _connection_for(session, iss)
    config = _smart_configuration(_http(session, settings, connection), iss)
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(32)  # 256 bits, above SMART's 122-bit minimum
    nonce = secrets.token_urlsafe(32)
    session.add(
        LaunchState(
            state=state,
            connection_id=connection.id,
            code_verifier=verifier,
            token_endpoint=str(config["token_endpoint"]),
            browser_hash=_browser_hash(browser),
            nonce=nonce,
        )
    )
    params = {
        "response_type": "code",
        "client_id": connection.launch_client_id or "",
        "redirect_uri": redirect_uri(settings),
        "scope": EHR_LAUNCH_SCOPE if launch else STANDALONE_SCOPE,
        "state": state,
        "aud": connection.fhir_base_url,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": nonce,
    }
    if launch:
        params["launch"] = launch
    return Authorize(f"{config['authorization_endpoint']}?{urlencode(params)}")


def redirect_uri(settings: Settings) -> str:
    """careloop's registered redirect URI."""
    return settings.base_url.rstrip("/") + "/launch/callback"


def complete(
    session: Session,
    settings: Settings,
    code: str,
    state: str,
    browser: str | None,
) -> Launched:
    """Exchange the code (checking state, once, from the browser that began) and sign in.

    Who signs in is the ``fhirUser`` of the id_token, taken only once the id_token is valid
    (``careloop.services.launch.id_token``); that clinician is found or added in the tenant.
    An ``appContext`` naming one of the tenant's alerts (of the launched patient) is where the
    launch lands (``app_context_alert``).
    """
    pending = session.get(LaunchState, state, with_for_update=True)
    if pending is None or utcnow() - pending.created_at > STATE_TTL:
        raise LaunchError("this launch expired or was already used; launch careloop again")
    if browser is None or not hmac.compare_digest(_browser_hash(browser), pending.browser_hash):
        # Left in place: a stolen state tried elsewhere must not spoil the real browser's launch.
        raise BrowserMismatch("this launch was started in another browser; launch careloop again")
    session.delete(pending)
    connection = session.get(EhrConnection, pending.connection_id)
    assert connection is not None and connection.launch_client_id is not None
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(settings),
        "code_verifier": pending.code_verifier,
    }
    headers = {}
    if connection.launch_client_secret:
        secret = decrypt_secret(settings.secret_key, connection.launch_client_secret)
        basic = base64.b64encode(f"{connection.launch_client_id}:{secret}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    else:
        form["client_id"] = connection.launch_client_id
    try:
        http = _http(session, settings, connection)
        response = http.request("POST", pending.token_endpoint, data=form, headers=headers)
    except (httpx.HTTPError, DestinationRefused) as exc:
        raise LaunchError("the EHR could not be reached to finish the launch") from exc
    if response.status_code != 200:
        raise LaunchError("the EHR refused the launch")
    try:
        token = response.json()
    except ValueError as exc:
        raise LaunchError("the EHR's token response could not be read") from exc
    if not isinstance(token, dict):
        raise LaunchError("the EHR's token response could not be read")
    fhir_user, name = _who(http, connection, pending.nonce, token)
    ehr_patient = _context_id(token, "patient")
    link = None
    if ehr_patient:
        link = session.exec(
            select(PatientLink).where(
                PatientLink.connection_id == connection.id,
                PatientLink.ehr_patient_id == ehr_patient,
                PatientLink.state == LinkState.LINKED,
            )
        ).first()
    clinician = clinician_for(session, connection.tenant_id, fhir_user, name)
    if not clinician.active:
        raise LaunchError("this careloop account is disabled")
    scope = token.get("scope", "")
    signed = open_session(
        session,
        connection.tenant_id,
        clinician,
        connection_id=connection.id,
        fhir_user=fhir_user,
        ehr_patient_id=ehr_patient,
        patient_id=link.patient_id if link else None,
        encounter_id=_context_id(token, "encounter"),
        scope=scope[:2000] if isinstance(scope, str) else "",
    )
    alert_id = app_context_alert(
        session,
        connection.tenant_id,
        token.get("appContext"),
        launched_patient=link.patient_id if link else None,
        ehr_patient=ehr_patient,
    )
    return Launched(signed, alert_id)


def app_context_alert(
    session: Session,
    tenant_id: str,
    app_context: object,
    launched_patient: str | None,
    ehr_patient: str | None,
) -> str | None:
    """The alert an ``appContext`` (``{"patient": ..., "alert": ...}``, a JSON string) names.

    Trusted no further than the tenant: only an alert of ``tenant_id``, and when the EHR
    launched a patient, only an alert of that (linked) patient; a launched patient careloop
    has no link for, anything malformed or too long, or an unknown alert gives None.
    """
    if not isinstance(app_context, str) or not 0 < len(app_context) <= MAX_APP_CONTEXT:
        return None
    try:
        data = orjson.loads(app_context)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    alert_id, named = data.get("alert"), data.get("patient")
    if not isinstance(alert_id, str) or not _ALERT_ID.fullmatch(alert_id):
        return None
    if named is not None and not isinstance(named, str):
        return None
    if ehr_patient is not None and launched_patient is None:
        return None
    alert = session.exec(
        select(Alert).where(col(Alert.id) == alert_id, col(Alert.tenant_id) == tenant_id)
    ).first()
    if alert is None:
        return None
    if launched_patient is not None and alert.patient_id != launched_patient:
        return None
    if named is not None and named != alert.patient_id:
        return None
    return alert.id


def _context_id(token: dict[str, Any], name: str) -> str | None:
    """The launch context's ``patient`` or ``encounter`` id (a FHIR id, else refused)."""
    value = token.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _FHIR_ID.match(value):
        raise LaunchError(f"the EHR's launch context has an invalid {name}")
    return value


def _who(
    http: EgressClient, connection: EhrConnection, nonce: str, token: dict[str, Any]
) -> tuple[str, object]:
    """The fhirUser (and the ``name`` claim) of the token's id_token, once validated."""
    base = connection.fhir_base_url
    try:
        config = _smart_configuration(http, base)
        issuers = [base, *([config["issuer"]] if isinstance(config.get("issuer"), str) else [])]
        claims = validate_id_token(
            http,
            token.get("id_token"),
            issuers=issuers,
            client_id=connection.launch_client_id or "",
            nonce=nonce,
            keys_uri=jwks_uri(http, base, config),
        )
    except IdTokenRefused as exc:
        raise LaunchError(str(exc)) from exc
    fhir_user = claims.get("fhirUser")
    if not isinstance(fhir_user, str) or not 0 < len(fhir_user) <= MAX_FHIR_USER:
        raise LaunchError("the EHR did not say who is signed in (no fhirUser)")
    if CONTROL.search(fhir_user):
        raise LaunchError("the EHR did not say who is signed in (no fhirUser)")
    return fhir_user, claims.get("name")
