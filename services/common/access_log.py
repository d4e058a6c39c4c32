"""An access log that never holds PHI: method, route template, status, time and client id."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("careloop.access")


class AccessLog:
    """Log one line per request; the path is the route template, never the query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "(unmatched)")
            client = scope.get("state", {}).get("client_id", "-")
            duration_ms = round((time.perf_counter() - start) * 1000, 1)
            log.info(
                "%s %s %d %.1fms client=%s",
                scope["method"],
                path,
                status,
                duration_ms,
                client,
                extra={
                    "method": scope["method"],
                    "route": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "client_id": client,
                },
            )
