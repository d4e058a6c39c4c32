"""Container health checks with Python's standard library only (the slim image has no curl).

Usage (exit status 0 healthy, 1 not):
  python /opt/careloop/healthcheck.py http URL          2xx from URL within 4 s (api, worker)
  python /opt/careloop/healthcheck.py fresh GLOB SECONDS  the newest file matching GLOB changed
                                                          within SECONDS (beat's schedule file,
                                                          which beat rewrites every 3 minutes)

An ``Authorization: Bearer`` header is sent when CARELOOP_HEALTHCHECK_TOKEN is set (a /metrics
endpoint protected by CARELOOP_METRICS_TOKEN). Nothing but one short line is printed: no URL
query, no body.
"""

from __future__ import annotations

import glob
import os
import sys
import time
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 4.0


def check_http(url: str) -> bool:
    """Whether ``url`` answers 2xx within the timeout."""
    request = urllib.request.Request(url, method="GET")
    token = os.environ.get("CARELOOP_HEALTHCHECK_TOKEN", "")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def check_fresh(pattern: str, max_age_seconds: float, now: float | None = None) -> bool:
    """Whether the newest file matching ``pattern`` was modified within ``max_age_seconds``."""
    mtimes = []
    for path in glob.glob(pattern):
        try:
            mtimes.append(os.stat(path).st_mtime)
        except OSError:
            continue  # removed between the glob and the stat (dbm rewrites its files)
    if not mtimes:
        return False
    return (now if now is not None else time.time()) - max(mtimes) <= max_age_seconds


def main(argv: list[str]) -> int:
    """Run the check ``argv`` names; 0 when healthy, 1 when not, 2 on a usage error."""
    if len(argv) == 2 and argv[0] == "http":
        healthy = check_http(argv[1])
    elif len(argv) == 3 and argv[0] == "fresh":
        healthy = check_fresh(argv[1], float(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if not healthy:
        print(f"careloop healthcheck: {argv[0]} check failed", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
