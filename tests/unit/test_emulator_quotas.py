"""The emulator's request-rate quotas (local/redshift_data/quotas.py): a bucket per operation, on a fake clock."""

from __future__ import annotations

import pytest

from local.redshift_data.errors import ThrottlingException
from local.redshift_data.quotas import DATA_API_RATE_QUOTAS, RateLimits

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def admitted(limits: RateLimits, operation: str, calls: int) -> int:
    count = 0
    for _ in range(calls):
        try:
            limits.admit(operation)
            count += 1
        except ThrottlingException:
            pass
    return count


def test_a_second_of_the_rate_then_throttling_then_refilled_at_the_rate():
    clock = Clock()
    limits = RateLimits({"ExecuteStatement": 30}, clock=clock)
    assert admitted(limits, "ExecuteStatement", 40) == 30
    assert limits.throttled == {"ExecuteStatement": 10}
    clock.now += 0.5
    assert admitted(limits, "ExecuteStatement", 40) == 15
    assert admitted(limits, "DescribeStatement", 500) == 500  # not metered


def test_rates_change_while_running_and_aws_defaults_are_at_hand():
    clock = Clock()
    limits = RateLimits(None, clock=clock)
    assert admitted(limits, "ExecuteStatement", 100) == 100
    limits.set_rate("ExecuteStatement", 4)
    assert admitted(limits, "ExecuteStatement", 10) == 4
    limits.set_rate("ExecuteStatement", None)
    assert admitted(limits, "ExecuteStatement", 10) == 10
    assert DATA_API_RATE_QUOTAS["ExecuteStatement"] == 30 and DATA_API_RATE_QUOTAS["GetStatementResultV2"] == 20


def test_the_refusal_is_what_botocore_treats_as_throttling():
    limits = RateLimits({"ExecuteStatement": 1}, clock=Clock())
    limits.admit("ExecuteStatement")
    with pytest.raises(ThrottlingException) as refused:
        limits.admit("ExecuteStatement")
    assert (refused.value.code, refused.value.status) == ("ThrottlingException", 400)
