"""Fixtures of the EHR tests: the in-repo test EHR on loopback, and a plain HTTP client.

A test module that needs the EHR set up further (apps or clients registered) overrides ``ehr``
with a fixture of the same name that takes this one.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from ehr_server import TestEHR


@pytest.fixture
def ehr() -> Iterator[TestEHR]:
    """A fresh test EHR, serving on loopback for the test."""
    with TestEHR() as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An HTTP client that follows no redirects and ignores proxy settings."""
    with httpx.Client(timeout=10, trust_env=False, follow_redirects=False) as client:
        yield client
