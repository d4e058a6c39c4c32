"""Rate limits with the ``limits`` library: in-process memory, or Redis shared by every process.

A refused request is answered 429 with ``Retry-After`` (seconds until the window lets one more
through). If the storage fails (Redis down), requests are let through and a warning is logged
at most once a minute: an outage of the counters must not take the API down with it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import STRATEGIES, RateLimiter

from careloop.services.common.errors import ApiError, Issue
from careloop.services.settings import Settings

log = logging.getLogger("careloop.ratelimit")
_WARN_EVERY = 60.0


@dataclass(frozen=True)
class Limit:
    """A named rate limit (one or more windows, e.g. ``10/minute;100/hour``); empty: none."""

    name: str
    items: tuple[RateLimitItem, ...]

    @classmethod
    def parse(cls, name: str, spec: str) -> Limit:
        """The limit ``spec`` (``limits`` syntax) under ``name``."""
        return cls(name, tuple(parse_many(spec)) if spec.strip() else ())


class Limiter:
    """Counts hits per limit and identifier and says when to come back."""

    def __init__(self, storage_url: str, key_prefix: str, strategy: str) -> None:
        options: dict[str, str | bool] = {"wrap_exceptions": True}
        if storage_url.startswith(("redis://", "rediss://", "redis+")):
            options["key_prefix"] = key_prefix
        storage = storage_from_string(storage_url, **options)
        if not isinstance(storage, Storage):
            raise ValueError(f"not a synchronous rate-limit storage: {storage_url}")
        self.storage = storage
        self.in_process = storage_url.startswith("memory://")
        """Counters in this process's memory: a hit is cheap and never waits on the network."""
        self.strategy: RateLimiter = STRATEGIES[strategy](self.storage)
        self._warned_at = -math.inf
        self._lock = threading.Lock()

    def hit(self, limit: Limit, identifier: str) -> int | None:
        """Count one request; ``None`` if allowed, else the seconds to wait before retrying."""
        key = _bounded(identifier)
        try:
            for item in limit.items:
                if not self.strategy.hit(item, limit.name, key):
                    reset = self.strategy.get_window_stats(item, limit.name, key).reset_time
                    return max(1, math.ceil(reset - time.time()))
        except StorageError as exc:
            self._warn(exc)
        return None

    def _warn(self, exc: StorageError) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._warned_at < _WARN_EVERY:
                return
            self._warned_at = now
        log.warning("rate-limit storage failed (%s); letting requests through", type(exc).__name__)


def _bounded(identifier: str) -> str:
    # Identifiers come from requests (a claimed client_id can be anything): keys stay short.
    if len(identifier) <= 64 and identifier.isascii() and identifier.isprintable():
        return identifier
    return "h-" + hashlib.sha256(identifier.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RateLimits:
    """careloop's limits: the token endpoint per client and per address, the API per client."""

    limiter: Limiter
    token_per_client: Limit
    token_per_ip: Limit
    api_per_client: Limit

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        """The limits and storage ``settings`` configure."""
        return cls(
            Limiter(
                settings.resolved_rate_limit_storage_url,
                settings.resolved_rate_limit_key_prefix,
                settings.rate_limit_strategy,
            ),
            Limit.parse("token-client", settings.rate_limit_token_per_client),
            Limit.parse("token-ip", settings.rate_limit_token_per_ip),
            Limit.parse("api-client", settings.rate_limit_api_per_client),
        )


def too_many_requests(retry_after: int, what: str) -> ApiError:
    """The 429 answer: an OperationOutcome with ``Retry-After``."""
    return ApiError(
        429,
        [Issue("throttled", f"too many {what}; retry after {retry_after} s")],
        {"Retry-After": str(retry_after)},
    )
