"""Every ``careloop`` command run enters the audit chain once: operator, command, ids, outcome."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session, col, select
from support.builder_proofs import assert_valid
from typer.testing import CliRunner

from careloop.services.audit.events import audit_event
from careloop.services.audit.models import AuditRecord
from careloop.services.audit.service import SYSTEM_TENANT
from careloop.services.audit.verify import verify_tenant
from careloop.services.db import get_engine
from careloop.services.settings import get_settings
from careloop.services.tenancy.models import Tenant
from careloop.workflows.cli.main import app

PLANTED_NAME = "Jane Plantedname"
PLANTED_EMAIL = "jane.planted@example.org"
AGENT = "cli:ops?user?x?"
"""What ``LOGNAME=ops user<x>`` becomes: unsafe characters replaced."""


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data dir (its own SQLite database) and an operator with an awkward name."""
    monkeypatch.setenv("CARELOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LOGNAME", "ops user<x>")
    get_settings.cache_clear()
    get_engine.cache_clear()
    yield tmp_path
    get_engine().dispose()
    get_settings.cache_clear()
    get_engine.cache_clear()


def _admin_records() -> list[AuditRecord]:
    with Session(get_engine()) as session:
        rows = session.exec(
            select(AuditRecord).where(AuditRecord.kind == "admin").order_by(col(AuditRecord.id))
        ).all()
        return list(rows)


def _tenant_id(name: str) -> str:
    with Session(get_engine()) as session:
        return session.exec(select(Tenant.id).where(Tenant.name == name)).one()


def test_each_command_is_one_entry_with_ids_only(data_dir: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "clients",
            "create",
            f"{PLANTED_NAME} app",
            "--scope",
            "system/*.rs",
            "--tenant",
            "clinic-a",
        ],
    )
    assert made.exit_code == 0, made.output
    client_id = json.loads(made.stdout)["client_id"]
    added = runner.invoke(
        app,
        ["clinicians", "add", PLANTED_EMAIL, "--name", PLANTED_NAME, "--tenant", "clinic-a"]
        + ["--practitioner", "Practitioner/dr-1"],
    )
    assert added.exit_code == 0, added.output
    clinician_id = json.loads(added.stdout)["id"]
    listed = runner.invoke(app, ["clients", "list", "--tenant", "clinic-a"])
    assert listed.exit_code == 0, listed.output
    missing = runner.invoke(app, ["clients", "revoke", "cl_nobody"])
    assert missing.exit_code != 0
    revoked = runner.invoke(app, ["clients", "revoke", client_id])
    assert revoked.exit_code == 0, revoked.output

    tenant = _tenant_id("clinic-a")
    rows = [(r.tenant_id, r.agent, r.entity, r.outcome) for r in _admin_records()]
    assert rows == [
        (tenant, AGENT, f"cli:clients.create client:{client_id}", "success"),
        (
            tenant,
            AGENT,
            f"cli:clinicians.add Practitioner/dr-1 clinician:{clinician_id}",
            "success",
        ),
        (tenant, AGENT, "cli:clients.list", "success"),
        (SYSTEM_TENANT, AGENT, "cli:clients.revoke client:cl_nobody", "failed"),
        (SYSTEM_TENANT, AGENT, f"cli:clients.revoke client:{client_id}", "success"),
    ]
    with Session(get_engine()) as session:
        everything = session.exec(select(AuditRecord)).all()
        for record in everything:
            text = f"{record.agent} {record.entity} {record.destination}"
            assert "Plantedname" not in text and "planted" not in text.lower()
        for record in _admin_records():
            event = audit_event(record)
            assert_valid(event)
            assert event["type"]["code"] == "110100"
            assert event["outcome"] == ("0" if record.outcome == "success" else "8")
        assert verify_tenant(session, tenant).problem is None
        assert verify_tenant(session, SYSTEM_TENANT).problem is None


def test_audit_verify_is_audited_and_the_chain_still_verifies(data_dir: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    first = runner.invoke(app, ["audit", "verify"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["audit", "verify"])
    assert second.exit_code == 0, second.output
    assert f"ok tenant={SYSTEM_TENANT} entries=2" in second.stdout  # migrate, the first verify
    entities = [(r.entity, r.outcome) for r in _admin_records()]
    assert entities == [
        ("cli:migrate", "success"),
        ("cli:audit.verify", "success"),
        ("cli:audit.verify", "success"),
    ]
