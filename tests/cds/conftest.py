"""Fixtures of the CDS Hooks tests: an EHR with real keys, registered as a CDS client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cds_ehr import SigningEhr
from sqlalchemy import Engine
from support.clients import Caller

from careloop.services.cds.jwks import CACHE
from careloop.services.settings import Settings


@pytest.fixture
def ehr(engine: Engine, settings: Settings, caller: Caller) -> Iterator[SigningEhr]:
    """An EHR serving its JWKS on loopback, trusted as a CDS client of the caller's tenant."""
    signing = SigningEhr()
    with signing.server.running():
        signing.register(engine, settings, caller.tenant)
        yield signing
    CACHE.clear()
