"""The Starlette application: FHIR REST routes, SMART discovery and authorization endpoints."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .authorization import AuthServer
from .discovery import capability_statement, openid_configuration, smart_configuration
from .errors import FhirError, OAuthError, operation_outcome
from .interactions import Interaction, Outcome
from .rest import FhirService

FHIR_JSON = "application/fhir+json"
_BODY_TYPES = ("application/fhir+json", "application/json")
_ACCEPTABLE = ("*/*", "application/*", "application/fhir+json", "application/json")
_FORMATS = ("json", "application/fhir+json", "application/json")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def fhir_response(
    status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
) -> Response:
    """A FHIR JSON response (empty when ``body`` is None)."""
    content = b"" if body is None else orjson.dumps(body)
    return Response(content, status, headers, media_type=FHIR_JSON if body is not None else None)


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _check_accept(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt is not None and _media_type(fmt) not in _FORMATS:
        raise FhirError(406, f"_format {fmt!r} is not supported (JSON only)", "not-supported")
    accept = request.headers.get("accept")
    if accept and not any(_media_type(a) in _ACCEPTABLE for a in accept.split(",")):
        raise FhirError(
            406, f"Cannot produce {accept!r}; use application/fhir+json", "not-supported"
        )


def _prefer(request: Request) -> dict[str, str]:
    prefs = (p.strip().partition("=") for p in request.headers.get("prefer", "").split(";"))
    return {name.strip(): value.strip() for name, _, value in prefs if name.strip()}


async def _json_body(request: Request) -> Any:
    if _media_type(request.headers.get("content-type")) not in _BODY_TYPES:
        raise FhirError(
            415, "Content-Type must be application/fhir+json or application/json", "not-supported"
        )
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, f"The body is not valid JSON: {exc}", "structure") from None


def build_app(service: FhirService, auth: AuthServer, auth_url: str) -> Starlette:
    """The ASGI app for one test EHR."""
    base_url = service.base_url

    async def fhir(request: Request) -> Response:
        parts = [p for p in request.path_params.get("path", "").split("/") if p]
        prefer = _prefer(request)
        try:
            _check_accept(request)
            token = auth.authenticate(request.headers.get("authorization"))
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "_format"]
            body: Any = None
            if request.method == "POST" and parts[1:] == ["_search"]:
                if _media_type(request.headers.get("content-type")) != (
                    "application/x-www-form-urlencoded"
                ):
                    raise FhirError(415, "_search needs a form-encoded body", "not-supported")
                query += parse_qsl((await request.body()).decode(), keep_blank_values=True)
            elif request.method in ("POST", "PUT"):
                body = await _json_body(request)
            interaction = Interaction(
                request.method,
                parts,
                query,
                body,
                if_none_exist=request.headers.get("if-none-exist"),
                if_match=request.headers.get("if-match"),
            )
            strict = prefer.get("handling") != "lenient"
            outcome = service.handle(interaction, token.resource_scopes, strict)
        except OAuthError as exc:
            return fhir_response(
                exc.status, operation_outcome(exc.description, "login"), exc.headers
            )
        except FhirError as exc:
            return fhir_response(exc.status, exc.outcome(), exc.headers)
        return _write_response(outcome, prefer.get("return"))

    def _write_response(outcome: Outcome, wanted: str | None) -> Response:
        body = outcome.body
        if wanted == "minimal" and outcome.status in (200, 201):
            body = None
        elif wanted == "OperationOutcome" and outcome.status in (200, 201):
            body = operation_outcome("OK", "informational", severity="information")
        return fhir_response(outcome.status, body, outcome.headers())

    async def smart_config(request: Request) -> Response:
        return JSONResponse(smart_configuration(base_url, auth_url))

    async def openid_config(request: Request) -> Response:
        return JSONResponse(openid_configuration(base_url, auth_url))

    async def metadata(request: Request) -> Response:
        return fhir_response(200, capability_statement(base_url, auth_url))

    async def authorize(request: Request) -> Response:
        try:
            location = auth.authorize(list(request.query_params.multi_items()))
        except OAuthError as exc:
            return JSONResponse(exc.body(), exc.status, _NO_STORE)
        return RedirectResponse(location, 302, _NO_STORE)

    async def token(request: Request) -> Response:
        try:
            if _media_type(request.headers.get("content-type")) != (
                "application/x-www-form-urlencoded"
            ):
                raise OAuthError("invalid_request", "the body must be form-encoded")
            form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
            result = await auth.token(form, request.headers.get("authorization"))
        except OAuthError as exc:
            return JSONResponse(exc.body(), exc.status, {**_NO_STORE, **exc.headers})
        return JSONResponse(result, 200, _NO_STORE)

    async def jwks(request: Request) -> Response:
        return JSONResponse(auth.jwks())

    fhir_methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(
        routes=[
            Route("/fhir/.well-known/smart-configuration", smart_config, methods=["GET"]),
            Route("/fhir/.well-known/openid-configuration", openid_config, methods=["GET"]),
            Route("/fhir/metadata", metadata, methods=["GET"]),
            Route("/fhir", fhir, methods=fhir_methods),
            Route("/fhir/{path:path}", fhir, methods=fhir_methods),
            Route("/auth/authorize", authorize, methods=["GET"]),
            Route("/auth/token", token, methods=["POST"]),
            Route("/auth/jwks", jwks, methods=["GET"]),
        ]
    )
