"""/docs and /redoc work without internet: every asset is served by careloop itself."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

_ASSET = re.compile(r'(?:src|href)="([^"]+)"')
_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize(
    ("page", "bundle"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_docs_page_uses_only_local_assets(app_client: TestClient, page: str, bundle: str) -> None:
    response = app_client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<script>" not in html  # no inline script: a strict CSP (script-src 'self') works
    assets = _ASSET.findall(html)
    assert any(a.endswith(bundle) for a in assets)
    for asset in assets:
        assert "://" not in asset and not asset.startswith("//"), asset
        url = urljoin(f"http://testserver{page}", asset)
        got = app_client.get(url)
        assert got.status_code == 200, url
        suffix = asset[asset.rfind(".") :]
        assert _TYPES[suffix] in got.headers["content-type"], (url, got.headers["content-type"])
        assert len(got.content) > 1000 or suffix == ".js", url


def test_swagger_init_script_loads_careloops_openapi(app_client: TestClient) -> None:
    script = app_client.get("/docs-static/swagger-init.js")
    assert script.status_code == 200
    assert "openapi.json" in script.text
    spec = app_client.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "careloop"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_may_style_but_never_run_inline_scripts(
    app_client: TestClient, page: str
) -> None:
    policy = app_client.get(page).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"  # scripts: careloop's own files only
    assert "script-src" not in directives
    assert directives["style-src"] == "'self' 'unsafe-inline'"
    api = app_client.get("/healthz").headers["content-security-policy"]
    assert "unsafe-inline" not in api
