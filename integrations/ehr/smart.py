"""SMART Backend Services: discovery and access tokens from signed client assertions."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from careloop.integrations.egress import DestinationRefused, EgressClient

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = 240
"""Seconds; SMART allows at most 300."""
REFRESH_MARGIN = 30
"""Seconds before expiry at which a cached token is replaced."""

KeyProvider = Callable[[str], RSAKey | ECKey]
"""Returns the active private key for an algorithm (RS384 or ES384)."""


class SmartError(Exception):
    """Discovery or token request failed; ``transient`` says whether trying later may help."""

    def __init__(self, message: str, transient: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.status = status


@dataclass(frozen=True)
class SmartConfiguration:
    """The parts of ``.well-known/smart-configuration`` careloop uses."""

    token_endpoint: str
    signing_algs: tuple[str, ...]


def discover(http: EgressClient, fhir_base_url: str) -> SmartConfiguration:
    """Read the EHR's SMART configuration; its token endpoint must pass the egress rules.

    The token endpoint is checked like any destination (public address, https in production)
    and, in production, must be on the EHR's own host or an allow-listed one
    (`DestinationPolicy.check_token_endpoint`).
    """
    url = fhir_base_url.rstrip("/") + "/.well-known/smart-configuration"
    try:
        response = http.request("GET", url, headers={"Accept": "application/json"})
    except DestinationRefused as exc:
        raise SmartError(f"discovery refused: {exc.message}", exc.transient) from exc
    except httpx.TransportError as exc:
        raise SmartError(f"discovery failed: {type(exc).__name__}", transient=True) from exc
    if response.status_code != 200:
        raise SmartError(
            f"discovery answered {response.status_code}",
            transient=response.status_code >= 500 or response.status_code == 429,
            status=response.status_code,
        )
    try:
        data = response.json()
        endpoint = str(data["token_endpoint"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SmartError("smart-configuration has no token_endpoint", transient=False) from exc
    try:
        http.policy.check_token_endpoint(endpoint, fhir_base_url)
    except DestinationRefused as exc:
        raise SmartError(f"token endpoint refused: {exc.message}", exc.transient) from exc
    algs = tuple(data.get("token_endpoint_auth_signing_alg_values_supported") or ("RS384",))
    return SmartConfiguration(endpoint, algs)


def client_assertion(client_id: str, token_endpoint: str, key: RSAKey | ECKey, alg: str) -> str:
    """A signed JWT per SMART Backend Services: iss = sub = client id, aud = token endpoint."""
    now = int(time.time())
    header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(header, claims, key, algorithms=[alg])


@dataclass
class _Cached:
    token: str
    expires_at: float


class TokenManager:
    """Access tokens per connection: cached until shortly before expiry, refreshed under a lock."""

    def __init__(self) -> None:
        self._tokens: dict[str, _Cached] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.requested = 0

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def invalidate(self, key: str, token: str | None = None) -> None:
        """Forget the cached token (only if it is still ``token``, when given)."""
        with self._lock(key):
            cached = self._tokens.get(key)
            if cached is not None and (token is None or cached.token == token):
                del self._tokens[key]

    def token(
        self,
        key: str,
        http: EgressClient,
        token_endpoint: str,
        client_id: str,
        scope: str,
        alg: str,
        keys: KeyProvider,
    ) -> str:
        """A valid access token for connection ``key``."""
        with self._lock(key):
            cached = self._tokens.get(key)
            if cached is not None and cached.expires_at - REFRESH_MARGIN > time.monotonic():
                return cached.token
            assertion = client_assertion(client_id, token_endpoint, keys(alg), alg)
            form = {
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            }
            self.requested += 1
            try:
                response = http.request("POST", token_endpoint, data=form)
            except DestinationRefused as exc:
                raise SmartError(f"token request refused: {exc.message}", exc.transient) from exc
            except httpx.TransportError as exc:
                raise SmartError(f"token request failed: {type(exc).__name__}", True) from exc
            if response.status_code != 200:
                error = _oauth_error(response)
                raise SmartError(
                    f"token request refused: {response.status_code} {error}",
                    transient=response.status_code >= 500 or response.status_code == 429,
                    status=response.status_code,
                )
            data = response.json()
            lifetime = float(data.get("expires_in", 300))
            self._tokens[key] = _Cached(str(data["access_token"]), time.monotonic() + lifetime)
            return str(data["access_token"])


def _oauth_error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))
    except ValueError:
        return ""


tokens = TokenManager()
"""The process-wide token cache."""
