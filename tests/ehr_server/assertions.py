"""Verification of SMART Backend Services client assertions (RFC 7523 ``private_key_jwt``)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey, import_key

from .errors import OAuthError

ALLOWED_ALGS = ("RS384", "ES384")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LEEWAY_SECONDS = 5
MAX_LIFETIME_SECONDS = 300
_KEY_TYPES = {"RS384": ("RSA", None), "ES384": ("EC", "P-384")}


@dataclass
class BackendClient:
    """A registered Backend Services client."""

    client_id: str
    scopes: list[str]
    jwks_url: str | None
    jwks: dict[str, Any] | None


def _invalid(description: str) -> OAuthError:
    return OAuthError("invalid_client", description)


class AssertionVerifier:
    """Checks assertions strictly; remembers every accepted ``jti`` to refuse replays."""

    def __init__(self, token_url: str) -> None:
        self.token_url = token_url
        self._lock = threading.Lock()
        self._seen_jti: set[tuple[str, str]] = set()

    async def verify(self, assertion: str, clients: dict[str, BackendClient]) -> BackendClient:
        """The client the assertion authenticates; :class:`OAuthError` ``invalid_client`` else."""
        try:
            compact = jws.extract_compact(assertion.encode())
            header = compact.headers()
            unverified = json.loads(compact.payload)
        except (JoseError, ValueError) as exc:
            raise _invalid(f"client_assertion is not a compact JWS: {exc}") from None
        if not isinstance(unverified, dict):
            raise _invalid("client_assertion payload is not a JSON object")
        alg = header.get("alg")
        if alg not in ALLOWED_ALGS:
            raise _invalid(f"alg {alg!r} is not allowed; use RS384 or ES384")
        if header.get("typ", "JWT") != "JWT":
            raise _invalid(f"typ {header.get('typ')!r} must be JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid("the JWT header has no kid")
        client = clients.get(str(unverified.get("iss")))
        if client is None:
            raise _invalid(f"unknown client (iss {unverified.get('iss')!r})")
        if "jku" in header and header["jku"] != client.jwks_url:
            raise _invalid("jku does not match the registered JWKS URL")
        key = _find_key(await _client_jwks(client), kid, alg)
        try:
            claims = jwt.decode(assertion, key, algorithms=[alg]).claims
        except JoseError as exc:
            raise _invalid(f"signature verification failed: {exc.error}") from None
        self._check_claims(claims, client.client_id)
        return client

    def _check_claims(self, claims: dict[str, Any], client_id: str) -> None:
        now = time.time()
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise _invalid("iss and sub must both equal the client_id")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.token_url not in audiences:
            raise _invalid(f"aud must be the token endpoint URL {self.token_url!r}")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise _invalid("exp is missing or not a number")
        if exp < now - LEEWAY_SECONDS:
            raise _invalid("the assertion has expired")
        if exp > now + MAX_LIFETIME_SECONDS + LEEWAY_SECONDS:
            raise _invalid("exp is more than five minutes in the future")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf > now + LEEWAY_SECONDS:
            raise _invalid("the assertion is not valid yet (nbf)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _invalid("jti is missing")
        with self._lock:
            if (client_id, jti) in self._seen_jti:
                raise _invalid("jti has already been used (replay)")
            self._seen_jti.add((client_id, jti))


async def _client_jwks(client: BackendClient) -> dict[str, Any]:
    """The registered inline JWKS, or the JWKS fetched now from the registered URL."""
    if client.jwks is not None:
        return client.jwks
    assert client.jwks_url is not None
    try:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            response = await http.get(client.jwks_url)
        response.raise_for_status()
        jwks = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _invalid(f"could not fetch the client's JWKS: {exc!r}") from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise _invalid("the client's JWKS is not a JWK Set")
    return jwks


def _find_key(jwks: dict[str, Any], kid: str, alg: str) -> RSAKey | ECKey:
    """The public key ``kid`` from ``jwks``, checked to suit ``alg``."""
    matches = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
    if not matches:
        raise _invalid(f"kid {kid!r} is not in the client's JWKS")
    data = matches[0]
    kty, crv = _KEY_TYPES[alg]
    if data.get("kty") != kty or (crv and data.get("crv") != crv):
        raise _invalid(f"key {kid!r} does not suit alg {alg}")
    if data.get("alg") not in (None, alg):
        raise _invalid(f"key {kid!r} is registered for alg {data.get('alg')!r}, not {alg}")
    try:
        key = import_key(data)
    except (JoseError, ValueError) as exc:
        raise _invalid(f"key {kid!r} cannot be imported: {exc}") from None
    if not isinstance(key, RSAKey | ECKey):
        raise _invalid(f"key {kid!r} is not an RSA or EC key")
    return key
