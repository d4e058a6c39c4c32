"""careloop's own access tokens: short-lived HS256 JWTs naming the client, tenant and scopes."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from functools import lru_cache

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from careloop.services.auth.scopes import Grant, parse_scopes

_ALG = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who is calling: an app client of one tenant, with the scopes its token grants."""

    client_id: str
    tenant_id: str
    scope: str
    grant: Grant
    expires_at: int


class InvalidToken(Exception):
    """The bearer token is missing, malformed, expired or not ours."""


@lru_cache(maxsize=4)
def _key(secret: str) -> OctKey:
    return OctKey.import_key(secret.encode())


def issue_token(
    secret: str, issuer: str, client_id: str, tenant_id: str, scope: str, lifetime: int
) -> str:
    """A signed access token for ``client_id``."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": issuer,
        "sub": client_id,
        "tenant": tenant_id,
        "scope": scope,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode({"alg": _ALG, "typ": "JWT"}, claims, _key(secret), algorithms=[_ALG])


_cache: dict[str, Principal] = {}
_CACHE_MAX = 10_000


def verify_token(secret: str, issuer: str, token: str) -> Principal:
    """The principal a valid token names; raises InvalidToken otherwise."""
    now = int(time.time())
    cached = _cache.get(token)
    if cached is not None:
        if cached.expires_at > now:
            return cached
        _cache.pop(token, None)
        raise InvalidToken("the access token has expired")
    try:
        decoded = jwt.decode(token, _key(secret), algorithms=[_ALG])
    except (JoseError, ValueError) as exc:
        raise InvalidToken("the access token is not valid") from exc
    claims = decoded.claims
    try:
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": issuer},
            exp={"essential": True},
        ).validate(claims)
        principal = Principal(
            client_id=str(claims["sub"]),
            tenant_id=str(claims["tenant"]),
            scope=str(claims["scope"]),
            grant=Grant(tuple(parse_scopes(str(claims["scope"])))),
            expires_at=int(claims["exp"]),
        )
    except (JoseError, KeyError, ValueError) as exc:
        raise InvalidToken("the access token is not valid or has expired") from exc
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[token] = principal
    return principal
