"""Synthetic symptom reports, as a patient's app would post them."""

from __future__ import annotations

from typing import Any


def phq9(
    value: str = "p-001",
    answers: list[int] | None = None,
    effective: str = "2026-11-20T09:30:00Z",
    **extra: Any,
) -> dict[str, Any]:
    """A synthetic PHQ-9 report."""
    return {
        "patient": {"system": "https://app.example/patients", "value": value},
        "instrument": "phq-9",
        "answers": answers if answers is not None else [1, 2, 0, 1, 3, 0, 1, 0, 1],
        "effective": effective,
        **extra,
    }
