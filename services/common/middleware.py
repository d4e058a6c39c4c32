"""ASGI middleware: a hard limit on request body size (413) and a guard on path and query (400).

Both answer with an OperationOutcome before any endpoint runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from careloop.services.common.errors import Issue, outcome_response


class BodyTooLarge(Exception):
    """The request body is over the limit."""


def _too_large(limit: int) -> list[Issue]:
    return [Issue("too-costly", f"the request body is over {limit} bytes", "body")]


class BodySizeLimit:
    """Refuse bodies over ``limit`` bytes, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await outcome_response(413, _too_large(self.limit))(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            await outcome_response(413, _too_large(self.limit))(scope, receive, send)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_QUERY_PARAMS = 100


def _template_regex(template: str) -> re.Pattern[str]:
    """``/v1/x/{id}`` as a regex with one named group per path parameter."""
    pattern = ""
    for literal, name in re.findall(
        r"([^{]*)(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::path)?\})?", template
    ):
        pattern += re.escape(literal) + (f"(?P<{name}>[^/]*)" if name else "")
    return re.compile(pattern + "$")


def _path_param_names(templates: Iterable[str], path: str) -> list[str]:
    """The names of the path parameters whose value holds a control character."""
    for template in templates:
        match = _template_regex(template).match(path)
        if match:
            return [name for name, value in match.groupdict().items() if _CONTROL.search(value)]
    return []


class InputGuard:
    """Refuse control characters (NUL and the like) in the path or in query names and values.

    They have no business in an id, a search value or a launch parameter, and PostgreSQL
    cannot even hold NUL. The answer is a 400 OperationOutcome naming the parameter, before any
    endpoint runs. Over ``MAX_QUERY_PARAMS`` query parameters is refused too.
    """

    def __init__(self, app: ASGIApp, path_templates: Callable[[], Iterable[str]] = tuple) -> None:
        self.app = app
        self.path_templates = path_templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            issues = self._issues(scope)
            if issues:
                await outcome_response(400, issues)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _issues(self, scope: Scope) -> list[Issue]:
        issues: list[Issue] = []
        path: str = scope.get("path", "")
        if _CONTROL.search(path):
            names = _path_param_names(self.path_templates(), path) or ["path"]
            issues += [Issue("invalid", "must not contain control characters", n) for n in names]
        query = scope.get("query_string", b"").decode("latin-1")
        pairs = parse_qsl(query, keep_blank_values=True)
        if len(pairs) > MAX_QUERY_PARAMS:
            return [Issue("too-costly", f"at most {MAX_QUERY_PARAMS} query parameters", "query")]
        for name, value in pairs:
            if _CONTROL.search(name) or _CONTROL.search(value):
                # A name that itself holds the control character (or none at all) names nothing
                # worth repeating: the issue is then the query's.
                shown = "query" if _CONTROL.search(name) or not name else name[:64]
                issues.append(Issue("invalid", "must not contain control characters", shown))
        return issues
