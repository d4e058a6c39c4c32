"""Values encrypted with the secret key at rest, checked at start and re-encrypted on a change.

Signing keys' private halves and EHR launch client secrets are encrypted with a key derived from
CARELOOP_SECRET_KEY. A changed secret would leave them unreadable, and EHR sync and launches would
fail later, one request at a time. ``careloop serve`` and ``careloop worker`` check them first:
in dev, values made with the old public dev default are re-encrypted to the new secret (an
existing dev data directory keeps working); otherwise careloop refuses to start and says how to
fix it (``careloop keys reencrypt --old-secret ...``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import Session, col, select

from careloop.services.ehr.models import EhrConnection
from careloop.services.keys.models import SigningKey
from careloop.services.keys.service import decrypts, reencrypt
from careloop.services.settings import LEGACY_DEV_SECRET, SECRET_FILE, Environment, Settings

log = logging.getLogger("careloop.keys")


class StoredSecretsError(Exception):
    """Stored values cannot be decrypted with the configured secret; the message says why."""


@dataclass(frozen=True)
class Unreadable:
    """Stored values that the current secret cannot decrypt (ids only)."""

    signing_keys: list[str]
    connections: list[str]

    def __bool__(self) -> bool:
        return bool(self.signing_keys or self.connections)


def unreadable(session: Session, secret_key: str) -> Unreadable:
    """The signing keys and EHR connections whose encrypted values ``secret_key`` cannot open."""
    keys = [
        row.kid
        for row in session.exec(select(SigningKey)).all()
        if not decrypts(secret_key, row.private_key)
    ]
    connections = [
        row.id
        for row in session.exec(
            select(EhrConnection).where(col(EhrConnection.launch_client_secret).is_not(None))
        ).all()
        if row.launch_client_secret and not decrypts(secret_key, row.launch_client_secret)
    ]
    return Unreadable(keys, connections)


def reencrypt_all(session: Session, old_secret: str, new_secret: str) -> int:
    """Re-encrypt every value ``old_secret`` opens under ``new_secret``; how many changed."""
    changed = 0
    for key in session.exec(select(SigningKey).with_for_update()).all():
        if decrypts(old_secret, key.private_key):
            key.private_key = reencrypt(old_secret, new_secret, key.private_key)
            session.add(key)
            changed += 1
    for connection in session.exec(select(EhrConnection).with_for_update()).all():
        stored = connection.launch_client_secret
        if stored and decrypts(old_secret, stored):
            connection.launch_client_secret = reencrypt(old_secret, new_secret, stored)
            session.add(connection)
            changed += 1
    return changed


def check_stored_secrets(session: Session, settings: Settings) -> None:
    """Make sure the configured secret opens every stored value (see the module docstring)."""
    missing = unreadable(session, settings.secret_key)
    if not missing:
        return
    if settings.environment == Environment.dev:
        moved = reencrypt_all(session, LEGACY_DEV_SECRET, settings.secret_key)
        if moved:
            log.warning(
                "re-encrypted %d stored values from the old public dev secret to %s",
                moved,
                settings.data_dir / SECRET_FILE,
            )
        missing = unreadable(session, settings.secret_key)
        if not missing:
            return
    raise StoredSecretsError(
        f"{len(missing.signing_keys)} signing key(s) and {len(missing.connections)} EHR launch "
        "secret(s) cannot be decrypted with this CARELOOP_SECRET_KEY: start with the secret they "
        "were made with, or run `careloop keys reencrypt --old-secret-file FILE` (or set "
        "CARELOOP_OLD_SECRET_KEY) to move them to this one"
    )
