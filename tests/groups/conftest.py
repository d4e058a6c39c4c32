"""Fixtures of the group-session tests: an on-call webhook and in-process outbox work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from support.clients import Caller
from webhook_receiver import Receiver, webhook_receiver

from careloop.integrations.channels import generate_webhook_secret
from careloop.services.settings import Settings
from careloop.workflows.inline import run_pending


@pytest.fixture
def oncall(caller: Caller) -> Iterator[Receiver]:
    """A verified webhook receiver registered as the tenant's on-call channel."""
    with webhook_receiver(generate_webhook_secret()) as receiver:
        route = {
            "recipient": "oncall",
            "channel": "webhook",
            "address": receiver.url,
            "secret": receiver.secret,
        }
        assert caller.post("/v1/notification-routes", json=route).status_code == 201
        yield receiver


@pytest.fixture
def drain(engine: Engine, settings: Settings) -> Callable[[], Any]:
    """Run the outbox work the API recorded (the functions the Celery tasks call)."""
    return lambda: run_pending(engine, settings)
