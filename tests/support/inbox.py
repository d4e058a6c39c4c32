"""Alerts made directly through the alert lifecycle, for the dashboard's inbox tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from careloop.services.alerts.firing import Firing
from careloop.services.alerts.opening import apply_firings
from careloop.services.alerts.service import acknowledge, resolve
from careloop.services.db import utcnow
from careloop.services.settings import Settings
from careloop.services.tenancy.service import get_or_create_tenant
from careloop.services.unit_of_work import session_scope


def new_tenant(engine: Engine) -> str:
    """A fresh tenant's id."""
    with session_scope(engine) as session:
        return get_or_create_tenant(session, f"tenant-{uuid.uuid4().hex[:10]}").id


@dataclass(frozen=True)
class MadeAlert:
    """An alert made for a test: its id, patient and rule."""

    id: str
    patient_id: str
    rule_id: str
    severity: str


def make_alert(
    engine: Engine,
    settings: Settings,
    tenant_id: str,
    severity: str,
    *,
    hours_ago: float = 1.0,
    patient_id: str | None = None,
    rule_id: str | None = None,
    title: str = "Synthetic rule crossed",
    status: str = "open",
    note: str | None = None,
) -> MadeAlert:
    """An alert of ``severity`` opened ``hours_ago``, then acknowledged or resolved if asked."""
    patient_id = patient_id or str(uuid.uuid4())
    rule_id = rule_id or f"rule-{uuid.uuid4().hex[:8]}"
    firing = Firing(
        rule_id, severity, title, {"value": 12.0}, {"at_least": 10.0}, "care program test"
    )
    opened: datetime = utcnow() - timedelta(hours=hours_ago)
    with session_scope(engine) as session:
        alert = apply_firings(session, settings, tenant_id, patient_id, [firing], None, now=opened)
        assert alert is not None
        alert_id = alert.id
        if status == "acknowledged":
            acknowledge(session, tenant_id, alert_id, "Practitioner/test-doc", note=note)
        elif status == "resolved":
            resolve(session, tenant_id, alert_id, "Practitioner/test-doc", note)
    return MadeAlert(alert_id, patient_id, rule_id, severity)
