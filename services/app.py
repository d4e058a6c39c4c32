"""The FastAPI application: routers, error handling and limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from careloop import __version__
from careloop.services.alerts.endpoints import router as alerts_router
from careloop.services.auth.endpoints import router as auth_router
from careloop.services.cds.endpoints import router as cds_router
from careloop.services.clinicians.endpoints import router as clinicians_router
from careloop.services.common.access_log import AccessLog
from careloop.services.common.errors import ApiError, Issue, json_path, outcome_response
from careloop.services.common.middleware import BodySizeLimit, InputGuard
from careloop.services.common.openapi import install as install_openapi
from careloop.services.common.rate_limit import RateLimits
from careloop.services.common.security_headers import install_security_headers
from careloop.services.common.unhandled import UnhandledErrors
from careloop.services.consents.endpoints import router as consents_router
from careloop.services.dashboard.home import install_sign_in_redirect
from careloop.services.dashboard.home import router as home_router
from careloop.services.dashboard.inbox import router as inbox_router
from careloop.services.dashboard.patients import router as patients_router
from careloop.services.dashboard.templating import mount_assets
from careloop.services.db import make_engine
from careloop.services.docs import allow_docs, mount_docs
from careloop.services.ehr.endpoints import router as ehr_router
from careloop.services.fhirapi.endpoints import router as fhir_router
from careloop.services.groups.endpoints import router as groups_router
from careloop.services.health import router as health_router
from careloop.services.keys.endpoints import router as keys_router
from careloop.services.launch.endpoints import router as launch_router
from careloop.services.launch.frame_ancestors import EhrOrigins
from careloop.services.measures.endpoints import router as measures_router
from careloop.services.metrics.endpoint import install_metrics
from careloop.services.outbox.events import ReadingTriage
from careloop.services.reports.endpoints import router as reports_router
from careloop.services.risks.endpoints import router as risks_router
from careloop.services.settings import Settings, get_settings
from careloop.services.telehealth.endpoints import router as telehealth_router
from careloop.services.telemetry import instrument_app, instrument_engine
from careloop.services.unit_of_work import OutboxHandoff

_HTTP_CODES = {404: "not-found", 405: "not-supported", 401: "login", 403: "forbidden"}


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return outcome_response(exc.status, exc.issues, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = []
    for error in exc.errors():
        loc = [p for p in error.get("loc", ()) if p not in ("body", "query", "path", "header")]
        issues.append(Issue("invalid", str(error.get("msg", "invalid")), json_path(loc)))
    return outcome_response(422, issues)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "processing")
    return outcome_response(
        exc.status_code, [Issue(code, str(exc.detail))], dict(exc.headers or {})
    )


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    outbox_handoff: OutboxHandoff | None = None,
    reading_triage: ReadingTriage | None = None,
) -> FastAPI:
    """A careloop API application for ``settings`` (default: from the environment).

    ``outbox_handoff`` takes the outbox messages each request commits (the relay to the broker,
    see ``careloop.workflows.web``); without it they wait for beat's relay. ``reading_triage``
    tells a critical reading from a routine one as it is recorded (otherwise the relay does).
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync endpoints run in anyio's thread pool (40 threads by default); past a few per
        # core they only contend for the GIL and the connection pool.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="careloop",
        version=__version__,
        description="App-reported symptoms and telehealth sessions in, FHIR R4 out.",
        docs_url=None,  # served by mount_docs, from careloop's own files
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks (0.165+) would check the global providers on every
        # request and trace raw paths: careloop traces through services/telemetry instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.rate_limits = RateLimits.from_settings(settings)
    app.state.engine = engine or make_engine(settings.resolved_database_url, settings.db_pool_size)
    app.state.outbox_handoff = outbox_handoff
    app.state.reading_triage = reading_triage
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(auth_router)
    app.include_router(reports_router)
    app.include_router(telehealth_router)
    app.include_router(risks_router)
    app.include_router(groups_router)
    app.include_router(consents_router)
    app.include_router(alerts_router)
    app.include_router(measures_router)
    app.include_router(fhir_router)
    app.include_router(keys_router)
    app.include_router(ehr_router)
    app.include_router(launch_router)
    app.include_router(cds_router)
    app.include_router(home_router)
    app.include_router(inbox_router)
    app.include_router(clinicians_router)
    app.include_router(patients_router)
    app.include_router(health_router)
    install_sign_in_redirect(app)
    mount_assets(app)
    mount_docs(app)

    install_openapi(app)

    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(InputGuard, path_templates=lambda: app.openapi()["paths"].keys())
    app.add_middleware(AccessLog)
    # Outermost of careloop's middleware: no exception reaches Starlette's ServerErrorMiddleware
    # (which re-raises) or uvicorn (which prints the traceback with its text).
    app.add_middleware(UnhandledErrors)
    # No-ops unless this process traces (services/telemetry). Before the security headers: the
    # tracing middleware wraps Starlette's own stack, which those headers then wrap.
    instrument_engine(app.state.engine)
    instrument_app(app)
    policy = install_security_headers(
        app,
        settings.frame_ancestors.split(),
        EhrOrigins(app.state.engine, settings.frame_ancestors_ttl_seconds),
        https=settings.base_url.startswith("https://"),
    )
    allow_docs(policy)
    install_metrics(app, settings)  # outermost: counts and times every answer, /metrics
    return app
