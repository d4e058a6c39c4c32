"""``careloop_risk_signals_accepted`` counts stored risk signals by category and level only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from metrics_helpers import Scrape, delta
from support.clients import Caller

SIGNALS = "careloop_risk_signals_accepted_total"


def _signal(patient: str, category: str, level: str) -> dict[str, Any]:
    return {
        "patient": {"system": "https://app.example/patients", "value": patient},
        "source": "classifier",
        "category": category,
        "level": level,
        "model": {"name": "ExampleSafetyClassifier", "version": "2.1.0"},
        "detected": "2026-11-20T09:30:00Z",
    }


def test_stored_signals_count_by_category_and_level_retries_do_not(
    app_caller: Caller, scrape: Callable[[], Scrape]
) -> None:
    before = scrape()
    first = _signal("m-risk-1", "substance-use", "low")
    assert app_caller.post("/v1/risk-signals", json=first).status_code == 201
    assert app_caller.post("/v1/risk-signals", json=first).status_code == 200  # the retry
    second = _signal("m-risk-2", "substance-use", "low")
    assert app_caller.post("/v1/risk-signals", json=second).status_code == 201
    refused = _signal("m-risk-3", "not-a-category", "low")
    assert app_caller.post("/v1/risk-signals", json=refused).status_code == 422
    after = scrape()
    assert delta(before, after, SIGNALS, category="substance-use", level="low") == 2
    assert delta(before, after, SIGNALS, category="other", level="low") == 0
    # Only the vocabulary labels: no model names, ids or patients in the series.
    served = [line for line in after.text.splitlines() if line.startswith(SIGNALS)]
    assert served and not any(
        word in line for line in served for word in ("Example", "m-risk", "2.1.0")
    )
