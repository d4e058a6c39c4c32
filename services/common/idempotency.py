"""Idempotency-Key handling: one unit of work per key, replayed for retries, refused on misuse."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.responses import Response

from careloop.services.audit.writes import record_writes
from careloop.services.common.errors import ApiError, Issue
from careloop.services.common.models import IdempotencyRecord
from careloop.services.unit_of_work import commit, rollback

MAX_ATTEMPTS = 4


class Caller(Protocol):
    """Whose keys these are: the calling client of a tenant (an auth ``Principal``)."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def client_id(self) -> str: ...


@dataclass(frozen=True)
class ApiResult:
    """A response computed by a unit of work: status, JSON body and optional Location."""

    status: int
    body: bytes
    location: str | None = None


def result_response(result: ApiResult, media_type: str = "application/json") -> Response:
    """The HTTP response for a unit of work's result."""
    headers = {"Location": result.location} if result.location else None
    return Response(result.body, result.status, headers=headers, media_type=media_type)


def body_hash(body: bytes) -> str:
    """A fingerprint of a request body."""
    return hashlib.sha256(body).hexdigest()


def run_unit_of_work(
    session: Session,
    principal: Caller,
    work: Callable[[], ApiResult],
    *,
    body: bytes,
    idempotency_key: str | None = None,
) -> ApiResult:
    """Run ``work`` and commit it, exactly once per Idempotency-Key of ``principal``.

    ``body`` (the request's identity: path parts and body) must be the same for a replay.

    What ``work`` wrote to the resource store is audited as ``client:<id>``'s (one entry per
    created and per updated set); a replay is not audited again: it discloses nothing the
    client was not given when the write it repeats was audited.

    ``work`` only adds to the session. A unique-key race (a concurrent retry, a patient created
    at the same moment) rolls back and runs again, so the loser finds the winner's data.
    """
    tenant_id, client_id, request_hash = principal.tenant_id, principal.client_id, body_hash(body)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise ApiError.invalid(
            "Idempotency-Key", "Idempotency-Key must be 1 to 255 characters", 400
        )
    for attempt in range(MAX_ATTEMPTS):
        if idempotency_key is not None:
            record = session.get(IdempotencyRecord, (tenant_id, client_id, idempotency_key))
            if record is not None:
                if record.request_hash != request_hash:
                    raise ApiError(
                        422,
                        [
                            Issue(
                                "conflict",
                                "this Idempotency-Key was used with a different request body",
                                "Idempotency-Key",
                            )
                        ],
                    )
                return ApiResult(record.status_code, record.response_body.encode(), record.location)
        try:
            result = work()
            record_writes(session, f"client:{client_id}")
            if idempotency_key is not None:
                session.add(
                    IdempotencyRecord(
                        tenant_id=tenant_id,
                        client_id=client_id,
                        key=idempotency_key,
                        request_hash=request_hash,
                        status_code=result.status,
                        response_body=result.body.decode(),
                        location=result.location,
                    )
                )
            commit(session)
            return result
        except IntegrityError:
            rollback(session)  # with that attempt's outbox messages
            if attempt == MAX_ATTEMPTS - 1:
                # Still racing other writers after several rounds: nothing was written, and a
                # retry is safe, so say so rather than fail.
                raise ApiError(
                    503,
                    [Issue("transient", "concurrent writes collided; retry the request")],
                    {"Retry-After": "1"},
                ) from None
        except BaseException:
            rollback(session)
            raise
    raise AssertionError("unreachable")
