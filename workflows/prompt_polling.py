"""A worker takes its next message as soon as one of its threads frees up, on Redis too.

kombu's Redis transport asks for messages (BRPOP) only at the start of an event-loop turn, and
only while the worker holds fewer unacknowledged messages than its prefetch limit. When every
thread is busy it stops asking; a thread finishing its task does not wake the loop, which then
sleeps until its next timer, one second when it has none. So under load each freed thread sat
idle for up to a second, and alert work waited about 1.2 s per hop
(``bench/alert_latency.py``, Redis under load: two hops, 2.4 s p50). A 50 ms timer bounds
the wait; it costs the loop 20 idle wake-ups a second. RabbitMQ pushes messages (basic.qos), so
it never waited, and the timer changes nothing there.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

TICK_SECONDS = 0.05


def _tick() -> None:
    """Nothing: the timer only bounds how long the event loop sleeps."""


class PromptPolling(bootsteps.StartStopStep):  # type: ignore[misc]
    """Worker step: a repeating ``TICK_SECONDS`` timer on the worker's event loop."""

    requires = {"celery.worker.components:Hub"}

    def start(self, worker: Any) -> None:
        """Schedule the tick on the hub (absent when the worker runs without an event loop)."""
        hub = getattr(worker, "hub", None)
        if hub is not None:
            hub.call_repeatedly(TICK_SECONDS, _tick)
