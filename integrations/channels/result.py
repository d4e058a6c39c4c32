"""Outcome of one delivery attempt, shared by every channel."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What happened to one attempt; the caller records it and schedules any retry.

    ``error`` is a short machine-friendly reason ("timeout", "connection", "http-500",
    "smtp-550"), never a response body: bodies can hold PHI. ``retry_after`` is in seconds,
    as asked by the receiver (``Retry-After``), when it asked.
    """

    ok: bool
    retryable: bool
    status_code: int | None
    error: str | None
    retry_after: float | None = None

    @classmethod
    def delivered(cls, status_code: int | None) -> DeliveryResult:
        return cls(ok=True, retryable=False, status_code=status_code, error=None)

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> DeliveryResult:
        return cls(
            ok=False,
            retryable=retryable,
            status_code=status_code,
            error=error,
            retry_after=retry_after,
        )
