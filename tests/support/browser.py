"""Helpers of the browser tests (the fixtures are in tests/browser/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import BrowserContext

from careloop.services.clinicians.sessions import COOKIE

CHROMIUM = "/usr/bin/chromium"
"""Debian's Chromium: Playwright drives it, never a downloaded browser."""
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

Shoot = Callable[[str], Path]
"""``shoot("step-name")`` saves a screenshot of the test's page as its next step."""


def add_session_cookie(context: BrowserContext, origin: str, session_id: str) -> None:
    """Sign ``context`` in with a session cookie, as a sign-in at ``origin`` would leave it."""
    context.add_cookies([{"name": COOKIE, "value": session_id, "url": origin, "httpOnly": True}])
