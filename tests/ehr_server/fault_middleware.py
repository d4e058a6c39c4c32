"""ASGI middleware that records served requests and injects faults (runs under uvicorn h11)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import operation_outcome
from .faults import Fault, FaultKind, FaultPlan

NO_RESPONSE = 0


class _Transport(Protocol):
    def close(self) -> None: ...


class RequestLog:
    """``(method, path, status)`` of every request; status 0 when no response was sent."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._entries: list[tuple[str, str, int]] = []

    def add(self, method: str, path: str, status: int) -> None:
        """Record one request."""
        with self._changed:
            self._entries.append((method, path, status))
            self._changed.notify_all()

    def snapshot(self) -> list[tuple[str, str, int]]:
        """A copy of the log."""
        with self._changed:
            return list(self._entries)

    def wait_for(self, count: int, timeout: float) -> list[tuple[str, str, int]]:
        """Block until ``count`` requests are logged; TimeoutError after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._entries) >= count, timeout):
                raise TimeoutError(f"{len(self._entries)} of {count} requests arrived")
            return list(self._entries)


class FaultMiddleware:
    """Outermost middleware: it needs uvicorn's own ``send`` to reach the connection."""

    def __init__(self, app: ASGIApp, plan: FaultPlan, log: RequestLog) -> None:
        self.app = app
        self.plan = plan
        self.log = log
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None

    def release_hangs(self) -> None:
        """End every hanging request (and make later HANG faults drop at once); thread-safe."""
        loop, release = self._loop, self._release
        if loop is not None and release is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(release.set)
            except RuntimeError:  # the loop closed meanwhile
                pass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._release is None:
            self._loop = asyncio.get_running_loop()
            self._release = asyncio.Event()
        method, path = scope["method"], scope["path"]
        fault = self.plan.take(method, path)
        if fault is None:
            self.log.add(method, path, await self._forward(scope, receive, send))
        elif fault.status is not None:
            self.log.add(method, path, fault.status)
            await _read_body(receive)
            await _send_error(send, fault)
        else:
            self.log.add(method, path, NO_RESPONSE)
            await self._without_response(fault, scope, receive, send)

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> int:
        status = NO_RESPONSE

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, recording_send)
        return status

    async def _without_response(
        self, fault: Fault, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if fault.kind is FaultKind.DROP_AFTER_COMMIT:

            async def discard(message: Message) -> None:
                return None

            await self.app(scope, receive, discard)
        elif fault.kind is FaultKind.HANG:
            await self._hang(receive)
        _transport_of(send).close()
        await _until_disconnected(receive)

    async def _hang(self, receive: Receive) -> None:
        """Wait until the client gives up or the server shuts down."""
        assert self._release is not None
        waiters = [
            asyncio.ensure_future(_until_disconnected(receive)),
            asyncio.ensure_future(self._release.wait()),
        ]
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _read_body(receive: Receive) -> None:
    """Consume the request body, so the connection can be reused."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _transport_of(send: Send) -> _Transport:
    """The connection's transport, from uvicorn's h11 ``RequestResponseCycle.send``."""
    transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("connection faults need uvicorn's h11 protocol (http='h11')")
    return transport  # type: ignore[no-any-return]


async def _send_error(send: Send, fault: Fault) -> None:
    body = orjson.dumps(operation_outcome(f"Injected fault: HTTP {fault.status}", "transient"))
    headers = [
        (b"content-type", b"application/fhir+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if fault.retry_after is not None:
        headers.append((b"retry-after", fault.retry_after.encode()))
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
