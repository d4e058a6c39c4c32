"""Gauges read at scrape time: outbox backlog and age, dead tasks, unevaluated readings, EHR
circuits (from the database) and queue depth (from the broker).

Totals only, never per tenant. The queries are bounded by the outbox's partial index of open
messages and small tables; their answers are cached for ``metrics_cache_seconds``, so several
scrapers (or a scraper hitting several API processes in turn) do not load the database. A source
that fails is left out of the scrape (``careloop_metrics_source_up`` says so), never guessed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, case, func, select, text

from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection
from careloop.services.metrics.broker import queue_depths, queue_names
from careloop.services.outbox.events import EventType
from careloop.services.outbox.models import DeadTask, OutboxMessage
from careloop.services.settings import Settings

log = logging.getLogger("careloop.metrics")
_O = OutboxMessage.__table__  # type: ignore[attr-defined]
_D = DeadTask.__table__  # type: ignore[attr-defined]
_E = EhrConnection.__table__  # type: ignore[attr-defined]
STATEMENT_TIMEOUT_MS = 2000


@dataclass
class _Reading:
    at: float = float("-inf")
    metrics: list[Metric] = field(default_factory=list)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def database_gauges(engine: Engine) -> list[Metric]:
    """The outbox, dead-letter and circuit gauges, read now."""
    now = utcnow()
    open_ = _O.c.completed_at.is_(None)
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
        backlog, oldest, readings = conn.execute(
            select(
                func.count(),
                func.min(_O.c.created_at),
                func.coalesce(
                    func.sum(case((_O.c.task == EventType.READING_CREATED.value, 1), else_=0)), 0
                ),
            ).where(open_)
        ).one()
        dead = conn.execute(
            select(func.count()).select_from(_D).where(_D.c.replayed_at.is_(None))
        ).scalar_one()
        circuits = conn.execute(
            select(_E.c.id, _E.c.circuit_open_until).where(_E.c.active.is_(True))
        ).all()
        conn.rollback()
    age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    circuit = GaugeMetricFamily(
        "careloop_ehr_circuit_open",
        "1 while an EHR connection's circuit is open (its traffic paused), else 0.",
        labels=["connection"],
    )
    for connection_id, until in circuits:
        circuit.add_metric([connection_id], 1.0 if until is not None and until > now else 0.0)
    return [
        _gauge("careloop_outbox_backlog", "Outbox messages not completed yet.", backlog),
        _gauge(
            "careloop_outbox_oldest_age_seconds",
            "Age of the oldest outbox message not completed yet (0 when none).",
            age,
        ),
        _gauge("careloop_dead_tasks", "Dead tasks not replayed yet.", dead),
        _gauge(
            "careloop_readings_unevaluated",
            "Readings stored whose evaluation has not completed yet.",
            readings,
        ),
        circuit,
    ]


def broker_gauges(broker_url: str, queues: tuple[str, ...]) -> list[Metric]:
    """Messages waiting in each of careloop's queues, read now."""
    depth = GaugeMetricFamily(
        "careloop_queue_depth", "Messages waiting in a broker queue.", labels=["queue"]
    )
    for queue, count in queue_depths(broker_url, queues).items():
        depth.add_metric([queue], count)
    return [depth]


class StateGauges(Collector):
    """The gauges read from the database and the broker, cached for ``ttl`` seconds."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.ttl = settings.metrics_cache_seconds
        broker_url, queues = settings.resolved_broker_url, queue_names(settings)
        self.sources: dict[str, Callable[[], list[Metric]]] = {
            "database": lambda: database_gauges(engine),
            "broker": lambda: broker_gauges(broker_url, queues),
        }
        self._readings = {name: _Reading() for name in self.sources}
        self._lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "careloop_metrics_source_up",
            "1 if the last read of a source of gauges (database, broker) succeeded.",
            labels=["source"],
        )
        metrics: list[Metric] = []
        with self._lock:  # one scrape reads; the others wait for its answer
            for name, read in self.sources.items():
                reading = self._readings[name]
                if time.monotonic() - reading.at >= self.ttl:
                    reading.metrics = self._read(name, read)
                    reading.at = time.monotonic()
                up.add_metric([name], 1.0 if reading.metrics else 0.0)
                metrics.extend(reading.metrics)
        return [*metrics, up]

    @staticmethod
    def _read(name: str, read: Callable[[], list[Metric]]) -> list[Metric]:
        try:
            return read()
        except Exception as exc:  # noqa: BLE001 (a scrape must answer; the gauge says it failed)
            log.warning("metrics: reading the %s failed (%s)", name, type(exc).__name__)
            return []
