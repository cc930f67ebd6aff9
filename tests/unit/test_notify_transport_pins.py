"""Webhook outcome behaviour no test held before (found by mutation testing spectra/notify/transport.py): which
statuses are a delivery and which the receiver's "gone". What the transport answers for real servers' answers is
pinned in tests/integration/notify/test_transport_pins.py (unit tests run with the network off).
"""

from __future__ import annotations

import pytest

from spectra.notify.transport import HttpOutcome

pytestmark = pytest.mark.unit


# -- what an answer's status means ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "ok"), [(None, False), (199, False), (200, True), (299, True), (300, False)])
def test_a_success_is_a_2xx_answer_and_nothing_else(status, ok):
    """A 2xx is a delivery; no answer, a 1xx or a 3xx is a failure, retried and counted on the subscription."""
    assert HttpOutcome(status).ok is ok


@pytest.mark.parametrize(("status", "gone"), [(410, True), (409, False), (411, False), (404, False), (None, False)])
def test_only_410_says_the_endpoint_is_gone(status, gone):
    """410 disables the subscription at once; any other status is a failure like any other."""
    assert HttpOutcome(status).gone is gone
