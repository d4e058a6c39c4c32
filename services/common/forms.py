"""HTML forms (``application/x-www-form-urlencoded``), bounded and read as they arrive.

A hostile form is refused (a ``BadForm``, or None), never a 5xx: pages answer it in HTML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl

from fastapi import Request

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 20
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control characters other than tab and line breaks: nothing a person types in a textarea."""


class BadForm(ValueError):
    """The form could not be read (answered with a 400 page naming ``field``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


async def form_fields(request: Request) -> dict[str, str] | BadForm:
    """The posted form's fields (each once), or the ``BadForm`` saying what is wrong with it.

    A dependency: returned, not raised, so the page answers in HTML rather than JSON.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return BadForm("form", "must be sent as an HTML form")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return BadForm("form", "is too large")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        return BadForm("form", "could not be read")
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            return BadForm(name[:40], "was sent more than once")
        if _CONTROL.search(name) or _CONTROL.search(value):
            return BadForm(
                "form" if _CONTROL.search(name) else name[:40], "holds control characters"
            )
        fields[name] = value
    return fields


async def read_form(request: Request, bounds: Mapping[str, int]) -> dict[str, str] | None:
    """The fields named in ``bounds`` (missing ones as ""), or None for a form no careloop page
    posts: unreadable (see ``form_fields``) or a value longer than its bound."""
    fields = await form_fields(request)
    if isinstance(fields, BadForm):
        return None
    form = {name: fields.get(name, "") for name in bounds}
    if any(len(value) > bounds[name] for name, value in form.items()):
        return None
    return form
