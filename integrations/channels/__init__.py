"""Alert delivery channels: signed webhooks and PHI-free email.

Pure delivery: no database access. Each call makes one attempt and returns a
`DeliveryResult`; the caller records it and decides on retries.
"""

from careloop.integrations.channels.email import (
    EmailReason,
    InvalidAlertEmail,
    SmtpConfig,
    build_alert_email,
    send_alert_email,
)
from careloop.integrations.channels.result import DeliveryResult
from careloop.integrations.channels.webhooks import (
    InvalidWebhookInput,
    WebhookVerificationError,
    deliver_webhook,
    generate_webhook_secret,
    sign_webhook,
    verify_webhook,
)

__all__ = [
    "DeliveryResult",
    "EmailReason",
    "InvalidAlertEmail",
    "InvalidWebhookInput",
    "SmtpConfig",
    "WebhookVerificationError",
    "build_alert_email",
    "deliver_webhook",
    "generate_webhook_secret",
    "send_alert_email",
    "sign_webhook",
    "verify_webhook",
]
