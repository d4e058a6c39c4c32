"""The origin (``scheme://host[:port]``) of a URL, for frame-ancestors and EHR origins."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_HOST = re.compile(r"^[a-z0-9.-]+$|^[0-9a-f:.]+$")


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, or None if it is not one (or looks unsafe)."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or not _HOST.match(host):
        return None
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")
