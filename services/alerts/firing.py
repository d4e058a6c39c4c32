"""A rule that fired, and the explanation an alert records for the rules behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from careloop.fhir.risks import evidence_reference

REASON_KEYS = ("rule", "title", "severity", "values", "threshold", "source")
"""What one reason holds; an alert's explanation repeats its primary reason's under these keys."""


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
        """What this firing says about itself (one reason of an alert)."""
        return {
            "rule": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "values": self.values,
            "threshold": self.threshold,
            "source": self.source,
        }

    def reason(self, observation_id: str | None) -> dict[str, Any]:
        """One reason of an alert: the explanation and the reading it came from."""
        observation = evidence_reference(observation_id) if observation_id else None
        return self.explanation() | {"observation": observation}


def alert_explanation(reasons: list[dict[str, Any]]) -> dict[str, Any]:
    """The explanation of an alert: its primary reason (the first) at the top, then every one."""
    primary = reasons[0]
    return {key: primary.get(key) for key in REASON_KEYS} | {"reasons": reasons}


def reasons_of(explanation: dict[str, Any]) -> list[dict[str, Any]]:
    """Every reason of an alert's explanation, primary first (an older one holds just one)."""
    reasons = explanation.get("reasons")
    if isinstance(reasons, list) and reasons:
        return [r for r in reasons if isinstance(r, dict)]
    return [{key: explanation.get(key) for key in REASON_KEYS}]


def summary(explanation: dict[str, Any]) -> str:
    """The titles of every reason, primary first: what a Task or a Communication says."""
    titles = [str(r.get("title") or r.get("rule") or "") for r in reasons_of(explanation)]
    return "; ".join(t for t in titles if t)
