"""Bounded input values the app API checks where they enter, so every stored value fits.

PostgreSQL text cannot hold NUL; columns have lengths; Python's ``datetime`` and the database
hold years 1..9999 only after conversion to UTC; FHIR strings must hold more than whitespace and
FHIR uris no whitespace at all. These types say so once, for every pydantic schema of the API.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

from careloop.services.common.bounds import check_datetime

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control characters no text field takes (tab, line feed and carriage return are text)."""


def _is_space(c: str) -> bool:
    # Python's whitespace plus U+FEFF, which ECMA-262's \s (the documented patterns, the FHIR
    # JSON schema's uri pattern) also counts: a BOM in an identifier system is not valid FHIR.
    return c.isspace() or c == "\ufeff"


def _text(value: str) -> str:
    if CONTROL.search(value):
        raise ValueError("must not contain control characters (such as NUL)")
    if all(_is_space(c) for c in value):
        raise ValueError("must not be blank")
    return value


def _uri(value: str) -> str:
    if any(_is_space(c) for c in value):
        raise ValueError("must be a URI without whitespace")
    return value


def _in_years(value: datetime) -> datetime:
    check_datetime(value)
    return value


TEXT_PATTERN = (
    r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
)
URI_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"
Text = AfterValidator(_text)
"""Pydantic validator: no control characters, not blank (the OpenAPI shows TEXT_PATTERN)."""
Uri = AfterValidator(_uri)
"""Pydantic validator: no whitespace (the OpenAPI shows URI_PATTERN)."""
_TEXT_DOC = Field(json_schema_extra={"pattern": TEXT_PATTERN})
_URI_DOC = Field(json_schema_extra={"pattern": URI_PATTERN})


def _bounded(n: int) -> StringConstraints:
    return StringConstraints(min_length=1, max_length=n)


# Text of at most N characters (the column's length); no control characters, not blank.
Text64 = Annotated[str, _bounded(64), Text, _TEXT_DOC]
Text100 = Annotated[str, _bounded(100), Text, _TEXT_DOC]
Text200 = Annotated[str, _bounded(200), Text, _TEXT_DOC]
Text300 = Annotated[str, _bounded(300), Text, _TEXT_DOC]
Text2000 = Annotated[str, _bounded(2000), Text, _TEXT_DOC]
Text4000 = Annotated[str, _bounded(4000), Text, _TEXT_DOC]
# URIs (identifier systems, URLs): bounded text without whitespace.
Uri300 = Annotated[str, _bounded(300), Text, Uri, _URI_DOC]
Uri500 = Annotated[str, _bounded(500), Text, Uri, _URI_DOC]
Uri2000 = Annotated[str, _bounded(2000), Text, Uri, _URI_DOC]
Name100 = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._~-]+$")
]
"""A name that is also a URL path segment (unreserved characters only)."""

SafeDatetime = Annotated[AwareDatetime, AfterValidator(_in_years)]
"""An aware datetime with an offset FHIR allows, in years 1..9998 once converted to UTC."""

SmallInt = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
"""An integer a 32-bit column and any arithmetic on it hold."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False, ge=-1e15, le=1e15)]
"""A finite number of bounded magnitude."""
