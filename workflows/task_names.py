"""The names of careloop's background work, defined once.

Outbox messages store these names, the Celery tasks are registered under them, and the broker
routes by them; code names the work with a member, never with a repeated string. A member is a
``str``, so it compares equal to the name read back from the database or a Celery message.
"""

from __future__ import annotations

from enum import StrEnum


class TaskName(StrEnum):
    """A Celery task, and the outbox message that asks for it."""

    OBSERVATION_EVALUATE = "observation.evaluate"
    """Judge a new reading against the care program (routine queue)."""
    OBSERVATION_EVALUATE_URGENT = "observation.evaluate_urgent"
    """The same, for a reading critical by itself (urgent queue)."""
    NOTIFICATION_DELIVER = "notification.deliver"
    """Deliver one alert notification through its channel."""
    EHR_PUSH = "ehr.push"
    """Write a patient's new resources into one EHR."""
    EHR_PULL = "ehr.pull"
    """Read care plans, goals, care teams and Task status from one EHR."""
    BULK_EXPORT = "bulk.export"
    """Write the next NDJSON file of one bulk ``$export`` job (routine queue)."""
    EHR_PULL_ALL = "ehr.pull_all"
    """Beat: schedule a pull from every active EHR connection."""
    ALERTS_ESCALATE_DUE = "alerts.escalate_due"
    """Beat: escalate the open alerts whose acknowledgement is overdue."""
    CHECKINS_SCAN = "checkins.scan"
    """Beat: open missed check-in alerts."""
    OUTBOX_RELAY = "outbox.relay"
    """Beat: publish the outbox messages that are due."""
    OUTBOX_PRUNE = "outbox.prune"
    """Beat: delete outbox messages completed long ago."""
    DB_ANALYZE = "db.analyze"
    """Beat: refresh the planner's statistics of busy tables that changed (PostgreSQL)."""
    AUDIT_CHECKPOINT = "audit.checkpoint"
    """Beat: sign a checkpoint of every tenant's audit chain that grew."""
