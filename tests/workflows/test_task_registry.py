"""Task names are defined once: each is one Celery task, routed and retried as its work needs.

The registry of outbox handlers (``workflows.handlers``) is what both the Celery tasks and the
inline runner run; these checks keep the names, the Celery app and the registry in step.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

import careloop.workflows.tasks  # noqa: F401  (registers the tasks, as a worker does)
from careloop.services.settings import Settings
from careloop.workflows.celery_app import celery_app, configure_celery
from careloop.workflows.handlers import HANDLERS
from careloop.workflows.outbox import URGENT_TASKS
from careloop.workflows.task_names import TaskName

OUTBOX_TASKS = {
    TaskName.OBSERVATION_EVALUATE,
    TaskName.OBSERVATION_EVALUATE_URGENT,
    TaskName.NOTIFICATION_DELIVER,
    TaskName.EHR_PUSH,
    TaskName.EHR_PULL,
    TaskName.BULK_EXPORT,
}


@pytest.fixture(autouse=True)
def _configured(settings: Settings) -> Iterator[None]:
    """The Celery app as a worker configures it (importing it configures nothing)."""
    configure_celery(settings)
    yield
    celery_app.close()


def test_importing_the_workflows_reads_no_settings_and_configures_nothing() -> None:
    probe = (
        "import os; os.environ['CARELOOP_BROKER_URL'] = 'redis://unused.example:1/0'\n"
        "import careloop.workflows.tasks\n"
        "from careloop.workflows.celery_app import celery_app\n"
        "from careloop.workflows import runtime\n"
        "assert celery_app.conf.broker_url is None, celery_app.conf.broker_url\n"
        "try:\n    runtime.runtime()\nexcept RuntimeError:\n    print('unconfigured')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "unconfigured"


def _ours() -> set[str]:
    return {name for name in celery_app.tasks if not name.startswith("celery.")}


def test_every_task_name_is_one_registered_celery_task_and_nothing_else_is() -> None:
    assert _ours() == {name.value for name in TaskName}


def test_every_outbox_task_has_a_handler_and_beat_tasks_have_none() -> None:
    assert set(HANDLERS) == OUTBOX_TASKS
    assert all(isinstance(name, TaskName) for name in HANDLERS)


def test_alert_work_and_the_relay_go_to_the_urgent_queue_ehr_sync_to_its_own() -> None:
    router = celery_app.amqp.router
    queues = {name: router.route({}, name)["queue"].name for name in _ours()}
    routine = celery_app.conf.task_default_queue
    urgent = {name for name, queue in queues.items() if queue == f"{routine}.urgent"}
    ehr = {name for name, queue in queues.items() if queue == f"{routine}.ehr"}
    assert ehr == {"ehr.push", "ehr.pull"}  # never behind a backlog of evaluations
    assert urgent == URGENT_TASKS | {TaskName.OUTBOX_RELAY}  # short leases, short queue
    assert urgent == {
        "notification.deliver",
        "observation.evaluate_urgent",
        "alerts.escalate_due",
        "outbox.relay",
    }
    assert all(queues[name] == routine for name in _ours() - urgent - ehr)


def test_each_task_keeps_its_retry_limit() -> None:
    limits = {name: celery_app.tasks[name].max_retries for name in _ours()}
    assert limits.pop("ehr.push") is None  # an EHR write waits out any outage
    assert limits.pop("ehr.pull") == 20
    assert set(limits.values()) == {8}
