"""Proving careloop's FHIR builders valid: the check, and strategies for what the API admits.

Shared by tests/fhir/test_builders_valid.py and the builder proofs of other domains
(tests/risks): every output passes fhir.resources (R4B) and HL7's R4 JSON schema, for inputs drawn
from the whole space the app API's pydantic bounds admit.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, timedelta, timezone
from typing import Any, TypeVar

from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from careloop.fhir.validation import check_resource
from careloop.services.common.constrained import CONTROL
from support.fhir_schema import r4_schema_errors, without_ecma_only_spaces

T = TypeVar("T")


def assert_valid(resource: dict[str, Any]) -> None:
    """``resource`` passes fhir.resources and the R4 JSON schema (see ``ECMA_ONLY_SPACES``)."""
    check_resource(resource)
    errors = r4_schema_errors(without_ecma_only_spaces(resource))
    assert not errors, errors


# --- strategies: the inputs the API's bounds admit -------------------------------------------

# Characters hypothesis rarely draws on its own but text from people holds: whitespace of every
# kind, no-break and ideographic spaces, BOM, combining marks, astral planes, markup and quotes.
SPECIAL = (
    "\t\n\r \u0085\u00a0\u1680\u2000\u200a\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
    "\u0301\u180e\ufffd\uffff\U0001f600\U0010fffd<>&\"'\\/|%#$"
)
CHARS = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(SPECIAL))


def admitted(bound: Any) -> Callable[[Any], bool]:
    """Whether a value passes the pydantic type ``bound``."""
    adapter: TypeAdapter[Any] = TypeAdapter(bound)

    def admits(value: Any) -> bool:
        try:
            adapter.validate_python(value)
        except ValidationError:
            return False
        return True

    return admits


def texts(bound: Any, max_length: int, *, uri: bool = False) -> st.SearchStrategy[str]:
    """Strings the pydantic type ``bound`` admits, short ones and ones at ``max_length``."""
    short = st.text(CHARS, min_size=1, max_size=30)
    at_bound = st.text(CHARS, min_size=1, max_size=5).map(lambda s: (s * max_length)[:max_length])
    raw = st.one_of(short, at_bound).map(lambda s: CONTROL.sub("", s))
    if uri:
        raw = raw.map(lambda s: "".join(c for c in s if not c.isspace()))
    return raw.filter(admitted(bound))


def optional(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T | None]:
    """``strategy``'s values or None."""
    return st.one_of(st.none(), strategy)


MAX_OFFSET_MINUTES = 14 * 60
OFFSETS = st.one_of(
    st.just(UTC),
    st.integers(-MAX_OFFSET_MINUTES, MAX_OFFSET_MINUTES).map(
        lambda m: timezone(timedelta(minutes=m))
    ),
)
