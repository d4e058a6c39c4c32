"""Signing in with a real browser (Debian's Chromium, headless): the page works under the CSP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import sync_playwright
from sqlalchemy import Engine
from support.login import PASSWORD, Account, new_account

from careloop.services.settings import Settings
from careloop.workflows.web import create_app

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def served(settings: Settings, engine: Engine) -> Iterator[str]:
    """careloop over real HTTP on a free loopback port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings.model_copy(update={"base_url": url}), engine)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_a_clinician_signs_in_and_out_in_chromium(
    served: str, engine: Engine, tmp_path: Path
) -> None:
    account: Account = new_account(engine)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{served}/login?next=/caseload")
        page.fill("#email", account.email)
        page.fill("#password", "not the password")
        page.get_by_role("button", name="Sign in").click()
        assert (
            "Email or password is wrong" in page.locator("[data-testid=login-error]").inner_text()
        )
        page.screenshot(path=str(tmp_path / "login-wrong.png"))
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{served}/caseload")
        cookies = {c["name"]: c for c in page.context.cookies()}
        assert cookies["careloop_session"]["httpOnly"] is True
        assert cookies["careloop_session"]["sameSite"] == "Lax"
        browser.close()
    assert not [e for e in errors if "Content Security Policy" in e]
