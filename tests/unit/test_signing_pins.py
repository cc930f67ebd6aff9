"""Webhook signing behaviour no test held before (found by mutation testing spectra/notify/signing.py): a secret is
``whsec_`` and the base64 of 32 random bytes, and a delivery carries the id, the whole seconds of its sending time and
the Standard Webhooks v1 signature (HMAC-SHA256 of ``id.timestamp.body`` under the secret's bytes), as a receiver
checks it by hand or with the convention's library."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from spectra.notify.signing import new_secret, signed_headers

pytestmark = pytest.mark.unit

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


def test_a_new_secret_is_whsec_and_the_base64_of_32_random_bytes():
    """Each secret decodes to 32 bytes after whsec_, and two are never the same."""
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and second.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"), validate=True)) == 32
    assert first != second


def test_the_headers_are_the_id_the_whole_seconds_and_the_v1_signature():
    """At 2026-01-02 03:04:05.999 UTC the timestamp is 1767323045 (cut, not rounded) and the signature is v1, the
    base64 HMAC-SHA256 of "<id>.<timestamp>.<body>" under the secret's 32 bytes."""
    at = datetime(2026, 1, 2, 3, 4, 5, 999_000, tzinfo=UTC)
    headers = signed_headers(SECRET, "msg_1", '{"a":1}', at)
    mac = hmac.new(b"s" * 32, b'msg_1.1767323045.{"a":1}', hashlib.sha256).digest()
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1767323045",
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def test_a_receiver_verifies_a_delivery_signed_now_with_a_new_secret():
    """standardwebhooks.Webhook(secret).verify takes the body with the headers, and refuses another body."""
    secret = new_secret()
    body = '{"job_id":"j_1"}'
    headers = signed_headers(secret, "msg_2", body, datetime.now(UTC))
    assert Webhook(secret).verify(body, headers) == {"job_id": "j_1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify('{"job_id":"j_2"}', headers)
