"""A real SMTP server (aiosmtpd) on loopback that records the mail it accepts."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from careloop.integrations.channels import SmtpConfig


@dataclass
class Collector:
    """aiosmtpd handler: records accepted mail, or answers with a configured reply."""

    rcpt_reply: str | None = None
    data_reply: str | None = None
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    """Accepted mail as (envelope sender, envelope recipients, raw content)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def emails(self) -> list[Message]:
        """The accepted mail, parsed."""
        return [message_from_bytes(raw) for _, _, raw in self.messages]


class LoopbackController(Controller):
    """Serves on a socket bound up front to 127.0.0.1 port 0 (no race for a free port)."""

    def __init__(self, handler: Collector) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self._sock.getsockname()[1])

    def _create_server(self) -> Awaitable[Any]:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


@dataclass
class SmtpServer:
    """A running loopback SMTP server and what it has received."""

    collector: Collector
    host: str
    port: int

    def config(self, sender: str, timeout: float) -> SmtpConfig:
        """careloop's SMTP settings for this server (plain SMTP, no login)."""
        return SmtpConfig(self.host, self.port, sender, timeout=timeout)


@contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    """An SMTP server on loopback for the duration of the block."""
    collector = Collector()
    controller = LoopbackController(collector)
    controller.start()  # returns once the server has greeted a probe connection
    try:
        yield SmtpServer(collector, "127.0.0.1", controller.port)
    finally:
        controller.stop()
