"""A rule that fired: what the rules engine hands to the alert lifecycle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Firing:
    """A rule that fired, with what it saw and where its threshold came from."""

    rule_id: str
    severity: str
    title: str
    values: dict[str, Any]
    threshold: dict[str, Any]
    source: str

    def explanation(self) -> dict[str, Any]:
        """The JSON an alert records."""
        return {
            "rule": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "values": self.values,
            "threshold": self.threshold,
            "source": self.source,
        }
