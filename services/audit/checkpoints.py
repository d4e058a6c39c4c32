"""Signed checkpoints of the audit chain: truncating the log after one is detected.

A checkpoint states "tenant T's chain had hash H at seq S" in a compact JWS signed with
careloop's active ES384 signing key (the one SMART assertions use, services/keys). Verification
uses the public key of the ``kid`` in the header, from every key careloop ever had (rotated ones
included: old checkpoints stay verifiable).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from sqlmodel import Session, col, func, select

from careloop.services.audit.models import AuditCheckpoint, AuditRecord
from careloop.services.db import utcnow
from careloop.services.keys.models import SigningKey
from careloop.services.keys.service import signing_key

ALG = "ES384"
log = logging.getLogger("careloop.audit")


@dataclass(frozen=True)
class Head:
    """The newest entry of a tenant's chain."""

    tenant_id: str
    seq: int
    hash: str


def heads(session: Session) -> list[Head]:
    """The head of every tenant's chain."""
    newest = (
        select(AuditRecord.tenant_id, func.max(AuditRecord.seq).label("seq"))
        .group_by(col(AuditRecord.tenant_id))
        .subquery()
    )
    rows = session.exec(
        select(AuditRecord.tenant_id, AuditRecord.seq, AuditRecord.hash).join(
            newest,
            (col(AuditRecord.tenant_id) == newest.c.tenant_id)
            & (col(AuditRecord.seq) == newest.c.seq),
        )
    ).all()
    return [Head(t, int(s or 0), h or "") for t, s, h in rows]


def sign_checkpoint(session: Session, secret_key: str, head: Head) -> AuditCheckpoint:
    """Sign and add a checkpoint of ``head`` (the caller commits)."""
    key = signing_key(session, secret_key, ALG)
    now = utcnow()
    payload = {
        "tenant": head.tenant_id,
        "seq": head.seq,
        "hash": head.hash,
        "iat": int(now.timestamp()),
    }
    token = jws.serialize_compact(
        {"alg": ALG, "kid": key.kid, "typ": "careloop-audit-checkpoint"},
        orjson.dumps(payload, option=orjson.OPT_SORT_KEYS),
        key,
        algorithms=[ALG],
    )
    checkpoint = AuditCheckpoint(
        tenant_id=head.tenant_id, seq=head.seq, hash=head.hash, created=now, jws=token
    )
    session.add(checkpoint)
    return checkpoint


def checkpoint_all(session: Session, secret_key: str) -> list[AuditCheckpoint]:
    """A checkpoint for every tenant whose chain grew since its last one (the caller commits)."""
    made = []
    for head in heads(session):
        last = session.exec(
            select(func.max(AuditCheckpoint.seq)).where(AuditCheckpoint.tenant_id == head.tenant_id)
        ).one()
        if last is not None and last >= head.seq:
            continue
        made.append(sign_checkpoint(session, secret_key, head))
        # The signed line is logged too: a copy outside the database (ids and hashes, no PHI).
        log.info("audit checkpoint tenant=%s seq=%d hash=%s", head.tenant_id, head.seq, head.hash)
    return made


def _public_keys(session: Session) -> dict[str, RSAKey | ECKey]:
    keys: dict[str, RSAKey | ECKey] = {}
    for row in session.exec(select(SigningKey)).all():
        data = orjson.loads(row.public_jwk)
        keys[row.kid] = RSAKey.import_key(data) if row.alg == "RS384" else ECKey.import_key(data)
    return keys


def signed_payload(token: str, keys: dict[str, RSAKey | ECKey]) -> dict[str, Any] | None:
    """The payload of a checkpoint JWS if its signature holds under a known key, else None."""
    try:
        header = jws.extract_compact(token.encode()).protected
        key = keys.get(str(header.get("kid")))
        if key is None or header.get("alg") not in ("ES384", "RS384"):
            return None
        result = jws.deserialize_compact(token, key, algorithms=[str(header["alg"])])
        payload = orjson.loads(result.payload)
    except (JoseError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def verified_checkpoints(
    session: Session, tenant_id: str
) -> list[tuple[int, dict[str, Any] | None]]:
    """Each stored checkpoint of ``tenant_id`` as (id, signed payload or None if forged)."""
    keys = _public_keys(session)
    rows = session.exec(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.tenant_id == tenant_id)
        .order_by(col(AuditCheckpoint.seq))
    ).all()
    out: list[tuple[int, dict[str, Any] | None]] = []
    for row in rows:
        payload = signed_payload(row.jws, keys)
        if payload is not None and payload.get("tenant") != tenant_id:
            payload = None
        out.append((int(row.id or 0), payload))
    return out
