"""Risk-signal request bodies for the tests."""

from __future__ import annotations

from typing import Any


def signal(
    patient: str = "rs-1",
    category: str = "self-harm",
    level: str = "high",
    detected: str = "2026-11-20T09:30:00Z",
    **extra: Any,
) -> dict[str, Any]:
    """A valid risk-signal body; ``extra`` adds or replaces fields."""
    body: dict[str, Any] = {
        "patient": {"system": "https://app.example/patients", "value": patient},
        "source": "chatbot",
        "category": category,
        "level": level,
        "model": {"name": "ExampleSafetyClassifier", "version": "2.1.0"},
        "detected": detected,
    }
    return body | extra
