"""``SigningEhr``: an EHR calling careloop's CDS services with real signed JWTs.

Its ES384 and RS384 public keys are served as a JWKS by a real HTTP server on loopback.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import Engine

from careloop.services.cds.clients import add_client
from careloop.services.common.egress import destination_policy
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope

BASE_URL = "http://testserver"
SERVICE = "/cds-services/careloop-patient-view"
ALL_ALGS = ["ES384", "RS384", "ES256", "RS256", "HS256", "none"]


class JwksServer:
    """A JWKS document on ``http://127.0.0.1:{port}/jwks.json``; counts the fetches."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.fetches += 1
                body = orjson.dumps(server.jwks)
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/jwks.json"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @contextmanager
    def running(self) -> Iterator[JwksServer]:
        """Serve until the block ends."""
        self._thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()


@cache
def ehr_keys() -> tuple[ECKey, RSAKey]:
    """The EHR's signing keys (made once per test process: RSA keys take a while)."""
    return (
        ECKey.generate_key("P-384", parameters={"kid": "es-1"}, private=True),
        RSAKey.generate_key(2048, parameters={"kid": "rs-1"}, private=True),
    )


class SigningEhr:
    """An EHR's keys (ES384 ``es-1``, RS384 ``rs-1``) and its signed CDS Hooks calls."""

    def __init__(self) -> None:
        self.es_key, self.rs_key = ehr_keys()
        self.jwks = {
            "keys": [
                self.es_key.as_dict(private=False, alg="ES384", use="sig"),
                self.rs_key.as_dict(private=False, alg="RS384", use="sig"),
            ]
        }
        self.server = JwksServer(self.jwks)
        self.iss = ""

    @property
    def jwks_url(self) -> str:
        """Where the JWKS is served."""
        return self.server.url

    def register(
        self, engine: Engine, settings: Settings, tenant: str, ehr_name: str | None = None
    ) -> str:
        """Register as a CDS client of ``tenant`` under a fresh issuer; the issuer."""
        self.iss = f"https://ehr-{uuid.uuid4().hex[:10]}.example/cds"
        with session_scope(engine) as session:
            add_client(
                session,
                self.iss,
                self.jwks_url,
                tenant,
                ehr_name,
                destinations=destination_policy(settings),
            )
        return self.iss

    def claims(self, path: str = SERVICE, **overrides: Any) -> dict[str, Any]:
        """The claims of a valid JWT for a call of ``path``, with ``overrides`` (None drops)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.iss,
            "aud": BASE_URL + path,
            "iat": now,
            "exp": now + 240,
            "jti": secrets.token_urlsafe(16),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        path: str = SERVICE,
        alg: str = "ES384",
        key: Any = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A JWT signed with ``alg`` (the matching key unless ``key`` is given)."""
        if key is None:
            key = self.es_key if alg.startswith("ES") else self.rs_key
        head = {"alg": alg, "typ": "JWT", "kid": key.kid if hasattr(key, "kid") else "es-1"}
        head.update(header or {})
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(head, self.claims(path, **claims), key, algorithms=ALL_ALGS)

    def headers(self, path: str = SERVICE, **options: Any) -> dict[str, str]:
        """An Authorization header for one call of ``path``."""
        return {"Authorization": f"Bearer {self.token(path, **options)}"}


def hook_request(patient_id: str, patient: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``patient-view`` call for the EHR's ``patient_id``, with the prefetched Patient."""
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": "https://ehr.example/fhir",
        "context": {"userId": "Practitioner/ehr-doc-1", "patientId": patient_id},
    }
    if patient is not None:
        body["prefetch"] = {"patient": patient}
    return body
