"""Services record events; each event has one reaction, picked when the message is published.

A reading critical by itself (PHQ-9 item 9 above 0) goes to the urgent evaluation task, any
other reading to the routine one; the other events map to their one task.
"""

from __future__ import annotations

import orjson
from sqlalchemy import Engine
from support.clients import Caller
from support.outbox import tenant_messages
from support.reports import phq9

from careloop.services.outbox.events import EventType
from careloop.services.outbox.models import OutboxMessage
from careloop.services.settings import Settings
from careloop.workflows.handlers import EVENT_TASKS, HANDLERS
from careloop.workflows.routing import router_for
from careloop.workflows.task_names import TaskName


def test_every_event_has_a_reaction_and_every_reaction_a_handler() -> None:
    assert set(EVENT_TASKS) == set(EventType)
    assert {task for tasks in EVENT_TASKS.values() for task in tasks} <= set(HANDLERS)


def test_readings_are_routed_by_whether_they_are_critical_by_themselves(
    caller: Caller, engine: Engine, settings: Settings
) -> None:
    calm = caller.post("/v1/symptom-reports", json=phq9("route-calm", [1] * 8 + [0]))
    risk = caller.post("/v1/symptom-reports", json=phq9("route-risk", [0] * 8 + [1]))
    assert calm.status_code == risk.status_code == 201
    messages = [m for m in tenant_messages(engine, caller.tenant) if m.completed_at is None]
    assert [m.task for m in messages] == [EventType.READING_CREATED] * 2
    # The API's unit of work triaged them as it recorded them ...
    assert [orjson.loads(m.payload)["urgent"] for m in messages] == [False, True]
    with engine.connect() as conn:
        tasks = router_for(settings)(conn, messages)
    assert tasks == [TaskName.OBSERVATION_EVALUATE, TaskName.OBSERVATION_EVALUATE_URGENT]
    # ... and without that (a unit of work with no triage) the relay judges the stored reading.
    for message in messages:
        message.payload = orjson.dumps(
            {k: v for k, v in orjson.loads(message.payload).items() if k != "urgent"}
        ).decode()
    with engine.connect() as conn:
        assert router_for(settings)(conn, messages) == tasks


def test_a_recorded_triage_is_what_routes_the_reading(engine: Engine, settings: Settings) -> None:
    rows = [
        OutboxMessage(
            tenant_id="t",
            task=EventType.READING_CREATED,
            payload=orjson.dumps({"observation_id": "never-stored", "urgent": urgent}).decode(),
        )
        for urgent in (True, False)
    ]
    with engine.connect() as conn:
        tasks = router_for(settings)(conn, rows)
    assert tasks == [TaskName.OBSERVATION_EVALUATE_URGENT, TaskName.OBSERVATION_EVALUATE]


def test_other_events_and_replayed_work_run_their_one_task(
    engine: Engine, settings: Settings
) -> None:
    rows = [
        OutboxMessage(tenant_id="t", task=EventType.NOTIFICATION_REQUESTED, payload="{}"),
        OutboxMessage(tenant_id="t", task=EventType.RESOURCES_CHANGED, payload="{}"),
        OutboxMessage(tenant_id="t", task=TaskName.EHR_PULL, payload="{}"),
        # A reading whose Observation is gone is judged (and found missing) on the routine queue.
        OutboxMessage(
            tenant_id="t", task=EventType.READING_CREATED, payload='{"observation_id": "gone"}'
        ),
    ]
    with engine.connect() as conn:
        tasks = router_for(settings)(conn, rows)
    assert tasks == [
        TaskName.NOTIFICATION_DELIVER,
        TaskName.EHR_PUSH,
        TaskName.EHR_PULL,
        TaskName.OBSERVATION_EVALUATE,
    ]
