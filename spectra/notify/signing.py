"""Standard Webhooks signatures (https://www.standardwebhooks.com), made by the convention's own library.

Each attempt is signed afresh (receivers refuse timestamps more than five minutes off), over
``<webhook-id>.<webhook-timestamp>.<body>`` with HMAC-SHA256 under the subscription's secret. Receivers verify with
``standardwebhooks.Webhook(secret).verify(body, headers)`` and deduplicate on ``webhook-id``.
"""

from __future__ import annotations

import base64
import math
import secrets
from datetime import datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A signing secret in the convention's format: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signed_headers(secret: str, webhook_id: str, body: str, at: datetime) -> dict[str, str]:
    """The three headers of the convention for ``body`` sent at ``at`` (an aware UTC datetime)."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }
