"""A real HTTP webhook receiver on loopback that verifies Standard Webhooks signatures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from careloop.integrations.channels import WebhookVerificationError, verify_webhook


@dataclass
class Receiver:
    """What the receiver got; ``status`` is what it answers (tests may change it)."""

    url: str
    secret: str
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    status: int = 200
    condition: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Block until ``count`` verified deliveries arrived (or fail after ``timeout``)."""
        with self.condition:
            ok = self.condition.wait_for(lambda: len(self.deliveries) >= count, timeout)
        assert ok, f"expected {count} webhook deliveries, got {len(self.deliveries)}"
        return list(self.deliveries)

    def unique_ids(self) -> set[str]:
        """Distinct webhook-ids received (a receiver deduplicates on them)."""
        return {d["webhook-id"] for d in self.deliveries}


@contextmanager
def webhook_receiver(secret: str) -> Iterator[Receiver]:
    """Serve a receiver on 127.0.0.1 until the block ends."""
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            receiver = holder["r"]
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            try:
                verify_webhook(receiver.secret, dict(self.headers.items()), body)
            except WebhookVerificationError:
                with receiver.condition:
                    receiver.rejected += 1
                self.send_response(400)
                self.end_headers()
                return
            status = receiver.status
            if status < 300:
                with receiver.condition:
                    receiver.deliveries.append(
                        {"webhook-id": self.headers["webhook-id"], "body": json.loads(body)}
                    )
                    receiver.condition.notify_all()
            self.send_response(status)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", secret)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["r"]
    finally:
        server.shutdown()
        server.server_close()
