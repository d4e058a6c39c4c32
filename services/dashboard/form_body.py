"""An HTML form's fields (``application/x-www-form-urlencoded``), bounded, read as they arrive."""

from __future__ import annotations

import re
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
