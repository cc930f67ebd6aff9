"""What a client waits for while a DynamoDB table fails: the authorizer and the API try a failing call three times
(``spectra.ports.Budget.CLIENT``: at most 1 s, then 2 s, of backoff) and answer 503 with ``Retry-After``, within
seconds, and the client's next try, once the table answers, gets through. Each fault names only what this test's
tenant or key reads, so nothing else the stack does is counted."""

from __future__ import annotations

import pytest

from local.aws import dynamodb_error
from spectra.tenants import hash_api_key

pytestmark = pytest.mark.e2e

#: the API's own 503 (spectra/errors.py), and the authorizer's (the template's AUTHORIZER_CONFIGURATION_ERROR)
API_BUSY = "a service behind the API is busy or failing; retry after a pause"
SIGN_IN_BUSY = "the service could not check your credentials just now: try again"


def test_a_failing_tenants_table_is_a_503_after_three_tries_not_at_the_authorizers_timeout(new_tenant, local_aws):
    """The authorizer read through the pipeline's client, six tries backing off up to 30 s, past its 10 s Timeout:
    the client waited the 10 s for the same 503 and the authorizer held its Lambda environment for them (the
    service storms' fault test, where the local runner let it run on and answer)."""
    client = new_tenant()  # a key the authorizer has not seen: its answers are cached per key
    local_aws.fail(
        dynamodb_error("InternalServerError", status=500, seconds=60, resource=f"key#{hash_api_key(client.api_key)}")
    )
    try:
        refused = client.request("GET", "/v1/jobs")
    finally:
        failed = local_aws.recover()
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1", refused.text
    assert refused.json()["error"] == {"code": "unavailable", "message": SIGN_IN_BUSY, "details": None}
    assert failed == {"dynamodb:GetItem": 3}
    assert client.request("GET", "/v1/jobs").status_code == 200


def test_a_one_call_query_against_a_failing_table_is_a_503_after_three_tries_not_api_gateways_504(
    new_tenant, local_aws
):
    """The API, on the pipeline's client too, spent up to 30 s of backoff on each failing call: a one-call query
    while the tenant's items failed was API Gateway's 504 after 29 s (no Retry-After; the client cannot tell what
    was done), and a plain submit a 503 after about 20 s."""
    client = new_tenant()
    for _ in range(3):  # the authorizer's answer is cached for 2 s here: read it again until the API is what failed
        assert client.request("GET", "/v1/jobs").status_code == 200  # the authorizer's answer, cached
        local_aws.fail(dynamodb_error("InternalServerError", status=500, seconds=60, resource=client.tenant_id))
        try:
            refused = client.request("POST", "/v1/queries", json={"sql": "select 1", "wait_timeout": 10})
        finally:
            failed = local_aws.recover()
        assert refused.status_code == 503 and refused.headers["Retry-After"], refused.text
        if refused.json()["error"]["message"] == API_BUSY:
            break
        assert refused.json()["error"]["message"] == SIGN_IN_BUSY, refused.text
    else:
        pytest.fail("the authorizer's cached answer expired before each request reached the API")
    assert sum(failed.values()) == 3, failed  # its first call naming the tenant, three times
    answered = client.request("POST", "/v1/queries", json={"sql": "select 1", "wait_timeout": 10})
    assert answered.status_code == 200 and answered.json()["status"] == "COMPLETED", answered.text
