"""Fixtures of the workflow tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.clients import Caller
from webhook_receiver import Receiver, webhook_receiver

from careloop.integrations.channels import generate_webhook_secret


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
