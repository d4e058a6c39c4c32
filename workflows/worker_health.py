"""A worker's health file for Kubernetes probes: present while consuming, touched while connected.

``careloop worker --health-file PATH`` creates the file once its consumer consumes from the
broker and removes it when the consumer stops (shutdown, or a lost broker connection until it
is back), and touches it every ``interval`` seconds while the broker connection is up. A
readiness probe checks that it exists, a liveness probe that it is recent:
``test -n "$(find PATH -mmin -1)"``. No process is started and no broker is asked per probe.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps

DEFAULT_INTERVAL_SECONDS = 10.0


def install_health_file(app: Celery, path: Path, interval: float) -> None:
    """Make ``app``'s workers keep the health file at ``path``."""

    class HealthFile(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = {"celery.worker.consumer.tasks:Tasks"}

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.timer_ref: Any = None

        def start(self, parent: Any) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()

            def beat() -> None:
                connection = getattr(parent, "connection", None)
                if connection is not None and connection.connected:
                    path.touch()

            self.timer_ref = parent.timer.call_repeatedly(interval, beat)

        def stop(self, parent: Any) -> None:
            if self.timer_ref is not None:
                self.timer_ref.cancel()
                self.timer_ref = None
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

        def shutdown(self, parent: Any) -> None:
            self.stop(parent)

    app.steps["consumer"].add(HealthFile)
