"""The circuit breaker of an EHR connection: repeated transient failures pause its traffic."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session

from careloop.services.db import utcnow
from careloop.services.ehr.models import EhrConnection
from careloop.services.settings import Settings


class CircuitOpen(Exception):
    """The connection's circuit is open: the EHR failed repeatedly; try after ``retry_in``."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"circuit open for {retry_in:.0f}s")
        self.retry_in = retry_in


def check_circuit(connection: EhrConnection) -> None:
    """Raise CircuitOpen while the connection's circuit is open."""
    if connection.circuit_open_until is not None:
        remaining = (connection.circuit_open_until - utcnow()).total_seconds()
        if remaining > 0:
            raise CircuitOpen(remaining)


def record_failure(settings: Settings, connection: EhrConnection, reason: str) -> None:
    """Count a transient failure; enough in a row open the circuit."""
    connection.consecutive_failures += 1
    connection.last_error = reason[:300]
    if connection.consecutive_failures >= settings.ehr_circuit_failures:
        connection.circuit_open_until = utcnow() + timedelta(seconds=settings.ehr_circuit_seconds)


def record_success(connection: EhrConnection) -> None:
    """Close the circuit."""
    connection.consecutive_failures = 0
    connection.circuit_open_until = None
    connection.last_success_at = utcnow()


def connection_failed(
    session: Session, settings: Settings, connection_id: str, reason: str
) -> None:
    """Record a transient failure of a connection (in its own unit of work)."""
    connection = session.get(EhrConnection, connection_id, with_for_update=True)
    if connection is not None:
        record_failure(settings, connection, reason)
        session.add(connection)
