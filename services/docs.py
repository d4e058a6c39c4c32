"""``/docs`` (Swagger UI) and ``/redoc`` served entirely by careloop: no CDN, no inline script.

The Swagger UI and ReDoc bundles come from the ``fastapi-offline`` package; the pages and
Swagger UI's start-up script are careloop's own files, so the docs work offline and under a
Content-Security-Policy of ``script-src 'self'``. Every URL in the pages is relative, so the docs
also work behind a path prefix.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from careloop.services.common.security_headers import ContentSecurityPolicy

_PAGES = Path(__file__).parent / "static" / "docs"
_VENDOR = Path(fastapi_offline.__file__).parent / "static"
ASSETS_PATH = "/docs-static"


def mount_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their assets (create ``app`` with docs_url=None)."""
    swagger = (_PAGES / "swagger.html").read_text(encoding="utf-8")
    redoc = (_PAGES / "redoc.html").read_text(encoding="utf-8")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger)

    @app.get("/redoc", include_in_schema=False)
    def redoc_ui() -> HTMLResponse:
        return HTMLResponse(redoc)

    # The more specific mount first: Starlette matches routes in order.
    app.mount(f"{ASSETS_PATH}/vendor", StaticFiles(directory=_VENDOR), name="docs-vendor")
    app.mount(ASSETS_PATH, StaticFiles(directory=_PAGES), name="docs-static")


DOCS_CSP = {
    # ReDoc's styled-components inject <style> elements, both UIs draw icons from data: URIs
    # and ReDoc's search runs in a blob: worker. Scripts stay 'self' only; the pages hold no data.
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data:",
    "worker-src": "'self' blob:",
}


def allow_docs(policy: ContentSecurityPolicy) -> None:
    """Relax the Content-Security-Policy for the documentation pages only."""
    for page in ("/docs", "/redoc"):
        policy.route(page, DOCS_CSP)
