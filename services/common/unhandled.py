"""The outermost API middleware: an error nothing handled is a 500 OperationOutcome, never a trace.

Starlette's ServerErrorMiddleware re-raises after answering, and uvicorn then prints the traceback
with the exception's text (SQL parameters included). Here the error stops: it is logged as its
class and an error id, and the client gets the id to quote.
"""

from __future__ import annotations

import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from careloop.services.common.errors import Issue, outcome_response
from careloop.services.logs.redaction import describe_exception

log = logging.getLogger("careloop.api")


class UnhandledErrors:
    """Answer any exception from the app as a 500 with an error id; log class and id only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            route = getattr(scope.get("route"), "path", "(unmatched)")
            log.error(
                "unhandled %s on %s %s (error id %s)",
                describe_exception(exc),
                scope["method"],
                route,
                error_id,
                extra={"error_id": error_id, "method": scope["method"], "route": route},
            )
            if not started:  # otherwise the client sees the response cut short
                issue = Issue("exception", f"internal error; quote error id {error_id}")
                await outcome_response(500, [issue])(scope, receive, send)
