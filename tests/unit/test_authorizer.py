"""The authorizer's reading of the Authorization header (the lookup itself is TenantDirectory's)."""

from types import SimpleNamespace

import pytest

from local.runner.authorizers import policy_allows
from producers.authorizer import app as authorizer
from producers.authorizer.app import bearer_token
from spectra.errors import Unauthorized
from tests.unit.fakes import FakeTenants

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({"Authorization": "Bearer spk_abc"}, "spk_abc"),
        ({"authorization": "bearer spk_abc"}, "spk_abc"),  # header names and the scheme are case-insensitive
        ({"AUTHORIZATION": "BEARER spk_abc"}, "spk_abc"),
        ({"Authorization": "  Bearer   spk_abc  "}, "spk_abc"),
        ({"Host": "api", "Authorization": "Bearer spk_abc"}, "spk_abc"),
        ({}, None),
        ({"Authorization": ""}, None),
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": "Bearer    "}, None),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"Authorization": "spk_abc"}, None),  # a bare key is not a bearer token
        ({"X-Authorization": "Bearer spk_abc"}, None),
    ],
)
def test_bearer_token(headers, token):
    assert bearer_token(headers) == token


CONTEXT = SimpleNamespace(
    function_name="authorizer", memory_limit_in_mb=512, invoked_function_arn="arn:aws:lambda:x", aws_request_id="r1"
)


class KeyTenants(FakeTenants):
    def authenticate(self, api_key: str):
        if api_key != "spk_good":
            raise Unauthorized("invalid API key")
        return self.tenants["acme"]


@pytest.mark.parametrize(
    ("partition", "region"), [("aws", "us-east-1"), ("aws-us-gov", "us-gov-west-1"), ("aws-cn", "cn-north-1")]
)
def test_the_policy_allows_the_method_in_the_partition_it_was_called_in(monkeypatch, partition, region):
    """The template writes its ARNs with ${AWS::Partition}; a policy naming arn:aws: denied every call in GovCloud and
    China (found by the authentication review)."""
    tenants = KeyTenants()
    tenants.create_tenant("acme", db_user="tenant_acme", usage_key="uk")
    monkeypatch.setattr(authorizer, "get_ports", lambda budget: SimpleNamespace(tenants=tenants, jwt=None))
    method_arn = f"arn:{partition}:execute-api:{region}:123456789012:abc123/v1/GET/v1/jobs"
    event = {
        "type": "REQUEST",
        "methodArn": method_arn,
        "resource": "/v1/jobs",
        "path": "/v1/jobs",
        "httpMethod": "GET",
        "headers": {"Authorization": "Bearer spk_good"},
        "requestContext": {"stage": "v1", "apiId": "abc123", "accountId": "123456789012"},
    }
    answer = authorizer.lambda_handler(event, CONTEXT)
    assert answer["principalId"] == "acme"
    assert policy_allows(answer["policyDocument"], method_arn), answer["policyDocument"]
