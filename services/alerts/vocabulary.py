"""The words of the alert domain, defined once: severities, statuses, event kinds, channels.

Members are ``str``, so they compare equal to the values stored in the database (the columns
stay plain strings) and serialize as those values in JSON.
"""

from __future__ import annotations

from careloop.services.common.vocabulary import Vocabulary


class Severity(Vocabulary):
    """How urgent an alert is, least severe first (the order is the rank)."""

    INFO = "info"
    WARNING = "warning"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Higher is more severe."""
        return _RANKS[self]


_RANKS = {severity: rank for rank, severity in enumerate(Severity)}


def severity_rank(severity: str) -> int:
    """The rank of a severity name; ValueError if it is not one."""
    return Severity(severity).rank


class AlertStatus(Vocabulary):
    """Where an alert is in its life."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertEventKind(Vocabulary):
    """One step recorded in an alert's history."""

    OPENED = "opened"
    UPDATED = "updated"
    SUPPRESSED = "suppressed"
    NOTIFIED = "notified"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CARD_ACCEPTED = "card.accepted"
    """A clinician accepted the alert's CDS Hooks card in the EHR."""
    CARD_OVERRIDDEN = "card.overridden"
    """A clinician overrode (dismissed, with a reason) the alert's CDS Hooks card in the EHR."""


class NotificationEvent(Vocabulary):
    """The alert event a notification tells about."""

    OPENED = "opened"
    UPDATED = "updated"
    ESCALATED = "escalated"


class NotificationStatus(Vocabulary):
    """Where a notification's delivery stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    BLOCKED = "blocked"
    """Egress refused the destination (consent or policy); never retried."""


class Channel(Vocabulary):
    """How a notification reaches its recipient."""

    WEBHOOK = "webhook"
    EMAIL = "email"
