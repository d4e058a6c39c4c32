"""Helpers for hostile-input tests: refusals named by field, and what a tenant has stored."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from typing import Any

from hypothesis.configuration import set_hypothesis_home_dir
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from careloop.services.alerts.models import NotificationRoute
from careloop.services.common.models import IdempotencyRecord
from careloop.services.ehr.models import EhrConnection
from careloop.services.patients.models import PatientIdentifier
from careloop.services.reports.models import SymptomReport
from careloop.services.store.models import FhirResource
from careloop.services.telehealth.models import TelehealthSessionRow
from careloop.services.tenancy.models import Tenant

NUL = "\u0000"


def keep_hypothesis_out_of_the_work_tree() -> None:
    """Hypothesis caches (constants, unicode data) go to a temporary directory, removed at exit."""
    home = tempfile.mkdtemp(prefix="careloop-hypothesis-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    set_hypothesis_home_dir(home)


TENANT_TABLES = (
    FhirResource,
    SymptomReport,
    TelehealthSessionRow,
    PatientIdentifier,
    NotificationRoute,
    EhrConnection,
    IdempotencyRecord,
)


def expressions(response: Any) -> list[str]:
    """The issue expressions of an OperationOutcome response (asserting it is one)."""
    assert response.headers["content-type"].startswith("application/fhir+json"), response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [e for issue in body["issue"] for e in issue.get("expression", [])]


def assert_refused(response: Any, field: str, statuses: tuple[int, ...] = (400, 422)) -> None:
    """The response is a 4xx OperationOutcome whose issues name ``field`` (or a field in it)."""
    assert response.status_code in statuses, (response.status_code, response.text)
    found = expressions(response)
    assert any(e == field or e.startswith((field + ".", field + "[")) for e in found), (
        field,
        found,
    )


def stored(engine: Engine, tenant_name: str) -> dict[str, int]:
    """How many rows each tenant-scoped table holds for ``tenant_name``."""
    with Session(engine) as session:
        tenant_id = session.execute(
            select(Tenant.id).where(Tenant.name == tenant_name)  # type: ignore[arg-type]
        ).scalar_one()
        counts = {}
        for model in TENANT_TABLES:
            table = model.__table__  # type: ignore[attr-defined]
            counts[table.name] = session.execute(
                select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
            ).scalar_one()
        return counts
