"""The SMART authorization server: Backend Services and App Launch (code + PKCE) grants."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import unquote, urlencode

from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from .assertions import ASSERTION_TYPE, AssertionVerifier, BackendClient
from .errors import OAuthError
from .scopes import ResourceScope, ScopeSyntaxError, is_covered, resource_scopes, split_scopes

CODE_LIFETIME_SECONDS = 60
ID_TOKEN_FAULTS = (
    "forged", "wrong-aud", "wrong-iss", "wrong-nonce", "no-nonce", "expired", "alg-none", "hs256"
)  # fmt: skip
"""What :meth:`TestEHR.spoil_id_tokens` can do to the id_tokens it issues."""
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


@dataclass
class App:
    """A registered App Launch client (public unless it has a secret)."""

    client_id: str
    redirect_uris: list[str]
    scopes: list[str]
    client_secret: str | None


@dataclass(frozen=True)
class LaunchContext:
    """Launch context carried from the authorize request into the token."""

    patient: str | None = None
    encounter: str | None = None
    user: str | None = None
    app_context: str | None = None
    """The ``appContext`` the launch carries into the token response (from a CDS card's link)."""


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scopes: list[str]
    context: LaunchContext
    nonce: str | None
    expires_at: float


@dataclass
class AccessToken:
    """An issued access token."""

    client_id: str
    scopes: list[str]
    expires_at: float
    context: LaunchContext = field(default_factory=LaunchContext)

    @property
    def resource_scopes(self) -> list[ResourceScope]:
        """The token's resource scopes."""
        return resource_scopes(self.scopes)


class AuthServer:
    """Registrations, codes and tokens; every method is thread-safe."""

    def __init__(self, base_url: str, token_url: str, token_lifetime: int) -> None:
        self.base_url = base_url
        self.token_url = token_url
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self._clients: dict[str, BackendClient] = {}
        self._apps: dict[str, App] = {}
        self._launches: dict[str, LaunchContext] = {}
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, AccessToken] = {}
        self._tokens: dict[str, AccessToken] = {}
        self._verifier = AssertionVerifier(token_url)
        self.standalone = LaunchContext()
        self.issued = 0
        self.id_token_fault: str | None = None
        """How the next id_tokens are spoiled (``ID_TOKEN_FAULTS``), or None."""

    # -- registration --------------------------------------------------------------------

    def register_client(
        self, client_id: str, scopes: str, jwks_url: str | None, jwks: dict[str, Any] | None
    ) -> None:
        """Register a Backend Services client with its JWKS (by URL or inline)."""
        if (jwks_url is None) == (jwks is None):
            raise ValueError("give exactly one of jwks_url and jwks")
        resource_scopes(split_scopes(scopes))  # raises on bad syntax
        with self._lock:
            self._clients[client_id] = BackendClient(
                client_id, split_scopes(scopes), jwks_url, jwks
            )

    def register_app(
        self, client_id: str, redirect_uris: list[str], scopes: str, client_secret: str | None
    ) -> None:
        """Register an App Launch client."""
        resource_scopes(split_scopes(scopes))
        with self._lock:
            self._apps[client_id] = App(
                client_id, list(redirect_uris), split_scopes(scopes), client_secret
            )

    def create_launch(self, context: LaunchContext) -> str:
        """An opaque ``launch`` value bound to ``context``."""
        launch = secrets.token_urlsafe(16)
        with self._lock:
            self._launches[launch] = context
        return launch

    def revoke_all(self) -> None:
        """Invalidate every access and refresh token issued so far."""
        with self._lock:
            self._tokens.clear()
            self._refresh.clear()

    @cached_property
    def signing_key(self) -> RSAKey:
        """The EHR's RS256 key for id_tokens (generated on first use)."""
        return RSAKey.generate_key(2048, parameters={"kid": "ehr-1", "alg": "RS256", "use": "sig"})

    def jwks(self) -> dict[str, Any]:
        """The EHR's public JWKS."""
        return {"keys": [self.signing_key.as_dict(private=False)]}

    # -- resource server side ------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> AccessToken:
        """The token of a ``Bearer`` header; :class:`OAuthError` (401) otherwise."""
        realm = 'Bearer realm="test-ehr"'
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise OAuthError("invalid_request", "no bearer token", 401, {"WWW-Authenticate": realm})
        with self._lock:
            token = self._tokens.get(value.strip())
        if token is None or token.expires_at <= time.time():
            challenge = f'{realm}, error="invalid_token", error_description="expired or unknown"'
            raise OAuthError(
                "invalid_token", "expired or unknown", 401, {"WWW-Authenticate": challenge}
            )
        return token

    # -- authorize endpoint --------------------------------------------------------------

    def authorize(self, params: list[tuple[str, str]]) -> str:
        """The redirect Location for an authorize request.

        Raises :class:`OAuthError` (400, no redirect) when the client or redirect_uri is bad.
        """
        names = [name for name, _ in params]
        query = dict(params)
        app = self._apps.get(query.get("client_id", ""))
        if app is None:
            raise OAuthError("invalid_request", "unknown client_id")
        redirect_uri = query.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            raise OAuthError("invalid_request", "redirect_uri is not registered for this client")
        state = query.get("state")
        try:
            if len(names) != len(set(names)):
                raise OAuthError("invalid_request", "a parameter is repeated")
            code = self._authorize_checks(app, query)
        except OAuthError as exc:
            return _redirect(
                redirect_uri,
                {"error": exc.error, "error_description": exc.description, "state": state},
            )
        return _redirect(redirect_uri, {"code": code, "state": state})

    def _authorize_checks(self, app: App, query: dict[str, str]) -> str:
        if query.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "response_type must be code")
        if not query.get("state"):
            raise OAuthError("invalid_request", "state is required")
        if query.get("aud") != self.base_url:
            raise OAuthError("invalid_request", f"aud must be the FHIR base URL {self.base_url}")
        if query.get("code_challenge_method") != "S256":
            raise OAuthError("invalid_request", "code_challenge_method must be S256")
        if not _CHALLENGE.match(query.get("code_challenge", "")):
            raise OAuthError("invalid_request", "code_challenge must be a base64url SHA-256 digest")
        scopes = self._granted(split_scopes(query.get("scope", "")), app.scopes)
        context = self._launch_context(scopes, query.get("launch"))
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(
                app.client_id,
                query["redirect_uri"],
                query["code_challenge"],
                scopes,
                context,
                query.get("nonce"),
                time.time() + CODE_LIFETIME_SECONDS,
            )
        return code

    def _launch_context(self, scopes: list[str], launch: str | None) -> LaunchContext:
        if launch is not None:
            if "launch" not in scopes:
                raise OAuthError("invalid_scope", "a launch parameter needs the launch scope")
            with self._lock:
                context = self._launches.get(launch)
            if context is None:
                raise OAuthError("invalid_request", "unknown launch value")
            return context
        if "launch" in scopes:
            raise OAuthError("invalid_request", "scope launch needs a launch parameter")
        if "launch/patient" in scopes:
            if self.standalone.patient is None:
                raise OAuthError("invalid_request", "no patient selected for standalone launch")
            return self.standalone
        return LaunchContext(user=self.standalone.user)

    @staticmethod
    def _granted(requested: list[str], registered: list[str]) -> list[str]:
        if not requested:
            raise OAuthError("invalid_scope", "scope is required")
        try:
            for scope in requested:
                if not is_covered(scope, registered):
                    raise OAuthError("invalid_scope", f"scope {scope!r} is not granted")
        except ScopeSyntaxError as exc:
            raise OAuthError("invalid_scope", str(exc)) from None
        return requested

    # -- token endpoint ------------------------------------------------------------------

    async def token(self, form: list[tuple[str, str]], authorization: str | None) -> dict[str, Any]:
        """Handle a token request; raises :class:`OAuthError`."""
        names = [name for name, _ in form]
        if len(names) != len(set(names)):
            raise OAuthError("invalid_request", "a parameter is repeated")
        params = dict(form)
        grant = params.get("grant_type")
        if grant == "client_credentials":
            return await self._client_credentials(params)
        if grant == "authorization_code":
            return self._authorization_code(params, authorization)
        if grant == "refresh_token":
            return self._refresh_token(params, authorization)
        raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")

    async def _client_credentials(self, params: dict[str, str]) -> dict[str, Any]:
        if params.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}")
        if not params.get("client_assertion"):
            raise OAuthError("invalid_client", "client_assertion is required")
        with self._lock:
            clients = dict(self._clients)
        client = await self._verifier.verify(params["client_assertion"], clients)
        if params.get("client_id") not in (None, client.client_id):
            raise OAuthError("invalid_client", "client_id does not match the assertion")
        scopes = self._granted(split_scopes(params.get("scope", "")), client.scopes)
        if any(not s.startswith("system/") for s in scopes):
            raise OAuthError("invalid_scope", "Backend Services grants system/ scopes only")
        return self._issue(client.client_id, scopes, LaunchContext())

    def _authenticate_app(self, params: dict[str, str], authorization: str | None) -> App:
        basic_id: str | None = None
        basic_secret: str | None = None
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except ValueError:
                raise self._bad_basic("malformed Basic credentials") from None
            raw_id, _, raw_secret = decoded.partition(":")
            basic_id, basic_secret = unquote(raw_id), unquote(raw_secret)
        client_id = basic_id or params.get("client_id")
        if params.get("client_id") not in (None, client_id):
            raise self._bad_basic("client_id does not match the Basic credentials")
        app = self._apps.get(client_id or "")
        if app is None:
            raise self._bad_basic("unknown client")
        if app.client_secret is None:
            if basic_id is not None:
                raise self._bad_basic("a public client must not send credentials")
        elif basic_secret is None or not secrets.compare_digest(basic_secret, app.client_secret):
            raise self._bad_basic("client_secret_basic authentication failed")
        return app

    @staticmethod
    def _bad_basic(description: str) -> OAuthError:
        return OAuthError(
            "invalid_client", description, 401, {"WWW-Authenticate": 'Basic realm="test-ehr"'}
        )

    def _authorization_code(
        self, params: dict[str, str], authorization: str | None
    ) -> dict[str, Any]:
        app = self._authenticate_app(params, authorization)
        with self._lock:
            code = self._codes.pop(params.get("code", ""), None)
        if code is None or code.expires_at <= time.time():
            raise OAuthError("invalid_grant", "the code is unknown, used or expired")
        if code.client_id != app.client_id:
            raise OAuthError("invalid_grant", "the code was issued to another client")
        if params.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorize request")
        verifier = params.get("code_verifier", "")
        if not _VERIFIER.match(verifier):
            raise OAuthError("invalid_grant", "code_verifier is missing or malformed")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        response = self._issue(app.client_id, code.scopes, code.context)
        if "openid" in code.scopes and "fhirUser" in code.scopes and code.context.user:
            response["id_token"] = self._id_token(app.client_id, code.context.user, code.nonce)
        return response

    def _refresh_token(self, params: dict[str, str], authorization: str | None) -> dict[str, Any]:
        app = self._authenticate_app(params, authorization)
        with self._lock:
            previous = self._refresh.pop(params.get("refresh_token", ""), None)
        if previous is None or previous.client_id != app.client_id:
            raise OAuthError("invalid_grant", "unknown refresh_token")
        scopes = previous.scopes
        if "scope" in params:
            scopes = self._granted(split_scopes(params["scope"]), previous.scopes)
        return self._issue(app.client_id, scopes, previous.context)

    def _issue(self, client_id: str, scopes: list[str], context: LaunchContext) -> dict[str, Any]:
        value = secrets.token_urlsafe(32)
        token = AccessToken(client_id, scopes, time.time() + self.token_lifetime, context)
        response: dict[str, Any] = {
            "access_token": value,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "scope": " ".join(scopes),
        }
        if context.patient and ("launch" in scopes or "launch/patient" in scopes):
            response["patient"] = context.patient
        if context.encounter and ("launch" in scopes or "launch/encounter" in scopes):
            response["encounter"] = context.encounter
        if context.app_context is not None and "launch" in scopes:
            response["appContext"] = context.app_context
        with self._lock:
            self._tokens[value] = token
            self.issued += 1
            if "offline_access" in scopes or "online_access" in scopes:
                refresh = secrets.token_urlsafe(32)
                self._refresh[refresh] = token
                response["refresh_token"] = refresh
        return response

    def _id_token(self, client_id: str, user: str, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.base_url,
            "sub": user.split("/")[-1],
            "aud": client_id,
            "iat": now,
            "exp": now + self.token_lifetime,
            "fhirUser": f"{self.base_url}/{user}",
            "name": "Dr Synthetic EHR",
        }
        if nonce:
            claims["nonce"] = nonce
        header = {"alg": "RS256", "kid": "ehr-1", "typ": "JWT"}
        fault = self.id_token_fault
        if fault is not None:
            return self._spoiled(fault, header, claims)
        return jwt.encode(header, claims, self.signing_key)

    def _spoiled(self, fault: str, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """An id_token wrong in the way ``fault`` names."""
        if fault == "forged":  # another key, the same kid
            other = RSAKey.generate_key(2048, parameters={"kid": "ehr-1", "alg": "RS256"})
            return jwt.encode(header, claims, other)
        if fault == "alg-none":

            def part(value: dict[str, Any]) -> str:
                raw = json.dumps(value).encode()
                return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

            return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."
        if fault == "hs256":  # HMAC keyed with the public key's modulus: the classic confusion
            secret = OctKey.import_key(self.signing_key.as_dict(private=False)["n"].encode())
            return jwt.encode({"alg": "HS256", "kid": "ehr-1"}, claims, secret)
        changes: dict[str, dict[str, Any]] = {
            "wrong-aud": {"aud": "another-app"},
            "wrong-iss": {"iss": "https://other-ehr.example/fhir"},
            "wrong-nonce": {"nonce": "not-the-nonce-sent"},
            "expired": {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
        }
        spoiled = {**claims, **changes.get(fault, {})}
        if fault == "no-nonce":
            spoiled.pop("nonce", None)
        return jwt.encode(header, spoiled, self.signing_key)


def _redirect(uri: str, params: dict[str, str | None]) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"
