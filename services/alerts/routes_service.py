"""Registering where clinicians and on-call are notified."""

from __future__ import annotations

import uuid

from sqlmodel import Session

from careloop.integrations.channels import generate_webhook_secret
from careloop.integrations.egress import DestinationPolicy, DestinationRefused
from careloop.services.alerts.models import NotificationRoute
from careloop.services.alerts.routing import ONCALL
from careloop.services.alerts.vocabulary import Channel, Severity
from careloop.services.common.errors import FieldError


class RouteError(FieldError):
    """A route that cannot be registered; ``field`` names the problem."""


def add_route(
    session: Session,
    tenant_id: str,
    recipient: str,
    channel: str,
    address: str,
    secret: str | None = None,
    min_severity: str = Severity.INFO,
    *,
    destinations: DestinationPolicy,
) -> NotificationRoute:
    """Register a route; a webhook without a secret gets a fresh ``whsec_`` secret.

    A webhook address must pass the egress ``destinations`` rules now (https in production,
    a public address unless allow-listed); they are checked again on every delivery.
    """
    if recipient != ONCALL and not recipient.startswith("Practitioner/"):
        raise RouteError("recipient", "recipient is 'oncall' or Practitioner/{id}")
    if not Channel.has(channel):
        raise RouteError("channel", f"channel is one of {', '.join(Channel)}")
    if not Severity.has(min_severity):
        raise RouteError("min_severity", f"min_severity is one of {', '.join(Severity)}")
    if channel == Channel.WEBHOOK:
        if len(address) > 2000 or not address.startswith(("https://", "http://")):
            raise RouteError("address", "a webhook address is an http(s) URL")
        try:
            destinations.check_url(address)
        except DestinationRefused as exc:
            raise RouteError("address", f"webhook address refused: {exc.message}") from exc
        if secret is not None and not secret.startswith("whsec_"):
            raise RouteError("secret", "webhook secrets look like whsec_<base64>")
        secret = secret or generate_webhook_secret()
    elif "@" not in address:
        raise RouteError("address", "an email address is needed")
    route = NotificationRoute(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        recipient=recipient,
        channel=channel,
        address=address,
        secret=secret if channel == Channel.WEBHOOK else None,
        min_severity=min_severity,
    )
    session.add(route)
    session.flush()
    return route
