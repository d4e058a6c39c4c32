"""Path, header and body values of the FHIR API, bounded and validated before any work.

Each helper returns the parsed value or raises an ApiError (an OperationOutcome naming the
field); none echoes the value it refused.
"""

from __future__ import annotations

import re
from typing import Any

from careloop.services.common.bounds import INT32_MAX, NUL, json_problem, parse_bounded_int
from careloop.services.common.errors import ApiError, Issue, json_path
from careloop.services.store.models import TOKEN_LENGTH

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}", re.ASCII)
_ETAG = re.compile(r'(?:W/)?"([0-9]{1,10})"', re.ASCII)
MAX_HEADER_LENGTH = 2 * TOKEN_LENGTH + 32


def resource_id(value: str, field: str = "id") -> str:
    """A FHIR id from the path (1..64 of ``A-Za-z0-9-.``), else 400 naming ``field``."""
    if not _FHIR_ID.fullmatch(value):
        raise ApiError.invalid(field, "a FHIR id is 1 to 64 letters, digits, '-' or '.'", 400)
    return value


def version_number(text: str, field: str = "vid") -> int:
    """A version id: ASCII digits, at most 2**31-1, else 400 naming ``field``."""
    number = parse_bounded_int(text, INT32_MAX)
    if number is None:
        raise ApiError.invalid(field, "a version id is a whole number of ASCII digits", 400)
    return number


def if_match_version(header: str | None) -> int | None:
    """The version an ``If-Match`` ETag (``W/"3"``) names, or None without the header."""
    if header is None:
        return None
    match = _ETAG.fullmatch(header.strip())
    number = parse_bounded_int(match.group(1), INT32_MAX) if match else None
    if number is None:
        raise ApiError.invalid("If-Match", 'If-Match takes an ETag like W/"3"', 400)
    return number


def if_none_exist_identifier(header: str | None) -> tuple[str, str] | None:
    """The ``(system, value)`` of ``If-None-Exist: identifier=system|value``, or None."""
    if header is None or header == "":
        return None
    name, _, value = header.partition("=")
    system, bar, code = value.partition("|")
    if (
        len(header) > MAX_HEADER_LENGTH
        or NUL in header
        or name != "identifier"
        or not bar
        or not code
    ):
        raise ApiError.invalid(
            "If-None-Exist", "If-None-Exist supports identifier=system|value", 400
        )
    return system, code


def check_json(data: Any, root: str) -> None:
    """Refuse a body careloop cannot hold (NUL, deep nesting, huge or non-finite numbers).

    The issue names the element as a FHIRPath from ``root`` (the resource type).
    """
    problem = json_problem(data)
    if problem is None:
        return
    where = json_path((root, *problem.path))
    if problem.too_deep:
        raise ApiError(400, [Issue("too-costly", problem.message, where)])
    raise ApiError.invalid(where, problem.message)
