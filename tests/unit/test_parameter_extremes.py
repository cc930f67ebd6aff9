"""template.yaml's parameters at the ends of the ranges their constraints allow: what an operator may deploy, the code
must run with (README, Deploy). Found by the parameters review; each test failed on the code before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from cfnlint.decode import decode

from spectra.notify.delivery import Outcome, deliver
from spectra.notify.transport import HttpOutcome
from tests.unit.test_notify import T0, ports_with_notify, queued_delivery

pytestmark = pytest.mark.unit

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


@pytest.fixture(scope="module")
def parameters() -> dict:
    body, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return body["Parameters"]


def test_a_retry_factor_the_template_allows_schedules_even_the_last_retry(parameters):
    """WebhookRetryFactor has no MaxValue: 10,000,000 deploys, and its 49th power overflows a float. The retry after
    attempt 49 (of WebhookMaxAttempts' most, 50) raised OverflowError instead of being queued: the message came back,
    the receiver got the same POST again, and after five of those the delivery sat in the delivery queue's DLQ."""
    factor = float(parameters["WebhookRetryFactor"].get("MaxValue", 10_000_000))  # the most it deploys with
    most = int(parameters["WebhookMaxAttempts"]["MaxValue"])
    ports = ports_with_notify(webhook_retry_factor=factor, webhook_max_attempts=most)
    _, delivery = queued_delivery(ports)
    ports.notify.transport.answer(HttpOutcome(503, "HTTP 503 Service Unavailable"))
    assert deliver(ports, delivery.model_copy(update={"attempt": most - 1}), now=T0) is Outcome.RETRY_SCHEDULED
    (retry,) = ports.notify.deliveries.take()
    cap = ports.settings.webhook_retry_max_delay_seconds
    assert retry.delivery.attempt == most and cap / 2 <= (retry.delivery.not_before - T0).total_seconds() <= cap
