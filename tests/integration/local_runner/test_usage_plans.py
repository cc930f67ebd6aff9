"""Usage plans on the local gateway: keys from a Lambda authorizer's usageIdentifierKey, token-bucket rates, quotas
per period, and API Gateway's 403 / 429 answers shaped by the template's GatewayResponses."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import pytest
import requests

from local.runner.usage_plans import Quota, TokenBucket, period_start

from .conftest import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def api(start_stack):
    return start_stack("usage_plans", start_pollers=False, start_schedules=False)


def _key(local_aws, api, plan: str | None, *, enabled: bool = True) -> str:
    """A fresh API key, attached to the plan ``plan`` of this stack (or to none), as tenant provisioning does."""
    client = local_aws.client("apigateway")
    value = "k" + secrets.token_hex(16)
    key = client.create_api_key(name=f"test-{value[:8]}", value=value, enabled=enabled)
    if plan:
        client.create_usage_plan_key(usagePlanId=api.physical_id(plan), keyId=key["id"], keyType="API_KEY")
    return value


def _get(api, path: str, key: str) -> requests.Response:
    return requests.get(api.api_url + path, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_plans_are_created_from_the_template_with_their_stage(api, local_aws):
    plan = local_aws.client("apigateway").get_usage_plan(usagePlanId=api.physical_id("QuotaPlan"))
    assert plan["name"] == f"{api.stack_name}-quota"
    assert plan["quota"] == {"limit": 3, "period": "DAY", "offset": 0}
    assert plan["apiStages"] == [{"apiId": api.physical_id("Api"), "stage": "live"}]


@pytest.mark.parametrize("case", ["unknown", "in_no_plan", "disabled"])
def test_a_method_requiring_a_key_refuses_an_invalid_one_with_403(api, local_aws, case):
    key = {
        "unknown": lambda: "k" + secrets.token_hex(16),
        "in_no_plan": lambda: _key(local_aws, api, None),
        "disabled": lambda: _key(local_aws, api, "RatePlan", enabled=False),
    }[case]()
    response = _get(api, "/metered", key)
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "forbidden", "message": "Forbidden", "details": None}}
    assert _get(api, "/free", key).status_code == 200  # a method without ApiKeyRequired is not metered


def test_the_rate_is_a_token_bucket_and_429_says_when_to_retry(api, local_aws):
    key = _key(local_aws, api, "RatePlan")
    codes = [_get(api, "/metered", key).status_code for _ in range(6)]
    assert codes[:3] == [200, 200, 200]  # the burst
    assert 429 in codes[3:]
    refused = next(r for r in (_get(api, "/metered", key) for _ in range(10)) if r.status_code == 429)
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {"error": {"code": "throttled", "message": "Too Many Requests", "details": None}}
    wait_for(lambda: _get(api, "/metered", key).status_code == 200, timeout=5, what="the bucket to refill")
    other = _key(local_aws, api, "RatePlan")  # each key has its own bucket
    assert _get(api, "/metered", other).status_code == 200


def test_a_spent_quota_is_429_until_the_next_period(api, local_aws):
    key = _key(local_aws, api, "QuotaPlan")
    assert [_get(api, "/metered", key).status_code for _ in range(3)] == [200, 200, 200]
    refused = _get(api, "/metered", key)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3600"
    assert refused.json()["error"] == {"code": "quota_exceeded", "message": "Limit Exceeded", "details": None}
    assert _get(api, "/metered", _key(local_aws, api, "QuotaPlan")).status_code == 200


def test_token_bucket_refills_at_its_rate_up_to_its_burst():
    bucket = TokenBucket.full(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) and not bucket.take(0.5)  # 0.5 s at 2/s: one token
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]  # never more than the burst


def test_quota_periods_start_where_api_gateway_starts_them():
    moment = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)  # a Wednesday
    assert period_start("DAY", 0, moment) == datetime(2026, 3, 18, tzinfo=UTC)
    assert period_start("WEEK", 0, moment) == datetime(2026, 3, 16, tzinfo=UTC)  # Monday
    assert period_start("WEEK", 6, moment) == datetime(2026, 3, 15, tzinfo=UTC)  # weeks starting on Sunday
    assert period_start("MONTH", 0, moment) == datetime(2026, 3, 1, tzinfo=UTC)
    assert period_start("MONTH", 20, moment) == datetime(2026, 2, 21, tzinfo=UTC)
    quota = Quota(limit=2, period="DAY")
    day_one, day_two = datetime(2026, 3, 18, 23, 59, tzinfo=UTC), datetime(2026, 3, 19, 0, 1, tzinfo=UTC)
    assert [quota.take(day_one) for _ in range(3)] == [True, True, False]
    assert quota.take(day_two)
