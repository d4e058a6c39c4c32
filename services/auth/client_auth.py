"""Authenticating clients at the token endpoint: secret (basic/post) or private_key_jwt."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from careloop.integrations.egress import DestinationRefused
from careloop.services.auth.passwords import dummy_hash, verify_secret
from careloop.services.common.bounds import json_problem
from careloop.services.common.egress import egress_client
from careloop.services.settings import Settings
from careloop.services.tenancy.models import AppClient, UsedAssertion
from careloop.services.unit_of_work import savepoint

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = 300
BAD_SECRET = "client authentication failed"
BAD_ASSERTION = "the client assertion signature is not valid"
MAX_ASSERTION_LENGTH = 16_384
MAX_CLIENT_ID = 64
"""The ``app_client.client_id`` column; a longer id names no client."""
MAX_JTI = 200
"""The ``used_assertion.jti`` column."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ClientAuthError(Exception):
    """The client could not be authenticated (answered as ``invalid_client``)."""


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ClientAuthError("malformed Basic credentials") from exc
    client_id, sep, secret = raw.partition(":")
    if not sep:
        raise ClientAuthError("malformed Basic credentials")
    client_id, secret = unquote(client_id), unquote(secret)
    if _CONTROL.search(client_id) or _CONTROL.search(secret) or len(secret) > 500:
        raise ClientAuthError("malformed Basic credentials")
    return client_id, secret


def _load_client(session: Session, client_id: str, refusal: str) -> AppClient:
    # An unknown client is refused exactly like a known one with wrong credentials.
    if not 0 < len(client_id) <= MAX_CLIENT_ID or _CONTROL.search(client_id):
        client_id = ""  # names no client; still checked against the dummy hash below
    client = session.get(AppClient, client_id)
    if client is None or not client.active:
        raise ClientAuthError(refusal)
    return client


def _client_keys(session: Session, settings: Settings, client: AppClient) -> KeySet:
    if client.jwks:
        return KeySet.import_key_set(json.loads(client.jwks))
    if client.jwks_url:
        http = egress_client(
            session, settings, client.tenant_id, "jwks", f"client:{client.client_id}"
        )
        try:
            response = http.request("GET", client.jwks_url, timeout=5.0)
            response.raise_for_status()
            return KeySet.import_key_set(response.json())
        except (httpx.HTTPError, DestinationRefused, ValueError) as exc:
            raise ClientAuthError("the client's JWKS could not be fetched") from exc
    raise ClientAuthError("the client has no registered keys")


def _unverified_claims(assertion: str) -> dict[str, Any]:
    """The assertion's claims before verification, read with bounded parsing.

    Header and payload are parsed here first (orjson bounds nesting; the standard parser would
    raise RecursionError on a deeply nested header) and must be flat JSON objects.
    """
    parts = assertion.split(".")
    if len(assertion) > MAX_ASSERTION_LENGTH or len(parts) != 3:
        raise ClientAuthError("the client assertion is not a JWT")
    decoded = []
    for part in parts[:2]:
        try:
            value = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except (binascii.Error, ValueError) as exc:
            raise ClientAuthError("the client assertion is not a JWT") from exc
        if not isinstance(value, dict) or json_problem(value, max_depth=4) is not None:
            raise ClientAuthError("the client assertion is not a JWT")
        decoded.append(value)
    try:
        jws.extract_compact(assertion.encode())
    except (JoseError, ValueError) as exc:
        raise ClientAuthError("the client assertion is not a JWT") from exc
    return decoded[1]


def _verify_assertion(
    session: Session,
    settings: Settings,
    assertion: str,
    token_url: str,
    client_id_hint: str | None,
) -> AppClient:
    unverified = _unverified_claims(assertion)
    client_id = unverified.get("iss")
    if not isinstance(client_id, str) or (client_id_hint and client_id_hint != client_id):
        raise ClientAuthError("the client assertion names no client")
    client = _load_client(session, client_id, BAD_ASSERTION)
    try:
        token = jwt.decode(
            assertion, _client_keys(session, settings, client), algorithms=ASSERTION_ALGS
        )
    except (JoseError, ValueError) as exc:
        raise ClientAuthError(BAD_ASSERTION) from exc
    if "kid" not in token.header:
        raise ClientAuthError("the client assertion has no kid")
    claims: dict[str, Any] = token.claims
    now = int(time.time())
    try:
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": client_id},
            sub={"essential": True, "value": client_id},
            aud={"essential": True, "value": token_url},
            exp={"essential": True},
            jti={"essential": True},
        ).validate(claims)
    except JoseError as exc:
        raise ClientAuthError(f"the client assertion is not valid: {exc.error}") from exc
    exp, jti = claims["exp"], claims["jti"]
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise ClientAuthError("the client assertion's exp is not an integer")
    if exp > now + MAX_ASSERTION_LIFETIME + 30:
        raise ClientAuthError("the client assertion expires more than 5 minutes ahead")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI or _CONTROL.search(jti):
        raise ClientAuthError(f"the client assertion's jti is not a string of 1 to {MAX_JTI}")
    session.execute(
        delete(UsedAssertion).where(UsedAssertion.expires_at < datetime.now(UTC))  # type: ignore[arg-type]
    )
    try:
        with savepoint(session):
            session.add(
                UsedAssertion(
                    client_id=client_id,
                    jti=jti,
                    expires_at=datetime.fromtimestamp(exp, UTC),
                )
            )
    except IntegrityError as exc:
        raise ClientAuthError("the client assertion was already used (jti replay)") from exc
    return client


def authenticate_client(
    session: Session,
    form: dict[str, str],
    authorization: str | None,
    token_url: str,
    settings: Settings,
) -> AppClient:
    """The client making a token request, by whichever method it used.

    A registered JWKS URL is fetched through the egress client (the egress address rules).
    """
    basic = _basic_credentials(authorization)
    if form.get("client_assertion") or form.get("client_assertion_type"):
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise ClientAuthError("unsupported client_assertion_type")
        return _verify_assertion(
            session, settings, form.get("client_assertion", ""), token_url, form.get("client_id")
        )
    if basic is not None:
        client_id, secret = basic
    elif "client_id" in form and "client_secret" in form:
        client_id, secret = form["client_id"], form["client_secret"]
    else:
        raise ClientAuthError("no client authentication given")
    client = session.get(AppClient, client_id)
    usable = client is not None and client.active and client.secret_hash is not None
    # Unknown clients are checked against a dummy hash: same answer, about the same time.
    stored = client.secret_hash if client is not None and client.secret_hash else dummy_hash()
    if not verify_secret(secret, stored) or not usable or client is None:
        raise ClientAuthError(BAD_SECRET)
    return client
