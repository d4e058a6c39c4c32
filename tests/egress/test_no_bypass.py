"""Nothing in careloop opens an outbound connection except through integrations/egress/.

The scan reads every module of careloop's code folders and fails on any way of making a network
client: an httpx client, transport or request function, urllib / http.client / requests /
aiohttp / urllib3, raw sockets, smtplib clients. Type annotations (``httpx.Response``) and
exceptions (``httpx.TransportError``) are fine: they cannot send anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE_FOLDERS = ("services", "workflows", "integrations", "fhir")
EGRESS = ROOT / "integrations" / "egress"

HTTPX_SENDERS = {
    "Client",
    "AsyncClient",
    "HTTPTransport",
    "AsyncHTTPTransport",
    "request",
    "stream",
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "head",
    "options",
}
FORBIDDEN_MODULES = {
    "urllib.request",
    "http.client",
    "requests",
    "aiohttp",
    "urllib3",
    "pycurl",
    "httpcore",
    "ftplib",
    "telnetlib",
    "websockets",
}
SOCKET_CONNECTORS = {"create_connection", "socket", "socketpair", "fromfd"}
SMTP_CLIENTS = {"SMTP", "SMTP_SSL", "LMTP"}
"""smtplib's exceptions may be caught anywhere; its clients are made in egress/smtp.py only."""


def violations(source: str) -> list[str]:
    """Each way ``source`` could open a connection itself, as ``line: what``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}"
                for a in node.names
                if a.name in FORBIDDEN_MODULES or a.name.split(".")[0] in FORBIDDEN_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in FORBIDDEN_MODULES or node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{node.lineno}: from {node.module} import")
            elif node.module.startswith("httpx"):
                found += [
                    f"{node.lineno}: from httpx import {a.name}"
                    for a in node.names
                    if a.name in HTTPX_SENDERS
                ]
            elif node.module == "smtplib":
                found += [
                    f"{node.lineno}: from smtplib import {a.name}"
                    for a in node.names
                    if a.name in SMTP_CLIENTS
                ]
            elif node.module == "socket":
                found += [
                    f"{node.lineno}: from socket import {a.name}"
                    for a in node.names
                    if a.name in SOCKET_CONNECTORS
                ]
            elif node.module == "urllib" and any(a.name == "request" for a in node.names):
                found.append(f"{node.lineno}: from urllib import request")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "httpx" and node.attr in HTTPX_SENDERS:
                found.append(f"{node.lineno}: httpx.{node.attr}")
            elif node.value.id == "socket" and node.attr in SOCKET_CONNECTORS:
                found.append(f"{node.lineno}: socket.{node.attr}")
        if (  # an smtplib client may be named in a type annotation, not made
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "smtplib"
            and node.func.attr in SMTP_CLIENTS
        ):
            found.append(f"{node.lineno}: smtplib.{node.func.attr}()")
    return found


def _modules() -> list[Path]:
    paths = [p for folder in CODE_FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]
    return [p for p in paths if EGRESS not in p.parents]


def test_the_scan_sees_careloops_code() -> None:
    modules = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert "workflows/ehr/client.py" in modules
    assert "integrations/channels/webhooks.py" in modules
    assert "services/launch/service.py" in modules
    assert len(modules) > 50


def test_no_module_outside_the_egress_package_opens_connections() -> None:
    offenders = {
        p.relative_to(ROOT).as_posix(): found
        for p in _modules()
        if (found := violations(p.read_text()))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "snippet",
    [
        "import httpx\nhttpx.Client()",
        "import httpx\nwith httpx.AsyncClient() as c: pass",
        "import httpx\nhttpx.post('https://x.example')",
        "from httpx import Client",
        "import urllib.request",
        "from urllib import request",
        "from urllib.request import urlopen",
        "import requests",
        "import http.client",
        "import smtplib\nsmtplib.SMTP('x')",
        "from smtplib import SMTP_SSL",
        "import socket\nsocket.create_connection(('x', 1))",
        "from socket import create_connection",
        "import httpcore",
    ],
)
def test_the_scan_catches_each_way_of_connecting(snippet: str) -> None:
    assert violations(snippet)


def test_types_and_errors_are_not_connections() -> None:
    assert not violations(
        "import httpx, smtplib\n"
        "def g(s: smtplib.SMTP) -> None:\n    pass\n"
        "def f(r: httpx.Response) -> None:\n"
        "    try:\n        pass\n    except httpx.TransportError:\n        pass\n"
    )
