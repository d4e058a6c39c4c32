"""Queue depth on the broker: messages waiting in careloop's queues, through kombu.

Redis (LLEN over kombu's priority lists), RabbitMQ (a passive ``queue_declare``) and the embedded
SQLite broker all answer kombu's passive declare with the queue's message count; a queue that
does not exist yet holds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from kombu.connection import Connection
from kombu.exceptions import ChannelError

from careloop.services.settings import Settings

CONNECT_TIMEOUT = 2.0


def queue_names(settings: Settings) -> tuple[str, ...]:
    """careloop's queues: ``<queue>.urgent``, ``<queue>.ehr`` and ``<queue>``.

    Named as ``careloop.workflows.celery_app.queues`` names them (a test keeps them equal:
    services cannot import workflows).
    """
    return f"{settings.queue}.urgent", f"{settings.queue}.ehr", settings.queue


def queue_depths(broker_url: str, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting in each of ``queues`` (taken but unacknowledged ones not included)."""
    depths: dict[str, int] = {}
    options: dict[str, float] = {}
    if broker_url.startswith(("redis://", "rediss://")):
        options = {"socket_timeout": CONNECT_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}
    with Connection(  # type: ignore[no-untyped-call]
        broker_url, connect_timeout=CONNECT_TIMEOUT, transport_options=options
    ) as connection:
        connection.ensure_connection(max_retries=1)
        for queue in queues:
            # A channel each: RabbitMQ closes the channel of a passive declare that finds none.
            channel = connection.channel()
            try:
                depths[queue] = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:  # no such queue (yet): nothing was ever published to it
                depths[queue] = 0
            finally:
                try:
                    channel.close()
                except Exception:  # noqa: BLE001 (a channel the broker closed already)
                    pass
    return depths
