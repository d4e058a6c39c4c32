"""Jinja2 templates and static assets of the dashboard, loaded from the installed package."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from careloop.services.clinicians.sessions import SignedIn

ASSETS_PATH = "/assets"
_ENV = Environment(
    loader=PackageLoader("careloop.services.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(
    request: Request,
    template: str,
    signed: SignedIn | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered for ``signed`` (never cached: the pages carry patient data)."""
    html = _ENV.get_template(template).render(
        request=request, signed=signed, assets=ASSETS_PATH, **context
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def mount_assets(app: FastAPI) -> None:
    """Serve the dashboard's CSS (and any small vendored script) under ``/assets``."""
    app.mount(
        ASSETS_PATH,
        StaticFiles(packages=[("careloop.services.dashboard", "static")]),
        name="dashboard-assets",
    )
