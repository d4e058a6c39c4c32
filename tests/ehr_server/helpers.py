"""Client-side helpers for tests: keys, client assertions, PKCE, a tiny JWKS server."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from .server import TestEHR

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def rsa_key(kid: str) -> RSAKey:
    """A fresh RSA-2048 private key with ``kid``."""
    return RSAKey.generate_key(2048, parameters={"kid": kid})


def ec_key(kid: str) -> ECKey:
    """A fresh P-384 private key with ``kid``."""
    return ECKey.generate_key("P-384", parameters={"kid": kid})


def public_jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    """The public JWKS of ``keys``."""
    return {"keys": [k.as_dict(private=False) for k in keys]}


def client_assertion(
    key: RSAKey | ECKey,
    client_id: str,
    token_url: str,
    alg: str | None = None,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
) -> str:
    """A signed SMART Backend Services assertion; ``header``/``claims`` override (None drops)."""
    alg = alg or ("RS384" if isinstance(key, RSAKey) else "ES384")
    now = int(time.time())
    base_header: dict[str, Any] = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    base_claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
    }
    final_header = {k: v for k, v in {**base_header, **(header or {})}.items() if v is not None}
    final_claims = {k: v for k, v in {**base_claims, **(claims or {})}.items() if v is not None}
    return jwt.encode(final_header, final_claims, key, algorithms=[final_header["alg"]])


def token_form(assertion: str, scope: str) -> dict[str, str]:
    """The form of a client_credentials token request."""
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, S256 code_challenge)``."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class JwksServer:
    """Serves ``jwks`` (tests may replace it) at ``url``; counts fetches."""

    url: str
    jwks: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    fetches: int = 0


@contextmanager
def jwks_server(jwks: dict[str, Any]) -> Iterator[JwksServer]:
    """A loopback HTTP server publishing a JWKS at ``/jwks.json``."""
    holder: list[JwksServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            state = holder[0]
            state.fetches += 1
            body = json.dumps(state.jwks).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(JwksServer(f"http://127.0.0.1:{server.server_address[1]}/jwks.json", jwks))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def issue_token(ehr: TestEHR, scope: str) -> str:
    """Register a fresh ES384 Backend Services client allowed ``scope``; fetch a token over HTTP."""
    key = ec_key(f"k-{uuid.uuid4().hex[:8]}")
    client_id = f"client-{uuid.uuid4().hex[:8]}"
    ehr.register_client(client_id, scope, jwks=public_jwks(key))
    form = token_form(client_assertion(key, client_id, ehr.token_url), scope)
    with httpx.Client(trust_env=False) as http:
        response = http.post(ehr.token_url, data=form)
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token
