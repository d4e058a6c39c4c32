"""The CDS clients' public keys: fetched from their allow-listed JWKS URLs, cached in process.

A JWKS is fetched through careloop's egress client (the egress destination rules), kept for
``TTL`` seconds, and fetched again early when a JWT names a ``kid`` the cached set lacks, at most
once per ``REFETCH_INTERVAL`` seconds per URL (so forged kids cannot make careloop hammer the EHR).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import httpx
import orjson
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlmodel import Session

from careloop.integrations.egress import DestinationRefused
from careloop.services.cds.models import CdsClient
from careloop.services.common.egress import egress_client
from careloop.services.settings import Settings

TTL = 300.0
REFETCH_INTERVAL = 30.0
MAX_JWKS_BYTES = 65_536
FETCH_TIMEOUT = 5.0


class JwksUnavailable(Exception):
    """The client's JWKS could not be fetched or read (the message is a reason code)."""


@dataclass
class _Entry:
    keys: KeySet
    fetched_at: float


class JwksCache:
    """Key sets by URL, shared by the threads of one process."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._throttled: dict[str, float] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every key set (tests, key rotation by hand)."""
        with self._lock:
            self._entries.clear()
            self._throttled.clear()

    def keys_for(
        self, session: Session, settings: Settings, client: CdsClient, kid: str
    ) -> KeySet | None:
        """The client's key set if it holds ``kid`` (fetching when stale or missing), else None.

        Raises JwksUnavailable when the set cannot be fetched and none is known.
        """
        now = time.monotonic()
        url = client.jwks_url
        with self._lock:
            entry = self._entries.get(url)
            throttled = now - self._throttled.get(url, -REFETCH_INTERVAL) < REFETCH_INTERVAL
        fresh = entry is not None and now - entry.fetched_at < TTL
        if entry is not None and (fresh or throttled):
            if _has_kid(entry.keys, kid):
                return entry.keys
            if throttled:
                return None  # refetched (or failed) a moment ago: do not ask again yet
        elif throttled:
            raise JwksUnavailable("jwks-unavailable")
        with self._lock:
            if fresh:  # an unknown kid in a fresh set: a rotation, or a forgery
                self._throttled[url] = now
        try:
            keys = _fetch(session, settings, client)
        except JwksUnavailable:
            with self._lock:
                self._throttled[url] = now
            if entry is not None and _has_kid(entry.keys, kid):
                return entry.keys  # a stale set beats none while the EHR is unreachable
            raise
        with self._lock:
            self._entries[url] = _Entry(keys, time.monotonic())
        return keys if _has_kid(keys, kid) else None


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _fetch(session: Session, settings: Settings, client: CdsClient) -> KeySet:
    http = egress_client(
        session, settings, client.tenant_id, "cds-jwks", f"cds-client:{client.id}", FETCH_TIMEOUT
    )
    try:
        with http.stream("GET", client.jwks_url, headers={"Accept": "application/json"}) as answer:
            if answer.status_code != 200:
                raise JwksUnavailable("jwks-status")
            body = bytearray()
            for chunk in answer.iter_bytes():
                body.extend(chunk)
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksUnavailable("jwks-too-large")
    except (httpx.HTTPError, DestinationRefused) as exc:
        raise JwksUnavailable("jwks-unreachable") from exc
    try:
        data = orjson.loads(bytes(body))
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise JwksUnavailable("jwks-malformed")
        # Only public keys of the two allowed families; anything else in the set is skipped.
        usable = [
            key
            for key in data["keys"]
            if isinstance(key, dict) and key.get("kty") in ("EC", "RSA") and "d" not in key
        ]
        return KeySet.import_key_set({"keys": usable})
    except (ValueError, TypeError, JoseError) as exc:
        raise JwksUnavailable("jwks-malformed") from exc


CACHE = JwksCache()
"""The process's JWKS cache."""
