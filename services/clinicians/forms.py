"""HTML forms read with bounds: a hostile form is refused (None), never an error page 5xx."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl

from fastapi import Request

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FIELDS = 20


async def read_form(request: Request, bounds: Mapping[str, int]) -> dict[str, str] | None:
    """The urlencoded form's fields named in ``bounds`` (first value each, missing as "").

    None when the form cannot be what a careloop page posts: another content type, not UTF-8,
    more than ``MAX_FIELDS`` fields, a value longer than its bound, or a NUL in one.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        return None
    try:
        text = (await request.body()).decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in bounds and name not in form:
            if len(value) > bounds[name] or "\x00" in value:
                return None
            form[name] = value
    return {name: form.get(name, "") for name in bounds}
