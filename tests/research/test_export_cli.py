"""``careloop export``: consent decides who is exported, every decision is audited, and the
command refuses to run without ``--deidentify``, without a key or into a used directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import select
from support.clients import Caller
from support.reports import phq9

from careloop.services.audit.models import AuditRecord
from careloop.services.patients.service import patient_exists
from careloop.services.unit_of_work import session_scope

APP = "https://app.example/patients"


def _report(caller: Caller, value: str) -> None:
    assert caller.post("/v1/symptom-reports", json=phq9(value)).status_code == 201


def _consent(caller: Caller, value: str, decision: str) -> str:
    body = {"patient": {"system": APP, "value": value}, "decision": decision}
    response = caller.post("/v1/consents", json={**body, "purpose": "research-export"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _patient(engine: Engine, tenant: str, value: str) -> str:
    with session_scope(engine) as session:
        found = patient_exists(session, tenant, (APP, value))
    assert found is not None
    return found


def _audits(engine: Engine, tenant: str) -> list[AuditRecord]:
    with session_scope(engine) as session:
        query = select(AuditRecord).where(AuditRecord.tenant_id == tenant)
        return [r for r in session.exec(query).all() if r.kind in ("egress", "export")]


def _patients_in(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "Patient.ndjson").read_text().splitlines()]


def test_only_patients_with_a_research_permit_are_exported_and_each_is_audited(
    caller: Caller, engine: Engine, tenant: str, export: Any, tmp_path: Path
) -> None:
    for value in ("p-permit", "p-none", "p-revoked"):
        _report(caller, value)
    _consent(caller, "p-permit", "permit")
    revoked = _consent(caller, "p-revoked", "permit")
    assert caller.post(f"/v1/consents/{revoked}/revoke").status_code == 200
    permit, none, gone = (_patient(engine, tenant, v) for v in ("p-permit", "p-none", "p-revoked"))
    out = tmp_path / "out"

    printed = export("--deidentify", "--tenant", tenant, "--out", str(out)).output

    assert "patients exported: 1, withheld: 2" in printed
    assert "Patient: 1" in printed and "Observation: 1" in printed
    assert len(_patients_in(out)) == 1
    assert {p.stat().st_mode & 0o777 for p in out.iterdir()} == {0o600}
    assert not (out / "Consent.ndjson").exists()
    records = _audits(engine, tenant)
    egress = {
        (r.entity, r.outcome, r.purpose, r.destination) for r in records if r.kind == "egress"
    }
    destination = "research-export:file"
    assert egress == {
        (f"Patient/{permit}", "success", "research-export", destination),
        (f"Patient/{none}", "blocked", "research-export", destination),
        (f"Patient/{gone}", "blocked", "research-export", destination),
    }
    assert all(r.agent == "cli:export" for r in records)
    [command] = [r for r in records if r.kind == "export"]
    assert (command.outcome, command.entity) == ("success", "research-export")
    for patient_id in (permit, none, gone):
        assert patient_id not in printed  # counts only, never ids


def test_a_tenant_policy_permitting_research_exports_patients_without_consent(
    caller: Caller,
    engine: Engine,
    tenant: str,
    export: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _report(caller, "p-policy")
    _report(caller, "p-denies")
    _consent(caller, "p-denies", "deny")
    monkeypatch.setenv("CARELOOP_CONSENT_DEFAULTS", f"{tenant}:research-export=permit")

    printed = export("--deidentify", "--tenant", tenant, "--out", str(tmp_path / "o")).output

    assert "patients exported: 1, withheld: 1" in printed


def test_the_same_key_gives_the_same_pseudonyms_and_another_key_others(
    caller: Caller, engine: Engine, tenant: str, export: Any, tmp_path: Path
) -> None:
    _report(caller, "p-same")
    _consent(caller, "p-same", "permit")
    export("--deidentify", "--tenant", tenant, "--out", str(tmp_path / "a"))
    export("--deidentify", "--tenant", tenant, "--out", str(tmp_path / "b"))
    key_file = tmp_path / "other.key"
    key_file.write_text("another-research-key-" + "z" * 32 + "\n")
    export(
        "--deidentify",
        "--tenant",
        tenant,
        "--out",
        str(tmp_path / "c"),
        "--key-file",
        str(key_file),
    )

    first, again, other = (_patients_in(tmp_path / d) for d in "abc")
    assert first == again
    assert first[0]["id"] != other[0]["id"]
    assert first[0]["identifier"] != other[0]["identifier"]


def test_types_and_since_narrow_the_export(
    caller: Caller, engine: Engine, tenant: str, export: Any, tmp_path: Path
) -> None:
    _report(caller, "p-types")
    _consent(caller, "p-types", "permit")
    out = tmp_path / "typed"
    printed = export(
        "--deidentify", "--tenant", tenant, "--out", str(out), "--type", "Observation"
    ).output
    assert sorted(p.name for p in out.iterdir()) == ["Observation.ndjson"]
    assert "Observation: 1" in printed and "Patient" not in printed.split("patients")[0]
    later = export(
        "--deidentify", "--tenant", tenant, "--out", str(tmp_path / "later"),
        "--since", "2999-01-01T00:00:00Z",
    ).output  # fmt: skip
    assert "Observation: 0" in later and "patients exported: 1" in later


def test_refusals_exit_2_and_say_why(
    caller: Caller, tenant: str, export: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "out")
    identified = export("--tenant", tenant, "--out", out, code=2)
    assert "$export" in identified.output
    unknown = export("--deidentify", "--tenant", tenant, "--out", out, "--type", "Consent", code=2)
    assert "--type" in unknown.output
    bad_since = export("--deidentify", "--tenant", tenant, "--out", out, "--since", "soon", code=2)
    assert "--since" in bad_since.output
    no_tenant = export("--deidentify", "--tenant", "no-such-tenant", "--out", out, code=2)
    assert "tenant" in no_tenant.output
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("x")
    refused = export("--deidentify", "--tenant", tenant, "--out", str(used), code=2)
    assert "--force" in refused.output
    export("--deidentify", "--tenant", tenant, "--out", str(used), "--force")

    short = tmp_path / "short.key"
    short.write_text("too-short")
    weak = export(
        "--deidentify", "--tenant", tenant, "--out", out, "--key-file", str(short), code=2
    )
    assert "at least 32" in weak.output
    monkeypatch.delenv("CARELOOP_DEIDENTIFY_KEY")
    keyless = export("--deidentify", "--tenant", tenant, "--out", out, code=2)
    assert "CARELOOP_DEIDENTIFY_KEY" in keyless.output
    assert not Path(out).exists()
