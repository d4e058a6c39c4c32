"""Browser tests: careloop served for real, driven by Debian's Chromium (Playwright, headless).

One server per test module (uvicorn in a thread, on the session's test database, on a free
loopback port); a fresh browser context, i.e. a fresh profile without cookies or storage, per
test. Screenshots go to ``$CARELOOP_TEST_ARTIFACTS`` (else pytest's tmp dir; the path is printed
at the end of the run), one folder per test, never to ``./data``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from sqlalchemy import Engine
from support.browser import CHROMIUM, CHROMIUM_ARGS, Shoot
from support.live_server import LiveServer, live_server

from careloop.services.settings import Settings

VIEWPORT = {"width": 1280, "height": 860}
_ARTIFACTS = pytest.StashKey[Path]()


def _artifacts_root(config: pytest.Config, factory: pytest.TempPathFactory) -> Path:
    if _ARTIFACTS in config.stash:
        return config.stash[_ARTIFACTS]
    given = os.environ.get("CARELOOP_TEST_ARTIFACTS")
    root = Path(given).resolve() if given else factory.mktemp("browser-artifacts")
    data = (Path.cwd() / "data").resolve()
    assert root != data and data not in root.parents, "browser artifacts never go into ./data"
    root.mkdir(parents=True, exist_ok=True)
    config.stash[_ARTIFACTS] = root
    return root


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the screenshots are."""
    root = terminalreporter.config.stash.get(_ARTIFACTS, None)
    if root is not None:
        terminalreporter.write_line(f"browser test screenshots: {root}")


@pytest.fixture(scope="session")
def artifacts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this run's browser screenshots go."""
    return _artifacts_root(request.config, tmp_path_factory)


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    """careloop served over HTTP on loopback for this module's tests."""
    with live_server(settings, engine) as running:
        yield running


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver (sync API), for this module.

    Stopped after it: one thread runs one at a time, and tests elsewhere start their own.
    """
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, headless (never a downloaded browser)."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def context(chromium: Browser, server: LiveServer) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies, no storage) whose relative URLs go to ``server``."""
    ctx = chromium.new_context(base_url=server.origin, viewport=VIEWPORT)  # type: ignore[arg-type]
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab; the test fails if a script fails or the Content-Security-Policy blocks anything."""
    tab = context.new_page()
    errors: list[str] = []
    tab.on(
        "console",
        lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    tab.on("pageerror", lambda e: errors.append(str(e)))
    yield tab
    assert not errors, errors


@pytest.fixture
def shoot(page: Page, artifacts: Path, request: pytest.FixtureRequest) -> Shoot:
    """``shoot("name")`` saves a full-page screenshot of ``page`` as the next step of the test."""
    folder = artifacts / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)[:120]
    folder.mkdir(parents=True, exist_ok=True)
    steps = [0]

    def take(name: str) -> Path:
        steps[0] += 1
        path = folder / f"{steps[0]:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
