"""``careloop demo``: the tenant a newcomer signs in to, and its demo clinician."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, select
from support.inbox import new_tenant
from support.processes import inherited_env

from careloop.services.clinicians.models import Clinician
from careloop.services.clinicians.passwords import verify_password
from careloop.services.clinicians.sessions import open_session
from careloop.services.launch.models import ClinicianSession
from careloop.services.settings import Settings
from careloop.services.unit_of_work import session_scope
from careloop.workflows.cli.demo import demo_clinician, seed_demo


def test_the_demo_tells_every_story_once(settings: Settings, engine: Engine) -> None:
    seeded = seed_demo(settings, engine)
    by_patient: dict[str, list[tuple[str, str, str]]] = {}
    for alert in seeded.alerts:
        by_patient.setdefault(alert["patient"], []).append(
            (alert["rule"], alert["severity"], alert["status"])
        )
    patients = seeded.patients
    assert len(patients) == 7
    assert patients["demo-stable"] not in by_patient
    assert patients["demo-stable-2"] not in by_patient
    assert ("phq9-item9", "critical", "open") in by_patient[patients["demo-item9"]]
    assert by_patient[patients["demo-worsening"]] == [("phq9-worsening", "warning", "open")]
    assert by_patient[patients["demo-low-mood"]] == [("mood-low-streak", "warning", "open")]
    assert by_patient[patients["demo-anxious"]] == [("gad7-total", "warning", "acknowledged")]
    assert by_patient[patients["demo-improving"]] == [("phq9-total", "warning", "resolved")]
    assert len(seeded.practitioners) == 2


def test_the_demo_clinician_moves_to_the_newest_demo_and_loses_old_sessions(
    engine: Engine,
) -> None:
    email = f"Demo-{uuid.uuid4().hex[:8]}@Careloop.example"
    first_tenant = new_tenant(engine)
    first = demo_clinician(engine, first_tenant, email, "first-password-1", "Practitioner/a")
    with session_scope(engine) as session:
        stored = session.get(Clinician, first.id)
        assert stored is not None
        open_session(session, first_tenant, stored)
    second_tenant = new_tenant(engine)
    second = demo_clinician(engine, second_tenant, email, "second-password-2", "Practitioner/b")
    assert second.id == first.id
    with Session(engine) as session:
        stored = session.get(Clinician, first.id)
        assert stored is not None and stored.password_hash is not None
        assert stored.email == email.lower()
        assert stored.tenant_id == second_tenant
        assert stored.practitioner == "Practitioner/b"
        assert verify_password("second-password-2", stored.password_hash)
        assert not verify_password("first-password-1", stored.password_hash)
        left = session.exec(
            select(ClinicianSession).where(ClinicianSession.clinician_id == first.id)
        ).all()
        assert left == []


def test_careloop_demo_prints_where_to_sign_in(tmp_path: Path) -> None:
    env = inherited_env() | {
        "CARELOOP_DATA_DIR": str(tmp_path),
        "CARELOOP_BASE_URL": "http://127.0.0.1:8123",
        "CARELOOP_SECRET_KEY": "demo-test-" + "k" * 40,
    }
    done = subprocess.run(
        [sys.executable, "-m", "careloop", "demo", "--password-stdin"],
        input="a-synthetic-password\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "Sign in at http://127.0.0.1:8123/login" in done.stdout
    assert "demo@careloop.example" in done.stdout
    assert "a-synthetic-password" not in done.stdout
    assert "critical" in done.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "careloop", "demo", "--password-stdin"],
        input="short\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
