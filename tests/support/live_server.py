"""careloop served for real by uvicorn on a loopback port, in a thread of the test process."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from sqlalchemy import Engine

from careloop.services.settings import Settings
from careloop.workflows.web import create_app


@dataclass(frozen=True)
class LiveServer:
    """A running careloop: its origin (``http://127.0.0.1:PORT``) and settings."""

    origin: str
    settings: Settings


@contextmanager
def live_server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    """careloop on a free loopback port over ``engine``, with ``settings`` naming that origin.

    The socket listens before the server thread starts, so the first request simply waits in
    its backlog until uvicorn accepts: nothing to poll for.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = int(sock.getsockname()[1])
    origin = f"http://127.0.0.1:{port}"
    served = settings.model_copy(update={"base_url": origin})
    config = uvicorn.Config(
        create_app(served, engine),
        log_level="warning",
        ws="none",
        lifespan="on",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="careloop-live", daemon=True
    )
    thread.start()
    try:
        yield LiveServer(origin, served)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
