"""The client a token request claims to be, read before authenticating it (for rate limits)."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import unquote

from joserfc import jws
from joserfc.errors import JoseError


def _from_basic(authorization: str) -> str | None:
    try:
        raw = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, _ = raw.partition(":")
    return unquote(client_id) if sep else None


def _from_assertion(assertion: str) -> str | None:
    try:
        payload = json.loads(jws.extract_compact(assertion.encode()).payload)
    except (JoseError, ValueError):
        return None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else None


def claimed_client_id(form: dict[str, str], authorization: str | None) -> str | None:
    """The client_id a request names (unverified), by whichever authentication it uses."""
    if form.get("client_assertion"):
        return _from_assertion(form["client_assertion"]) or form.get("client_id")
    if authorization and authorization.lower().startswith("basic "):
        return _from_basic(authorization)
    return form.get("client_id")
