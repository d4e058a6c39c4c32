"""ASGI middleware: a hard limit on request body size (413 as an OperationOutcome)."""

from __future__ import annotations

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
