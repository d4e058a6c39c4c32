"""The OpenID Connect ``id_token`` of a SMART launch, validated before its ``fhirUser`` is used.

Signature against the EHR's ``jwks_uri`` (fetched through the egress client), RS256/RS384/
ES256/ES384 only (no ``none``, no HMAC), ``iss`` the EHR's issuer, ``aud`` careloop's launch
client id, ``exp`` in the future, and the ``nonce`` careloop sent with the authorize request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from typing import Any

import httpx
import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from careloop.integrations.egress import DestinationRefused, EgressClient
from careloop.services.common.bounds import json_problem

ALGORITHMS = ["RS256", "RS384", "ES256", "ES384"]
MAX_ID_TOKEN = 16_384
LEEWAY_SECONDS = 60
"""Clock skew allowed between careloop and the EHR."""


class IdTokenRefused(Exception):
    """The id_token is missing or not valid; the message is safe to show."""


def _flat_parts(id_token: str) -> None:
    """Header and payload must be small, flat JSON objects (bounded parsing before joserfc)."""
    parts = id_token.split(".")
    if len(id_token) > MAX_ID_TOKEN or len(parts) != 3:
        raise IdTokenRefused("the EHR's id_token is not a signed JWT")
    for part in parts[:2]:
        try:
            value = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except (binascii.Error, ValueError) as exc:
            raise IdTokenRefused("the EHR's id_token is not a signed JWT") from exc
        if not isinstance(value, dict) or json_problem(value, max_depth=4) is not None:
            raise IdTokenRefused("the EHR's id_token is not a signed JWT")


def jwks_uri(http: EgressClient, iss: str, config: dict[str, Any]) -> str:
    """The EHR's ``jwks_uri``: from its SMART configuration, else its OpenID configuration."""
    uri = config.get("jwks_uri")
    if not isinstance(uri, str) or not uri:
        try:
            response = http.request("GET", iss.rstrip("/") + "/.well-known/openid-configuration")
            response.raise_for_status()
            uri = response.json().get("jwks_uri")
        except (httpx.HTTPError, DestinationRefused, ValueError, AttributeError) as exc:
            raise IdTokenRefused("the EHR publishes no keys for its id_tokens") from exc
    if not isinstance(uri, str) or not uri or len(uri) > 2000:
        raise IdTokenRefused("the EHR publishes no keys for its id_tokens")
    return uri


def _keys(http: EgressClient, uri: str) -> KeySet:
    try:
        response = http.request("GET", uri)
        response.raise_for_status()
        return KeySet.import_key_set(response.json())
    except (httpx.HTTPError, DestinationRefused, JoseError, ValueError, TypeError) as exc:
        raise IdTokenRefused("the EHR's keys could not be read") from exc


def validate_id_token(
    http: EgressClient,
    id_token: object,
    *,
    issuers: list[str],
    client_id: str,
    nonce: str,
    keys_uri: str,
) -> dict[str, Any]:
    """The claims of ``id_token`` once valid; ``IdTokenRefused`` otherwise.

    ``issuers``: the values ``iss`` may take (the EHR's issuer and its FHIR base URL).
    """
    if not isinstance(id_token, str) or not id_token:
        raise IdTokenRefused("the EHR did not say who is signed in (no id_token)")
    _flat_parts(id_token)
    try:
        token = jwt.decode(id_token, _keys(http, keys_uri), algorithms=ALGORITHMS)
    except (JoseError, ValueError) as exc:
        raise IdTokenRefused("the EHR's id_token signature is not valid") from exc
    claims: dict[str, Any] = token.claims
    try:
        jwt.JWTClaimsRegistry(
            now=int(time.time()),
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "values": issuers},
            aud={"essential": True, "value": client_id},
            exp={"essential": True},
            sub={"essential": True},
        ).validate(claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise IdTokenRefused("the EHR's id_token is not for this launch") from exc
    sent = claims.get("nonce")
    if not nonce or not isinstance(sent, str) or not hmac.compare_digest(sent, nonce):
        raise IdTokenRefused("the EHR's id_token is not for this launch")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise IdTokenRefused("the EHR's id_token is not for this launch")
    return claims
