"""Run as a process of its own by test_tracing_process.py: careloop's API as ``serve`` builds it
(``workflows.web.create_app``, configured from this environment), one PHQ-9 posted in process.

Prints one JSON line: the outbox rows' traceparents, the OpenTelemetry modules loaded and the
kinds of the global tracer provider and careloop's.
Usage: ``python post_one_report.py DATA_DIR MARKER``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from support.clients import BASE_URL, make_caller
from support.reports import phq9

from careloop.services.db import make_engine
from careloop.services.migrate import upgrade
from careloop.services.outbox.models import OutboxMessage
from careloop.services.settings import Environment, Settings
from careloop.workflows.web import create_app


def main() -> None:
    """Post one report and print what tracing left behind."""
    data_dir, marker = Path(sys.argv[1]), sys.argv[2]
    settings = Settings(
        environment=Environment.test,
        database_url=f"sqlite:///{data_dir / 'careloop.db'}",
        data_dir=data_dir,
        secret_key="test-secret-" + "x" * 32,
        base_url=BASE_URL,
        relay_after_commit=False,  # no broker: the outbox rows are what is looked at
        rate_limit_token_per_client="",
        rate_limit_token_per_ip="",
        rate_limit_api_per_client="",
    )
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    with TestClient(create_app(settings, engine), base_url=BASE_URL) as api:
        caller = make_caller(api, engine)
        answer = caller.post(f"/v1/symptom-reports?from={marker}", json=phq9(marker, note=marker))
        assert answer.status_code == 201, answer.text
    with engine.connect() as conn:
        rows = conn.execute(select(OutboxMessage.traceparent)).scalars().all()  # type: ignore[call-overload]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
    from opentelemetry import trace

    from careloop.services import telemetry

    result = {
        "traceparents": rows,
        "loaded": loaded,
        "global_provider": type(trace.get_tracer_provider()).__name__,
        "careloop_provider": type(getattr(telemetry.active(), "provider", None)).__name__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
