"""The missed group session rule: a no-show opens an info alert by default, attendance opens none,
and the care program can ask for a pattern (count within days) or another severity.

Outbox work runs in-process (``run_pending``: the functions the Celery tasks call), on SQLite and
PostgreSQL as every API test does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from group_bodies import group_session, participant
from sqlalchemy import Engine
from sqlmodel import Session, select
from support.clients import Caller
from support.clinicians import signed_in_browser
from support.outbox import tenant_messages

from careloop.services.settings import Settings
from careloop.services.tenancy.models import Tenant
from careloop.workflows.inline import run_pending
from careloop.workflows.rules.engine import PatientContext, evaluate_reading
from careloop.workflows.rules.program import ProgramError, load_program, parse_program

Drain = Callable[[], Any]


def _alerts(caller: Caller) -> list[dict[str, Any]]:
    response = caller.get("/v1/alerts")
    assert response.status_code == 200, response.text
    alerts: list[dict[str, Any]] = response.json()["alerts"]
    return alerts


def _post(caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    response = caller.post("/v1/group-sessions", json=body)
    assert response.status_code in (200, 201), response.text
    created: dict[str, Any] = response.json()
    return created


def test_a_no_show_opens_an_info_alert_and_attendance_opens_none(
    caller: Caller, drain: Drain, engine: Engine
) -> None:
    created = _post(caller, group_session("grp-rule"))
    by_attendance = {p["attendance"]: p for p in created["participants"]}
    events = [m for m in tenant_messages(engine, caller.tenant) if m.task == "reading.created"]
    assert [orjson.loads(m.payload)["observation_id"] for m in events] == [
        by_attendance["no-show"]["encounter"]
    ]
    drain()
    [alert] = _alerts(caller)
    assert (alert["severity"], alert["rule"], alert["patient"]) == (
        "info",
        "group-no-show",
        by_attendance["no-show"]["patient"],
    )
    assert alert["observation"] == by_attendance["no-show"]["encounter"]
    assert alert["explanation"]["values"]["missed_sessions"] == 1
    assert alert["explanation"]["threshold"] == {"count": 1, "days": 30}


def test_the_alert_page_shows_the_missed_session(
    app_client: TestClient, caller: Caller, drain: Drain, engine: Engine
) -> None:
    created = _post(caller, group_session("grp-alert-page", [participant("g-ap", "no-show")]))
    drain()
    [alert] = _alerts(caller)
    with Session(engine) as session:
        tenant = session.exec(select(Tenant.id).where(Tenant.name == caller.tenant)).one()
    browser = signed_in_browser(engine, tenant)
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.cookies.items())}
    page = app_client.get(f"/alerts/{alert['id']}", headers=cookie)
    assert page.status_code == 200, page.text
    assert "Missed a group session" in page.text
    assert "Did not attend" in page.text
    assert created["participants"][0]["encounter"] in page.text


def test_a_retried_session_opens_one_alert(caller: Caller, drain: Drain) -> None:
    body = group_session("grp-rule-retry", [participant("g-r1", "no-show")])
    _post(caller, body)
    drain()
    _post(caller, body)
    drain()
    [alert] = _alerts(caller)
    assert alert["occurrences"] == 1


def test_a_program_can_ask_for_two_missed_sessions_within_a_fortnight(
    caller: Caller, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    program = tmp_path / "program.toml"
    program.write_text(
        '[[rules]]\nid = "groups-twice"\nkind = "group-no-show"\ncount = 2\ndays = 14\n'
        'severity = "warning"\ntitle = "Missed two group sessions in a fortnight"\n',
        encoding="utf-8",
    )
    custom = settings.model_copy(update={"care_program": program})
    missed = [participant("g-twice", "no-show")]
    _post(caller, group_session("grp-w1", missed, start="2026-11-01T17:00:00Z", end=None))
    run_pending(engine, custom)
    assert _alerts(caller) == []
    _post(caller, group_session("grp-w2", missed, start="2026-11-24T17:00:00Z", end=None))
    run_pending(engine, custom)
    assert _alerts(caller) == []  # 23 days apart: no pattern
    _post(caller, group_session("grp-w3", missed, start="2026-11-30T17:00:00Z", end=None))
    run_pending(engine, custom)
    [alert] = _alerts(caller)
    assert (alert["severity"], alert["rule"]) == ("warning", "groups-twice")
    assert alert["explanation"]["values"]["missed_sessions"] == 2


def _encounter(attendance: str, start: str = "2026-11-24T17:00:00Z") -> dict[str, Any]:
    from careloop.fhir.groups import GroupSession, Participant, map_participant_encounter

    session = GroupSession(
        "g", "e", ("http://hl7.org/fhir/sid/us-npi", "1"), "video", "finished",
        datetime.fromisoformat(start), None, (),
    )  # fmt: skip
    return map_participant_encounter(session, Participant("p", "pe", attendance))


def test_the_default_program_judges_only_no_shows() -> None:
    program = load_program()
    [rule] = [r for r in program.rules if r.kind == "group-no-show"]
    assert (rule.severity, rule.count, rule.days) == ("info", 1, 30)
    for attendance in ("attended", "left-early"):
        assert evaluate_reading(program, _encounter(attendance), PatientContext()) == []
    [firing] = evaluate_reading(program, _encounter("no-show"), PatientContext())
    assert (firing.rule_id, firing.severity) == ("group-no-show", "info")


def test_count_counts_earlier_no_shows_within_days() -> None:
    program = parse_program(
        '[[rules]]\nid = "r"\nkind = "group-no-show"\ncount = 3\ndays = 7\nseverity = "high"\n'
    )
    now = _encounter("no-show", "2026-11-24T17:00:00Z")
    day = lambda d: datetime(2026, 11, d, 17, tzinfo=UTC)  # noqa: E731
    assert evaluate_reading(program, now, PatientContext(no_shows=[day(20)])) == []
    assert evaluate_reading(program, now, PatientContext(no_shows=[day(10), day(20)])) == []
    [firing] = evaluate_reading(program, now, PatientContext(no_shows=[day(17), day(20)]))
    assert firing.values["missed_sessions"] == 3


@pytest.mark.parametrize(
    "rule", ["count = 0\ndays = 7", "count = 1\ndays = 0", 'count = "x"\ndays = 7']
)
def test_a_group_no_show_rule_needs_a_count_and_days(rule: str) -> None:
    with pytest.raises(ProgramError):
        parse_program(f'[[rules]]\nid = "r"\nkind = "group-no-show"\nseverity = "info"\n{rule}\n')


def test_a_no_show_recorded_when_a_planned_session_is_held_opens_the_alert(
    caller: Caller, drain: Drain
) -> None:
    planned = group_session("grp-later", [participant("g-later", None)], status="planned")
    _post(caller, planned)
    drain()
    assert _alerts(caller) == []
    held = _post(caller, group_session("grp-later", [participant("g-later", "no-show")]))
    drain()
    [alert] = _alerts(caller)
    assert alert["observation"] == held["participants"][0]["encounter"]
