"""One FHIR interaction (an HTTP request or a Bundle entry) and its outcome."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from .errors import FhirError
from .store import Resource
from .validation import relative_reference, require_supported

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ETAG = re.compile(r'^W/"(?P<version>[^"]+)"$')
REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    422: "Unprocessable Entity",
}


@dataclass
class Interaction:
    """What a client asked for, relative to the FHIR base."""

    method: str
    parts: list[str]
    query: list[tuple[str, str]] = field(default_factory=list)
    resource: Any = None
    if_none_exist: str | None = None
    if_match: str | None = None
    full_url: str | None = None

    @classmethod
    def from_url(cls, method: str, url: str, base_url: str, **kwargs: Any) -> Interaction:
        """Build from a relative (or this server's absolute) URL such as ``Type?a=b``."""
        path, _, query = relative_reference(url, base_url).partition("?")
        parts = [p for p in path.strip("/").split("/") if p]
        return cls(method.upper(), parts, parse_qsl(query, keep_blank_values=True), **kwargs)

    @property
    def rtype(self) -> str:
        """The resource type addressed."""
        return self.parts[0]

    def kind(self) -> tuple[str, str]:
        """``(interaction name, SMART permission letter)``; raises for unsupported shapes."""
        parts, method = self.parts, self.method
        if not parts:
            raise FhirError(400, f"{method} on the base URL is not supported here", "not-supported")
        require_supported(parts[0])
        if len(parts) > 1 and parts[1] != "_search":
            check_id(parts[1])
        shapes = {
            ("GET", 1): ("search", "s"),
            ("GET", 2): ("read", "r"),
            ("GET", 3): ("history", "r"),
            ("GET", 4): ("vread", "r"),
            ("POST", 1): ("create", "c"),
            ("PUT", 1): ("conditional-update", "u"),
            ("PUT", 2): ("update", "u"),
        }
        if method == "POST" and parts[1:] == ["_search"]:
            return "search", "s"
        shape = shapes.get((method, len(parts)))
        if shape is None or (len(parts) > 2 and parts[2] != "_history"):
            raise FhirError(405, f"{method} {'/'.join(parts)} is not supported", "not-supported")
        if shape[0] == "conditional-update" and not self.query:
            raise FhirError(400, "PUT on a type needs search criteria", "invalid")
        return shape


@dataclass
class Outcome:
    """The result of one interaction."""

    status: int
    body: Resource | None = None
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        """HTTP headers for a single-interaction response."""
        found = {
            "Location": self.location,
            "ETag": self.etag,
            "Last-Modified": self.last_modified,
        }
        return {k: v for k, v in found.items() if v is not None}

    def entry_response(self) -> dict[str, Any]:
        """The ``Bundle.entry.response`` element."""
        response: dict[str, Any] = {"status": f"{self.status} {REASONS.get(self.status, '')}"}
        for key, value in (
            ("location", self.location),
            ("etag", self.etag),
            ("lastModified", self.last_modified),
        ):
            if value is not None:
                response[key] = value
        return response


def check_id(rid: str) -> None:
    """400 unless ``rid`` is a valid FHIR id."""
    if not _ID.match(rid):
        raise FhirError(400, f"Invalid resource id {rid!r}", "invalid")


def etag_version(etag: str) -> str:
    """The version in a weak ETag ``W/"n"``; 400 if malformed."""
    match = _ETAG.match(etag.strip())
    if match is None:
        raise FhirError(400, f'If-Match must look like W/"n", got {etag!r}', "invalid")
    return match["version"]
