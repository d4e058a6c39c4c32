"""Signed page cursors: where the next page of one search starts.

A cursor is the page position (snapshot, last sort key, last row, offset) and the total counted
on the first page as JSON, signed with
an HMAC over the position and the search it belongs to (type, filters, sort). A cursor that is
garbled, forged, or taken from another search is refused before it reaches the database.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from careloop.services.common.bounds import OutOfBounds, check_datetime

_MAX_SEQ = 2**62
_MAX_TOKEN = 512
_MAC_BYTES = 16
_ID_KEY = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)


@dataclass
class PageCursor:
    """The position after the last row of a page within a snapshot of the store."""

    snapshot: int
    last_key: Any = None
    last_seq: int | None = None
    offset: int = 0
    total: int | None = None
    """``Bundle.total`` as counted on the first page (None: omitted)."""


class CursorError(ValueError):
    """A ``_page`` token careloop did not issue for this search."""


class _Position(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    s: int = Field(ge=0, le=_MAX_SEQ)
    k: str | None = Field(default=None, max_length=64)
    q: int | None = Field(default=None, ge=0, le=_MAX_SEQ)
    o: int = Field(default=0, ge=0, le=_MAX_SEQ)
    t: int | None = Field(default=None, ge=0, le=_MAX_SEQ)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, binding: str, payload: bytes) -> bytes:
    message = b"careloop fhir page\n" + binding.encode() + b"\n" + payload
    return hmac.new(key.encode(), message, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(cursor: PageCursor, key: str, binding: str) -> str:
    """The ``_page`` token for ``cursor`` of the search described by ``binding``."""
    last = cursor.last_key.isoformat() if isinstance(cursor.last_key, datetime) else cursor.last_key
    payload = orjson.dumps(
        {
            "s": cursor.snapshot,
            "k": last,
            "q": cursor.last_seq,
            "o": cursor.offset,
            "t": cursor.total,
        }
    )
    return f"{_b64(payload)}.{_b64(_mac(key, binding, payload))}"


def _sort_key(raw: str | None, sort: str) -> Any:
    if raw is None:
        return None
    if sort.lstrip("-") in ("date", "_lastUpdated"):
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            raise CursorError("the page token's sort key has no offset")
        check_datetime(value)
        return value
    if sort == "_id" and _ID_KEY.fullmatch(raw):
        return raw
    raise CursorError("the page token's sort key does not fit the sort")


def decode_cursor(token: str, key: str, binding: str, sort: str) -> PageCursor:
    """The position a ``_page`` token names; CursorError unless careloop issued it here."""
    payload_text, dot, mac_text = token.partition(".")
    if not dot or len(token) > _MAX_TOKEN or not token.isascii():
        raise CursorError("the page token is not one careloop issued")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
    except (binascii.Error, ValueError) as exc:
        raise CursorError("the page token is not one careloop issued") from exc
    if not hmac.compare_digest(mac, _mac(key, binding, payload)):
        raise CursorError("the page token is not one careloop issued for this search")
    try:
        position = _Position.model_validate_json(payload)
        last_key = _sort_key(position.k, sort)
    except (ValidationError, ValueError, OutOfBounds) as exc:
        raise CursorError("the page token is not one careloop issued") from exc
    if position.k is not None and position.q is None:
        raise CursorError("the page token is not one careloop issued")
    return PageCursor(position.s, last_key, position.q, position.o, position.t)
