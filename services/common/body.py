"""Reading request bodies: content type checked, JSON parsed, pydantic errors named by field."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from careloop.services.common.errors import ApiError, Issue, json_path

JSON_TYPES = {"application/json", "application/fhir+json"}
T = TypeVar("T")


class RawBody:
    """A request body already read, with its parsed JSON."""

    def __init__(self, raw: bytes, data: Any) -> None:
        self.raw = raw
        self.data = data


async def read_json_body(request: Request) -> RawBody:
    """The request's JSON body; 415 for another content type, 400 for malformed JSON."""
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
