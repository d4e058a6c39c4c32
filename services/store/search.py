"""FHIR search over the store: parameters, filters, sorting and stable keyset paging."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, literal, or_, select, tuple_
from sqlmodel import Session

from careloop.services.common.bounds import NUL, parse_bounded_int
from careloop.services.common.fhirtime import FhirTimeError, parse_fhir_datetime_range
from careloop.services.db import UTCDateTime
from careloop.services.store.cursors import CursorError, PageCursor, decode_cursor, encode_cursor
from careloop.services.store.models import FhirResource, SearchToken
from careloop.services.store.repository import StoredResource

_R = FhirResource.__table__  # type: ignore[attr-defined]
_T = SearchToken.__table__  # type: ignore[attr-defined]


class ParamKind(StrEnum):
    """How a search parameter is matched."""

    id = "id"
    patient = "patient"
    token = "token"
    reference = "reference"
    date = "date"
    last_updated = "lastUpdated"


@dataclass(frozen=True)
class ParamSpec:
    """A supported search parameter: its kind, its FHIR type and its index name."""

    kind: ParamKind
    fhir_type: str
    index: str = ""


_COMMON = {
    "_id": ParamSpec(ParamKind.id, "token"),
    "_lastUpdated": ParamSpec(ParamKind.last_updated, "date"),
}
_PATIENT_REF = {
    "patient": ParamSpec(ParamKind.patient, "reference"),
    "subject": ParamSpec(ParamKind.patient, "reference"),
}
SEARCH_PARAMS: dict[str, dict[str, ParamSpec]] = {
    "Patient": {**_COMMON, "identifier": ParamSpec(ParamKind.token, "token", "identifier")},
    "Observation": {
        **_COMMON,
        **_PATIENT_REF,
        "code": ParamSpec(ParamKind.token, "token", "code"),
        "category": ParamSpec(ParamKind.token, "token", "category"),
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "status": ParamSpec(ParamKind.token, "token", "status"),
        "date": ParamSpec(ParamKind.date, "date"),
    },
    "QuestionnaireResponse": {
        **_COMMON,
        **_PATIENT_REF,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "questionnaire": ParamSpec(ParamKind.token, "reference", "questionnaire"),
        "status": ParamSpec(ParamKind.token, "token", "status"),
        "authored": ParamSpec(ParamKind.date, "date"),
    },
    "Encounter": {
        **_COMMON,
        **_PATIENT_REF,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "status": ParamSpec(ParamKind.token, "token", "status"),
        "class": ParamSpec(ParamKind.token, "token", "class"),
        "date": ParamSpec(ParamKind.date, "date"),
        "part-of": ParamSpec(ParamKind.reference, "reference", "part-of"),
    },
    "Group": {
        **_COMMON,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "member": ParamSpec(ParamKind.reference, "reference", "member"),
    },
    "RiskAssessment": {
        **_COMMON,
        **_PATIENT_REF,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "status": ParamSpec(ParamKind.token, "token", "status"),
        "code": ParamSpec(ParamKind.token, "token", "code"),
        "date": ParamSpec(ParamKind.date, "date"),
    },
    "Provenance": {
        **_COMMON,
        "patient": ParamSpec(ParamKind.patient, "reference"),
        "target": ParamSpec(ParamKind.reference, "reference", "target"),
        "recorded": ParamSpec(ParamKind.date, "date"),
    },
    "CarePlan": {
        **_COMMON,
        **_PATIENT_REF,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "status": ParamSpec(ParamKind.token, "token", "status"),
    },
    "Goal": {
        **_COMMON,
        **_PATIENT_REF,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "lifecycle-status": ParamSpec(ParamKind.token, "token", "lifecycle-status"),
    },
    "CareTeam": {
        **_COMMON,
        **_PATIENT_REF,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "status": ParamSpec(ParamKind.token, "token", "status"),
    },
    "Consent": {
        **_COMMON,
        "patient": ParamSpec(ParamKind.patient, "reference"),
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "status": ParamSpec(ParamKind.token, "token", "status"),
    },
    "Practitioner": {**_COMMON, "identifier": ParamSpec(ParamKind.token, "token", "identifier")},
    "PractitionerRole": {
        **_COMMON,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "practitioner": ParamSpec(ParamKind.reference, "reference", "practitioner"),
    },
    "Task": {
        **_COMMON,
        **_PATIENT_REF,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "status": ParamSpec(ParamKind.token, "token", "status"),
        "focus": ParamSpec(ParamKind.reference, "reference", "focus"),
        "owner": ParamSpec(ParamKind.reference, "reference", "owner"),
    },
    "Communication": {
        **_COMMON,
        **_PATIENT_REF,
        "identifier": ParamSpec(ParamKind.token, "token", "identifier"),
        "status": ParamSpec(ParamKind.token, "token", "status"),
        "about": ParamSpec(ParamKind.reference, "reference", "about"),
        "sent": ParamSpec(ParamKind.date, "date"),
    },
}
SORTS = {"date", "-date", "_lastUpdated", "-_lastUpdated", "_id"}
CONTROL_PARAMS = {"_count", "_sort", "_page", "_total"}
TOTAL_MODES = ("none", "estimate", "accurate")
"""``_total``: omit ``Bundle.total``, estimate it, or count every match."""
COUNT_CAP = 250
"""Matches counted on a first page by default: beyond this many, the total is omitted (or, with
``_total=estimate``, estimated). ``_total=accurate``, or ``_count=0`` (asking for the total
alone), counts them all."""
MAX_PARAMS = 50
"""Query parameters of one search."""
MAX_VALUE_LENGTH = 2048
"""Characters of one parameter's value."""
MAX_ALTERNATIVES = 100
"""Comma-separated values of one parameter (each is its own filter)."""
MAX_COUNT_TEXT = 10**9


class SearchError(ValueError):
    """A search request careloop cannot answer; ``param`` names the parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass
class SearchPage:
    """One page of matches with the total (None: omitted) and the token for the next page."""

    total: int | None
    resources: list[StoredResource]
    next_token: str | None
    snapshot: int


@dataclass
class SearchRequest:
    """A parsed search: filters, sort, page size and position."""

    resource_type: str
    filters: list[ColumnElement[bool]] = field(default_factory=list)
    tokens: list[TokenFilter] = field(default_factory=list)
    """Token and reference parameters, each one EXISTS over ``search_token`` at run time."""
    sort: str = ""
    total: str = ""
    """The ``_total`` asked for (``none``, ``estimate``, ``accurate``; empty: not asked)."""
    count: int = 50
    cursor: PageCursor | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)
    """The parameters used, for the ``self`` link (unknown ones are left out when lenient)."""
    cursor_key: str = ""
    """Signs the ``_page`` tokens of this search."""

    @property
    def binding(self) -> str:
        """What a page token of this search is bound to: type, filters and sort."""
        kept = sorted((n, v) for n, v in self.applied if n != "_count")
        return "\n".join([self.resource_type, self.sort, *(f"{n}={v}" for n, v in kept)])


_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")


def _date_filter(param: str, value: str, lo_col: Any, hi_col: Any) -> ColumnElement[bool]:
    prefix = value[:2] if value[:2] in _PREFIXES else "eq"
    raw = value[2:] if value[:2] in _PREFIXES else value
    try:
        lo, hi = parse_fhir_datetime_range(raw)
    except FhirTimeError as exc:
        raise SearchError(param, str(exc)) from exc
    lo_v, hi_v = literal(lo, UTCDateTime), literal(hi, UTCDateTime)
    condition: ColumnElement[bool]
    match prefix:
        case "eq":
            condition = and_(lo_col >= lo_v, hi_col <= hi_v)
        case "ne":
            condition = or_(lo_col < lo_v, hi_col > hi_v)
        case "gt" | "sa":
            condition = hi_col > hi_v
        case "lt" | "eb":
            condition = lo_col < lo_v
        case "ge":
            condition = hi_col >= lo_v
        case _:  # le
            condition = lo_col <= hi_v
    return condition


@dataclass(frozen=True)
class TokenFilter:
    """A token or reference parameter: its index name, its alternatives, exact or system|code."""

    index: str
    values: list[str]
    exact_reference: bool


def _token_filter(
    tenant_id: str, rtype: str, token: TokenFilter, seq_range: list[ColumnElement[bool]]
) -> ColumnElement[bool]:
    """EXISTS a matching token; ``seq_range`` bounds ``resource_seq`` as the page bounds ``seq``
    (PostgreSQL does not carry a range across the join, so the token index scan starts there)."""
    index, exact_reference = token.index, token.exact_reference
    alternatives = []
    for value in token.values:
        conds = [_T.c.resource_seq == _R.c.seq, *seq_range, _T.c.param == index]
        if exact_reference or "|" not in value:
            conds.append(_T.c.code == value)
        else:
            system, _, code = value.partition("|")
            if code:
                conds.append(_T.c.code == code)
            conds.append(_T.c.system == system)
        conds.extend([_T.c.tenant_id == tenant_id, _T.c.resource_type == rtype])
        alternatives.append(exists().where(and_(*conds)))
    return or_(*alternatives)


def parse_search(
    tenant_id: str,
    rtype: str,
    params: list[tuple[str, str]],
    default_count: int,
    max_count: int,
    strict: bool = False,
    *,
    cursor_key: str = "",
) -> SearchRequest:
    """Turn query parameters into a search request.

    Unknown parameters are ignored (and left out of the ``self`` link) as FHIR prescribes by
    default; with ``strict`` (``Prefer: handling=strict``) they are refused. Every name and
    value is bounded (no NUL, at most ``MAX_VALUE_LENGTH`` characters and ``MAX_ALTERNATIVES``
    alternatives) before it becomes a filter; ``_page`` must be a token ``cursor_key`` signed
    for this same search.
    """
    supported = SEARCH_PARAMS.get(rtype)
    if supported is None:
        raise SearchError("type", f"{rtype} cannot be searched here")
    if len(params) > MAX_PARAMS:
        raise SearchError(
            params[MAX_PARAMS][0][:64], f"a search takes at most {MAX_PARAMS} parameters"
        )
    request = SearchRequest(rtype, count=default_count, cursor_key=cursor_key)
    page_token = None
    for name, value in params:
        _check_bounds(name, value)
        base, _, modifier = name.partition(":")
        if base in CONTROL_PARAMS:
            if base == "_count":
                count = parse_bounded_int(value, MAX_COUNT_TEXT)
                if count is None:
                    raise SearchError("_count", "_count must be a non-negative integer")
                request.count = min(count, max_count)
            elif base == "_sort":
                if value not in SORTS:
                    raise SearchError("_sort", f"_sort supports {', '.join(sorted(SORTS))}")
                request.sort = value
            elif base == "_page":
                page_token = value
                continue
            elif base == "_total":
                if value not in TOTAL_MODES:
                    raise SearchError("_total", f"_total supports {', '.join(TOTAL_MODES)}")
                request.total = value
            request.applied.append((name, value))
            continue
        spec = supported.get(base)
        if spec is None:
            if strict:
                raise SearchError(name, f"{rtype} does not support the search parameter {base!r}")
            continue
        if modifier and not (modifier == "exact" and spec.kind == ParamKind.reference):
            raise SearchError(name, f"the modifier :{modifier} is not supported")
        if value == "":
            raise SearchError(name, f"the search parameter {base!r} has no value")
        values = value.split(",")
        if len(values) > MAX_ALTERNATIVES:
            raise SearchError(name, f"a parameter takes at most {MAX_ALTERNATIVES} values")
        if spec.kind in (ParamKind.token, ParamKind.reference):
            exact = spec.kind == ParamKind.reference
            request.tokens.append(TokenFilter(spec.index, values, exact))
        else:
            request.filters.append(_filter(base, spec, values))
        request.applied.append((name, value))
    if page_token is not None:
        try:
            request.cursor = decode_cursor(page_token, cursor_key, request.binding, request.sort)
        except CursorError as exc:
            raise SearchError("_page", str(exc)) from exc
    return request


def _check_bounds(name: str, value: str) -> None:
    where = name if name and NUL not in name and len(name) <= 64 else "query"
    if NUL in name or NUL in value:
        raise SearchError(where, "search parameters must not contain NUL characters")
    if len(name) > 64 or len(value) > MAX_VALUE_LENGTH:
        raise SearchError(
            where, f"a search parameter value is at most {MAX_VALUE_LENGTH} characters"
        )


def _filter(name: str, spec: ParamSpec, values: list[str]) -> ColumnElement[bool]:
    match spec.kind:
        case ParamKind.id:
            return _R.c.id.in_(values)  # type: ignore[no-any-return]
        case ParamKind.patient:
            ids = [v.removeprefix("Patient/") for v in values]
            if any("/" in i for i in ids):
                raise SearchError(name, f"{name} must reference a Patient")
            return _R.c.patient_id.in_(ids)  # type: ignore[no-any-return]
        case ParamKind.date:
            return or_(*(_date_filter(name, v, _R.c.date_lo, _R.c.date_hi) for v in values))
        case _:
            col = _R.c.last_updated
            return or_(*(_date_filter(name, v, col, col) for v in values))


def _sort_column(sort: str) -> Any:
    if sort.lstrip("-") == "date":
        return _R.c.date_lo
    if sort.lstrip("-") == "_lastUpdated":
        return _R.c.last_updated
    if sort == "_id":
        return _R.c.id
    return None


def _total(
    session: Session, request: SearchRequest, where: list[ColumnElement[bool]]
) -> int | None:
    """``Bundle.total`` for the first page: exact up to ``COUNT_CAP`` matches (always with
    ``_total=accurate`` or ``_count=0``); beyond, omitted or (``_total=estimate``) the
    planner's estimate."""
    if request.total == "none":
        return None
    matches = select(_R.c.seq).where(*where)
    if request.total == "accurate" or (request.count == 0 and not request.total):
        return int(
            session.execute(select(func.count()).select_from(matches.subquery())).scalar_one()
        )
    # in seq order, the plan walks the same indexes as a page and stops at the cap
    capped = matches.order_by(_R.c.seq).limit(COUNT_CAP + 1).subquery()
    counted = int(session.execute(select(func.count()).select_from(capped)).scalar_one())
    if counted <= COUNT_CAP:
        return counted
    if request.total != "estimate":
        return None
    return max(COUNT_CAP + 1, _estimate(session, matches))


def _estimate(session: Session, matches: Select[Any]) -> int:
    """The planner's row estimate of ``matches`` (PostgreSQL), else its exact count."""
    if session.get_bind().dialect.name != "postgresql":
        return int(
            session.execute(select(func.count()).select_from(matches.subquery())).scalar_one()
        )
    compiled = matches.compile(dialect=session.get_bind().dialect)
    plan = (
        session.connection()
        .exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params)
        .scalar_one()
    )
    return int(plan[0]["Plan"]["Plan Rows"])


_PG_SEARCH_SETTINGS = (
    "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL enable_hashjoin = off; "
    "SET LOCAL max_parallel_workers_per_gather = 0"
)
"""For the rest of the search's transaction: plan each search for its values (a prepared
statement's generic plan cannot tell a code matching 30 rows from one matching 300,000), and walk
the indexes in seq order (merge or nested loop: a page, or a capped count, stops at its limit)
rather than hash every match because the planner underestimates how many there are."""


def run_search(session: Session, tenant_id: str, request: SearchRequest) -> SearchPage:
    """Execute ``request``: one page, its total within the snapshot, and the next token.

    Pages are keyset: a later page starts after the last row's (sort key, seq) through the same
    indexes as the first, and the total counted on the first page travels in the page token.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql(_PG_SEARCH_SETTINGS)
    base = [_R.c.tenant_id == tenant_id, _R.c.resource_type == request.resource_type]
    base.extend(request.filters)
    cursor = request.cursor
    if cursor is None:
        snapshot = session.execute(select(func.coalesce(func.max(_R.c.seq), 0))).scalar_one()
        cursor = PageCursor(int(snapshot))
    base.append(_R.c.seq <= cursor.snapshot)
    in_snapshot = [_T.c.resource_seq <= cursor.snapshot]
    rtype = request.resource_type
    count_filters = [
        *base,
        *(_token_filter(tenant_id, rtype, t, in_snapshot) for t in request.tokens),
    ]
    descending = request.sort.startswith("-")
    rows: list[tuple[Any, Any]] = []
    for leg, after in _legs(request.sort, cursor, descending):
        need = request.count + 1 - len(rows)
        if need <= 0:
            break
        page_filters = [*base, *leg.filters]
        token_range = list(in_snapshot)
        if after is not None and leg.key is None:
            page_filters.append(_R.c.seq < after[1] if descending else _R.c.seq > after[1])
            bound = _T.c.resource_seq
            token_range.append(bound < after[1] if descending else bound > after[1])
        elif after is not None:
            key = (
                literal(after[0], UTCDateTime)
                if isinstance(after[0], datetime)
                else literal(after[0])
            )
            row, position = tuple_(leg.key, _R.c.seq), tuple_(key, literal(after[1]))
            page_filters.append(row < position if descending else row > position)
        page_filters.extend(_token_filter(tenant_id, rtype, t, token_range) for t in request.tokens)
        order = [] if leg.key is None else [leg.key.desc() if descending else leg.key.asc()]
        order.append(_R.c.seq.desc() if descending else _R.c.seq.asc())
        columns = [_R.c.seq, _R.c.id, _R.c.version_id, _R.c.last_updated, _R.c.content]
        if leg.key is not None:
            columns.append(leg.key.label("sort_key"))
        found = session.execute(
            select(*columns).where(*page_filters).order_by(*order).limit(need)
        ).all()
        rows.extend((r, r.sort_key if leg.key is not None else None) for r in found)
    has_more = len(rows) > request.count
    rows = rows[: request.count]
    if request.cursor is not None:
        total = cursor.total
    elif not has_more and request.total != "none":
        total = len(rows)  # the first page holds every match: no count needed
    else:
        total = _total(session, request, count_filters)
    resources = [
        StoredResource(request.resource_type, r.id, r.version_id, r.last_updated, r.content)
        for r, _key in rows
    ]
    next_token = None
    if has_more and rows:
        last, last_key = rows[-1]
        next_cursor = PageCursor(
            cursor.snapshot, last_key, last.seq, cursor.offset + len(rows), total
        )
        next_token = encode_cursor(next_cursor, request.cursor_key, request.binding)
    return SearchPage(total, resources, next_token, cursor.snapshot)


@dataclass(frozen=True)
class _Leg:
    """Part of a sorted search: its filters and its sort column (None: seq alone)."""

    filters: list[ColumnElement[bool]]
    key: Any


def _legs(sort: str, cursor: PageCursor, descending: bool) -> list[tuple[_Leg, Any]]:
    """The parts of a search in sort order, each with the (key, seq) to start after (None: from
    its start); the parts before the cursor's are left out.

    A date sort is two parts, so each is one index range: resources without a date (first
    ascending, last descending, in seq order), then those with one by (date_lo, seq).
    """
    column = _sort_column(sort)
    if column is None or sort.lstrip("-") != "date":
        legs = [_Leg([], column)]
        at = 0
    else:
        undated = _Leg([_R.c.date_lo.is_(None)], None)
        dated = _Leg([_R.c.date_lo.is_not(None)], column)
        legs = [dated, undated] if descending else [undated, dated]
        at = legs.index(undated if cursor.last_key is None else dated)
    if cursor.last_seq is None:
        return [(leg, None) for leg in legs]
    start = (cursor.last_key, cursor.last_seq)
    return [(legs[at], start), *((leg, None) for leg in legs[at + 1 :])]
