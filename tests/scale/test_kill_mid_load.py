"""Two APIs and two workers on PostgreSQL and RabbitMQ; one of each SIGKILLed mid-load.

The slim version of ``bench/scale_out.py`` (the same scenario, run by the same code, on a
smaller load): real processes on a fresh database and queues of their own, a webhook receiver
as the care team's channel. It asserts the invariants, not speeds: every accepted report stored
exactly once, every critical report one alert, every alert delivered with exactly one distinct
webhook-id, no dead task, every outbox row done, and alerts flowing again after the kill.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale_out.py"


def _scale_out() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_out", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_out"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_nothing_is_lost_or_doubled_when_an_api_and_a_worker_die(tmp_path: Path) -> None:
    scale_out = _scale_out()
    config = scale_out.Config(rate=15, seconds=10, kill_at=4, critical_every=5, drain_for=60)
    result = scale_out.run(config, tmp_path)
    scale_out.print_result(result)  # the figures, with -s

    assert result.killed_returncodes == [-signal.SIGKILL, -signal.SIGKILL]
    assert result.killed_worker_in_flight >= 1  # the worker died with a task in hand
    assert result.problems() == []
    total = int(config.rate * config.seconds) + 4  # and two warm-up reports per API
    assert len(result.accepted()) == total == sum(result.reports_stored.values())
    critical = result.critical_patients()
    expected = sum(1 for s in result.sent if s.critical)
    assert len(critical) == expected == len(result.alert_patient) >= 25
    # The kill happened under load: clients failed over to the surviving API ...
    assert any(s.attempts > 1 for s in result.sent)
    # ... and alerts reported after it were delivered (by the surviving worker).
    assert result.alerts_flow_again() is not None
    assert result.drained_in is not None
