"""Fault injection for the tests that kill workers at chosen points."""

from __future__ import annotations

import os


def crash_point(name: str) -> None:
    """Die here, as a killed worker would, when ``CARELOOP_CRASH_AT`` names this point.

    Used by the fault tests that show a killed worker neither loses nor repeats an alert.
    """
    if os.environ.get("CARELOOP_CRASH_AT") == name:
        os._exit(137)
