"""``GET /metrics`` on the API, guarded: a bearer token, or loopback only.

With ``CARELOOP_METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>`` (401
otherwise, from anywhere). Without one, only loopback callers are answered, and only where
``metrics_allow_loopback`` (default: dev and test, not production: a sidecar proxy or a local
reverse proxy that sets no X-Forwarded-For makes every caller look local); everyone else gets a
plain 404, as if there were no such route.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.responses import Response

from careloop.services.metrics.collector import StateGauges
from careloop.services.metrics.middleware import RequestMetrics
from careloop.services.metrics.multiprocess import exposition_registry, process_started
from careloop.services.settings import Environment, Settings

PATH = "/metrics"


def _loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def authorized(settings: Settings, request: Request) -> int | None:
    """None if ``request`` may read the metrics, else the status to answer (401 or 404)."""
    if settings.metrics_token:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        good = scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), settings.metrics_token.encode()
        )
        return None if good else 401
    allow_loopback = settings.metrics_allow_loopback
    if allow_loopback is None:
        allow_loopback = settings.environment != Environment.production
    return None if allow_loopback and _loopback(request) else 404


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """Count and time every request of ``app`` and serve ``GET /metrics`` (see module doc)."""
    gauges = StateGauges(app.state.engine, settings)
    process_started("api")

    @app.get(PATH, include_in_schema=False)
    def metrics(request: Request) -> Response:
        refused = authorized(settings, request)
        if refused == 401:
            raise HTTPException(401, "a metrics token is required", {"WWW-Authenticate": "Bearer"})
        if refused is not None:
            raise HTTPException(refused)  # the same answer as for a path that does not exist
        body = generate_latest(exposition_registry(gauges))
        return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})

    app.add_middleware(RequestMetrics)
