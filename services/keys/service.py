"""Key pairs for SMART client assertions: create, sign, publish, rotate and retire."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from careloop.services.db import utcnow
from careloop.services.keys.models import SigningKey
from careloop.services.unit_of_work import session_scope

ALGORITHMS = ("RS384", "ES384")


class SigningKeyError(Exception):
    """A key that cannot be used (missing, or not decryptable with this secret)."""


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"careloop-signing-keys", info=b"fernet"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def _generate(alg: str, kid: str) -> RSAKey | ECKey:
    if alg == "RS384":
        return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": alg, "use": "sig"})
    return ECKey.generate_key("P-384", parameters={"kid": kid, "alg": alg, "use": "sig"})


def create_key(session: Session, secret_key: str, alg: str) -> SigningKey:
    """A new active key pair for ``alg``."""
    if alg not in ALGORITHMS:
        raise ValueError(f"alg must be one of {ALGORITHMS}")
    kid = f"{alg.lower()}-{utcnow():%Y%m%d}-{secrets.token_hex(4)}"
    key = _generate(alg, kid)
    row = SigningKey(
        kid=kid,
        alg=alg,
        private_key=_fernet(secret_key).encrypt(orjson.dumps(key.as_dict(private=True))).decode(),
        public_jwk=orjson.dumps(key.as_dict(private=False)).decode(),
    )
    session.add(row)
    session.flush()
    return row


def ensure_keys(session: Session, secret_key: str) -> None:
    """Make sure an active key exists for every supported algorithm."""
    active = {k.alg for k in session.exec(select(SigningKey).where(col(SigningKey.active))).all()}
    for alg in ALGORITHMS:
        if alg not in active:
            create_key(session, secret_key, alg)


def _active_key(session: Session, alg: str) -> SigningKey | None:
    return session.exec(
        select(SigningKey)
        .where(col(SigningKey.active), SigningKey.alg == alg)
        .order_by(col(SigningKey.created_at).desc())
    ).first()


def signing_key(session: Session, secret_key: str, alg: str) -> RSAKey | ECKey:
    """The active private key for ``alg``, ready to sign.

    A missing key is created and committed in a transaction of its own: an EHR verifies the
    assertion by fetching careloop's JWKS while the caller's transaction is still open, so a
    key only that transaction could see would be refused. Nothing is written on the usual path,
    so concurrent pushes never contend for the key's row.
    """
    row = _active_key(session, alg)
    if row is None:
        engine = session.get_bind()
        assert isinstance(engine, Engine)
        with session_scope(engine) as own:
            ensure_keys(own, secret_key)
        row = _active_key(session, alg)
        assert row is not None
    try:
        data = orjson.loads(_fernet(secret_key).decrypt(row.private_key.encode()))
    except InvalidToken as exc:
        raise SigningKeyError(f"key {row.kid} cannot be decrypted with this secret") from exc
    return RSAKey.import_key(data) if alg == "RS384" else ECKey.import_key(data)


def rotate(session: Session, secret_key: str, alg: str | None = None) -> list[SigningKey]:
    """New active keys; the old ones stop signing but stay published for the grace period."""
    now = utcnow()
    new = []
    for algorithm in [alg] if alg else list(ALGORITHMS):
        for old in session.exec(
            select(SigningKey).where(col(SigningKey.active), SigningKey.alg == algorithm)
        ).all():
            old.active = False
            old.rotated_at = now
            session.add(old)
        new.append(create_key(session, secret_key, algorithm))
    return new


def published(session: Session, grace: timedelta, now: datetime | None = None) -> dict[str, Any]:
    """The JWKS: active keys, and rotated ones until ``grace`` after they were last used."""
    now = now or utcnow()
    keys = []
    for row in session.exec(select(SigningKey).order_by(col(SigningKey.created_at))).all():
        last = max(t for t in (row.rotated_at, row.last_used_at, row.created_at) if t)
        if row.active or now - last <= grace:
            keys.append(orjson.loads(row.public_jwk))
    return {"keys": keys}


def encrypt_secret(secret_key: str, value: str) -> str:
    """``value`` encrypted with careloop's key (for credentials stored at rest)."""
    return _fernet(secret_key).encrypt(value.encode()).decode()


def decrypt_secret(secret_key: str, value: str) -> str:
    """The plaintext of ``encrypt_secret``."""
    try:
        return _fernet(secret_key).decrypt(value.encode()).decode()
    except InvalidToken as exc:
        raise SigningKeyError("a stored secret cannot be decrypted with this secret key") from exc


def decrypts(secret_key: str, value: str) -> bool:
    """Whether ``value`` (from ``encrypt_secret`` or a stored private key) opens with the secret."""
    try:
        _fernet(secret_key).decrypt(value.encode())
    except InvalidToken:
        return False
    return True


def reencrypt(old_secret: str, new_secret: str, value: str) -> str:
    """``value`` encrypted under ``old_secret``, encrypted again under ``new_secret``."""
    try:
        plain = _fernet(old_secret).decrypt(value.encode())
    except InvalidToken as exc:
        raise SigningKeyError("a stored value cannot be decrypted with the old secret") from exc
    return _fernet(new_secret).encrypt(plain).decode()
