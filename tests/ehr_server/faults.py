"""Faults the test EHR injects into the next matching requests."""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import ClassVar


class FaultKind(enum.Enum):
    """What happens to a faulted request."""

    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HTTP_429 = "http_429"
    HANG = "hang"
    DROP_AFTER_COMMIT = "drop_after_commit"
    DROP_BEFORE = "drop_before"


@dataclass(frozen=True)
class Fault:
    """A fault; use the class constants or :meth:`http_429` / :meth:`http_503`.

    ``retry_after`` is sent verbatim as ``Retry-After`` (seconds or an HTTP date).
    """

    kind: FaultKind
    retry_after: str | None = None

    HTTP_500: ClassVar[Fault]
    HTTP_503: ClassVar[Fault]
    HTTP_429: ClassVar[Fault]
    HANG: ClassVar[Fault]
    DROP_AFTER_COMMIT: ClassVar[Fault]
    DROP_BEFORE: ClassVar[Fault]

    @classmethod
    def http_429(cls, retry_after: str | None = "1") -> Fault:
        """429 Too Many Requests with the given ``Retry-After`` (None: no header)."""
        return cls(FaultKind.HTTP_429, retry_after)

    @classmethod
    def http_503(cls, retry_after: str | None = "1") -> Fault:
        """503 Service Unavailable with the given ``Retry-After`` (None: no header)."""
        return cls(FaultKind.HTTP_503, retry_after)

    @property
    def status(self) -> int | None:
        """The HTTP status answered, or None when no response is sent."""
        return {
            FaultKind.HTTP_500: 500,
            FaultKind.HTTP_503: 503,
            FaultKind.HTTP_429: 429,
        }.get(self.kind)


Fault.HTTP_500 = Fault(FaultKind.HTTP_500)
Fault.HTTP_503 = Fault(FaultKind.HTTP_503, "1")
Fault.HTTP_429 = Fault(FaultKind.HTTP_429, "1")
Fault.HANG = Fault(FaultKind.HANG)
Fault.DROP_AFTER_COMMIT = Fault(FaultKind.DROP_AFTER_COMMIT)
Fault.DROP_BEFORE = Fault(FaultKind.DROP_BEFORE)


@dataclass
class _Rule:
    fault: Fault
    remaining: int
    method: str | None
    path_prefix: str | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_prefix is None or path.startswith(self.path_prefix)


class FaultPlan:
    """Thread-safe queue of injected faults; the oldest matching rule fires first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []

    def add(self, fault: Fault, count: int, method: str | None, path_prefix: str | None) -> None:
        """Apply ``fault`` to the next ``count`` requests matching method and path prefix."""
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._rules.append(_Rule(fault, count, method, path_prefix))

    def clear(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._rules.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, if any (consuming one use of its rule)."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return rule.fault
        return None
