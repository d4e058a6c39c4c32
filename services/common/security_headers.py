"""Security headers on every response: CSP with frame-ancestors, nosniff, Referrer-Policy, HSTS.

The middleware is installed outside Starlette's error middleware, so 404s, 413s and 500s carry
the headers too. The Content-Security-Policy is ``'self'`` only by default; a route that needs
more (API docs with an inline init script, say) either registers directives for its path prefix
with ``ContentSecurityPolicy.route`` or sets its own Content-Security-Policy header, which is
then left alone. ``frame-ancestors`` lists careloop itself, ``CARELOOP_FRAME_ANCESTORS`` and the
origins an origins provider returns (the active EHR connections'). X-Frame-Options is not sent:
frame-ancestors supersedes it, and it cannot name several origins.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from careloop.services.common.origins import origin_of

OriginsProvider = Callable[[], Awaitable[Sequence[str]]]
HSTS = "max-age=31536000"
REFERRER_POLICY = "no-referrer"
DEFAULT_DIRECTIVES: Mapping[str, str] = {
    "default-src": "'self'",
    "base-uri": "'self'",
    "object-src": "'none'",
    "form-action": "'self'",
}
_DIRECTIVE = re.compile(r"^[a-z-]+$")
_VALUE = re.compile(r"^[^;,\r\n]*$")


class ContentSecurityPolicy:
    """The CSP careloop sends: default directives, with overrides per path prefix."""

    def __init__(self, directives: Mapping[str, str] = DEFAULT_DIRECTIVES) -> None:
        self.directives = dict(directives)
        self.routes: dict[str, dict[str, str]] = {}

    def route(self, prefix: str, directives: Mapping[str, str]) -> None:
        """Replace or add ``directives`` on paths under ``prefix`` (e.g. ``/docs``)."""
        for name, value in directives.items():
            if not _DIRECTIVE.match(name) or not _VALUE.match(value):
                raise ValueError(f"not a CSP directive: {name} {value}")
        self.routes[prefix] = dict(directives)

    def header(self, path: str, frame_ancestors: Sequence[str]) -> str:
        """The policy for ``path``, framing allowed to ``'self'`` and ``frame_ancestors``."""
        directives = dict(self.directives)
        matches = [p for p in self.routes if path == p or path.startswith(p.rstrip("/") + "/")]
        if matches:
            directives.update(self.routes[max(matches, key=len)])
        directives.setdefault("frame-ancestors", " ".join(["'self'", *frame_ancestors]))
        return "; ".join(f"{name} {value}" for name, value in directives.items())


PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
"""Answered without the EHR origins (a database read now and then): a liveness probe must not
wait on a database that hangs."""


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP response."""

    def __init__(
        self,
        app: ASGIApp,
        policy: ContentSecurityPolicy,
        frame_ancestors: Sequence[str] = (),
        origins: OriginsProvider | None = None,
        https: bool = False,
    ) -> None:
        self.app = app
        self.policy = policy
        self.frame_ancestors = tuple(o for o in map(origin_of, frame_ancestors) if o)
        self.origins = origins
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = self.https or scope.get("scheme") == "https"
        path: str = scope.get("path", "/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "content-security-policy" not in headers:
                    ancestors = (
                        list(self.frame_ancestors)
                        if path in PROBE_PATHS
                        else await self._ancestors()
                    )
                    headers["Content-Security-Policy"] = self.policy.header(path, ancestors)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", REFERRER_POLICY)
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _ancestors(self) -> list[str]:
        found = list(self.frame_ancestors)
        if self.origins is not None:
            for origin in await self.origins():
                if origin not in found:
                    found.append(origin)
        return found


def install_security_headers(
    app: FastAPI,
    frame_ancestors: Sequence[str],
    origins: OriginsProvider | None,
    https: bool,
) -> ContentSecurityPolicy:
    """Wrap ``app`` (outside its error middleware) in ``SecurityHeaders``; the policy, to tune.

    The policy is also ``app.state.content_security_policy``, for routes that need their own.
    """
    policy = ContentSecurityPolicy()
    app.state.content_security_policy = policy
    build = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        return SecurityHeaders(build(), policy, frame_ancestors, origins, https)

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]
    return policy
