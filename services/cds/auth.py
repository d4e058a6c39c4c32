"""Authenticating the EHR behind a CDS Hooks call: its bearer JWT (CDS Hooks 2.0, "Trusting CDS
Clients").

Only an active `CdsClient`'s ``iss`` is trusted; the JWT must be signed ES384 or RS384 (never
``none`` or HMAC) by a key, chosen by ``kid``, of the JWKS at the client's allow-listed URL (a
``jku`` header must name that same URL); ``aud`` is the exact URL called; ``iat`` and ``exp`` are
present, ``exp`` not past and at most five minutes ahead; ``jti`` is used once. Any failure is
`CdsAuthError` with a reason code, which the endpoint answers with a bare 401 and logs with the
``iss`` only (never the token).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from careloop.services.cds.jwks import CACHE, JwksCache, JwksUnavailable
from careloop.services.cds.models import CdsClient, CdsUsedJti
from careloop.services.common.bounds import json_problem
from careloop.services.settings import Settings
from careloop.services.unit_of_work import savepoint

ALGORITHMS = ("ES384", "RS384")
MAX_JWT_LENGTH = 8192
MAX_LIFETIME = 300
"""Seconds a JWT may be valid for (``exp`` beyond now, and beyond ``iat``)."""
LEEWAY = 30
"""Seconds of clock difference tolerated between the EHR and careloop."""
MAX_JTI = 200
PRUNE_EVERY = 60.0
"""Seconds between deletions of expired ``jti`` rows by one process."""
MAX_ISS = 500
MAX_KID = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
log = logging.getLogger("careloop.cds")


class CdsAuthError(Exception):
    """The call is not from a trusted CDS client; ``reason`` is a code safe to log."""

    def __init__(self, reason: str, iss: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.iss = iss


@dataclass(frozen=True)
class CdsCaller:
    """The trusted EHR behind a call."""

    client_id: str
    tenant_id: str
    iss: str
    connection_id: str | None

    @property
    def actor(self) -> str:
        """How careloop records this EHR as the one who acted."""
        return f"cds:{self.iss}"[:200]


def _bounded_text(value: Any, limit: int) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= limit and not _CONTROL.search(value):
        return value
    return None


def _segment(part: str) -> dict[str, Any]:
    try:
        value = orjson.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise CdsAuthError("malformed") from exc
    if not isinstance(value, dict) or json_problem(value, max_depth=4) is not None:
        raise CdsAuthError("malformed")
    return value


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise CdsAuthError("no-token")
    if len(token) > MAX_JWT_LENGTH or token.count(".") != 2:
        raise CdsAuthError("malformed")
    return token


def _check_times(claims: dict[str, Any], now: int, iss: str) -> int:
    exp, iat = claims.get("exp"), claims.get("iat")
    for value in (exp, iat):
        if not isinstance(value, int) or isinstance(value, bool) or abs(value) > 2**40:
            raise CdsAuthError("bad-times", iss)
    assert isinstance(exp, int) and isinstance(iat, int)
    if exp < now - LEEWAY:
        raise CdsAuthError("expired", iss)
    if exp > now + MAX_LIFETIME + LEEWAY or exp - iat > MAX_LIFETIME + LEEWAY:
        raise CdsAuthError("lifetime-too-long", iss)
    if iat > now + LEEWAY:
        raise CdsAuthError("issued-in-future", iss)
    return exp


def _check_audience(claims: dict[str, Any], audience: str, iss: str) -> None:
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud and len(aud) <= 10)):
        raise CdsAuthError("wrong-audience", iss)


class _Pruning:
    """When this process last deleted expired ``jti`` rows (at most once per ``PRUNE_EVERY``)."""

    def __init__(self) -> None:
        self.last = -PRUNE_EVERY
        self.lock = threading.Lock()

    def due(self) -> bool:
        now = time.monotonic()
        with self.lock:
            if now - self.last < PRUNE_EVERY:
                return False
            self.last = now
            return True


_PRUNING = _Pruning()


def _use_jti(session: Session, iss: str, jti: str, exp: int, now: int) -> None:
    if _PRUNING.due():
        # Expired rows can go: a JWT past its exp (and the leeway) is refused anyway.
        session.execute(
            delete(CdsUsedJti).where(
                col(CdsUsedJti.expires_at) < datetime.fromtimestamp(now - LEEWAY, UTC)
            )
        )
    try:
        with savepoint(session):
            session.add(CdsUsedJti(iss=iss, jti=jti, expires_at=datetime.fromtimestamp(exp, UTC)))
    except IntegrityError as exc:
        raise CdsAuthError("jti-replayed", iss) from exc


def authenticate(
    session: Session,
    settings: Settings,
    authorization: str | None,
    audience: str,
    *,
    cache: JwksCache = CACHE,
    now: int | None = None,
) -> CdsCaller:
    """The trusted CDS client that signed the call's JWT, its ``jti`` recorded on ``session``.

    ``audience`` is the exact URL called. The caller commits ``session`` (so the ``jti`` stays
    used whatever the call becomes). Raises `CdsAuthError`.
    """
    token = _bearer(authorization)
    header_part, payload_part, _ = token.split(".")
    header, unverified = _segment(header_part), _segment(payload_part)
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise CdsAuthError("alg-refused")
    if "typ" in header and header["typ"] != "JWT":
        raise CdsAuthError("typ-refused")
    if "crit" in header:
        raise CdsAuthError("crit-refused")
    kid = _bounded_text(header.get("kid"), MAX_KID)
    iss = _bounded_text(unverified.get("iss"), MAX_ISS)
    if kid is None or iss is None:
        raise CdsAuthError("malformed")
    client = session.exec(select(CdsClient).where(CdsClient.iss == iss)).first()
    if client is None or not client.active:
        raise CdsAuthError("unknown-iss", iss)
    if "jku" in header and header["jku"] != client.jwks_url:
        raise CdsAuthError("jku-not-allowed", iss)
    try:
        keys = cache.keys_for(session, settings, client, kid)
    except JwksUnavailable as exc:
        raise CdsAuthError(str(exc), iss) from exc
    if keys is None:
        raise CdsAuthError("unknown-kid", iss)
    key = next(k for k in keys.keys if k.kid == kid)
    try:
        verified = jwt.decode(token, key, algorithms=[str(alg)])
    except (JoseError, ValueError, TypeError) as exc:
        raise CdsAuthError("bad-signature", iss) from exc
    claims: dict[str, Any] = verified.claims
    if claims.get("iss") != iss:
        raise CdsAuthError("malformed", iss)
    moment = int(time.time()) if now is None else now
    _check_audience(claims, audience, iss)
    exp = _check_times(claims, moment, iss)
    jti = _bounded_text(claims.get("jti"), MAX_JTI)
    if jti is None:
        raise CdsAuthError("no-jti", iss)
    _use_jti(session, iss, jti, exp, moment)
    return CdsCaller(client.id, client.tenant_id, iss, client.connection_id)


def log_refusal(error: CdsAuthError) -> None:
    """Log why a call was refused: the reason code and the claimed ``iss``, nothing else."""
    iss = (error.iss or "-")[:200]
    log.warning("cds call refused: %s (iss %s)", error.reason, iss)
