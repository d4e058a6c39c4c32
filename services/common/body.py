"""Reading request bodies: content type checked, JSON parsed, pydantic errors named by field."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from careloop.services.common.bounds import json_problem
from careloop.services.common.errors import ApiError, Issue, json_path

JSON_TYPES = {"application/json", "application/fhir+json"}
APP_JSON_DEPTH = 32
"""Containers nested in one app API body; the deepest valid body nests 3."""
APP_JSON_NUMBER = 10**15
"""Magnitude every app API number stays below: exact as a double."""
T = TypeVar("T")


class RawBody:
    """A request body already read, with its parsed JSON."""

    def __init__(self, raw: bytes, data: Any) -> None:
        self.raw = raw
        self.data = data


async def read_json_body(request: Request) -> RawBody:
    """The request's JSON body, checked (``check_json``); 415, 400 or 422 otherwise."""
    body = await read_json_unchecked(request)
    check_json(body.data)
    return body


def check_json(data: Any, prefix: tuple[str | int, ...] = ()) -> None:
    """Refuse JSON careloop cannot hold: NUL, non-finite or huge numbers (422), deep nesting (400).

    ``prefix`` is where ``data`` sits in the request body (an item of a batch).
    """
    problem = json_problem(data, max_depth=APP_JSON_DEPTH, max_number=APP_JSON_NUMBER)
    if problem is None:
        return
    where = json_path(prefix + problem.path)
    if problem.too_deep:
        raise ApiError(400, [Issue("structure", f"the body {problem.message}", where)])
    raise ApiError(422, [Issue("invalid", problem.message, where)])


async def read_json_unchecked(request: Request) -> RawBody:
    """The request's JSON body as parsed (the caller checks parts of it with ``check_json``)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise ApiError(
            415,
            [
                Issue(
                    "not-supported",
                    "send the body as application/json or application/fhir+json",
                    "Content-Type",
                )
            ],
        )
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            400, [Issue("structure", f"the body is not valid JSON: {exc.msg}", "body")]
        ) from exc
    return RawBody(raw, data)


def validation_issues(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[Issue]:
    """One Issue per pydantic error, its expression the JSON path of the field."""
    issues = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = prefix + tuple(error["loc"])
        issues.append(Issue("invalid", error["msg"], json_path(loc)))
    return issues


def parse_as(adapter: TypeAdapter[T], data: Any) -> T:
    """``data`` validated by ``adapter``; 422 naming every invalid field otherwise."""
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ApiError(422, validation_issues(exc)) from exc
