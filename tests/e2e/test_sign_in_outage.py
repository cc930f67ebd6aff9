"""The authorizer while the tenants table fails: a client whose key it has not cached gets a 503 with
``Retry-After`` within seconds, and its next try, once the table answers, gets through."""

from __future__ import annotations

import pytest

from local.aws import dynamodb_error
from spectra.tenants import hash_api_key

pytestmark = pytest.mark.e2e


def test_a_failing_tenants_table_is_a_503_after_three_tries_not_at_the_authorizers_timeout(new_tenant, local_aws):
    """The authorizer read through the standard client, five tries backing off up to 15 s, past its 10 s Timeout:
    the client waited the 10 s for the same 503 and the authorizer held its Lambda environment for them (the
    service storms' fault test, where the local runner let it run on and answer). Three tries now, 3 s of backoff at
    most. The fault names this key's record alone, so nothing else the stack reads is counted."""
    client = new_tenant()  # a key the authorizer has not seen: its answers are cached per key
    local_aws.fail(
        dynamodb_error("InternalServerError", status=500, seconds=60, resource=f"key#{hash_api_key(client.api_key)}")
    )
    try:
        refused = client.request("GET", "/v1/jobs")
    finally:
        failed = local_aws.recover()
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1", refused.text
    assert refused.json()["error"]["code"] == "unavailable"
    assert failed == {"dynamodb:GetItem": 3}
    assert client.request("GET", "/v1/jobs").status_code == 200
