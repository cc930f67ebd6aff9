"""The authorizer's reading of its event: the Authorization header (the lookup itself is TenantDirectory's) and the
method ARN. An event API Gateway would not send (a direct invocation's) is refused as a bad key is, with
``Exception("Unauthorized")``: anything else the function raises is API Gateway's AUTHORIZER_CONFIGURATION_ERROR, a
5xx (the hostile-input review found garbage method ARNs and headers raising)."""

from types import SimpleNamespace
from typing import Any

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


METHOD_ARN = "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/GET/v1/jobs"


@pytest.fixture
def tenants(monkeypatch):
    tenants = KeyTenants()
    tenants.create_tenant("acme", db_user="tenant_acme", usage_key="uk")
    monkeypatch.setattr(authorizer, "get_ports", lambda budget: SimpleNamespace(tenants=tenants, jwt=None))
    return tenants


def request_event(**changes: Any) -> dict[str, Any]:
    event = {
        "type": "REQUEST",
        "methodArn": METHOD_ARN,
        "resource": "/v1/jobs",
        "path": "/v1/jobs",
        "httpMethod": "GET",
        "headers": {"Authorization": "Bearer spk_good"},
        "multiValueHeaders": {"Authorization": ["Bearer spk_good"]},
        "queryStringParameters": {},
        "pathParameters": {},
        "requestContext": {"stage": "v1", "apiId": "abc123", "accountId": "123456789012"},
    }
    event.update(changes)
    return event


@pytest.mark.parametrize(
    "method_arn",
    [
        METHOD_ARN,
        "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/GET/",  # the root resource
        "arn:aws:execute-api:us-east-1:123456789012:abc123/v1/DELETE/v1/jobs/a:b\n",  # a path holds any character
    ],
)
def test_every_method_arn_api_gateway_sends_is_read(tenants, method_arn):
    """(Its partitions: test_the_policy_allows_the_method_in_the_partition_it_was_called_in.)"""
    answer = authorizer.lambda_handler(request_event(methodArn=method_arn), CONTEXT)
    assert answer["principalId"] == "acme"
    assert policy_allows(answer["policyDocument"], method_arn), answer["policyDocument"]


REFUSED = {
    # (c) a method ARN API Gateway would never send
    "arn-garbage": request_event(methodArn="garbage"),
    "arn-empty": request_event(methodArn=""),
    "arn-null": request_event(methodArn=None),
    "arn-number": request_event(methodArn=5),
    "arn-missing": {key: value for key, value in request_event().items() if key != "methodArn"},
    "arn-no-stage": request_event(methodArn="arn:aws:execute-api:us-east-1:123456789012:abc123"),
    "arn-no-method": request_event(methodArn="arn:aws:execute-api:us-east-1:123456789012:abc123/v1"),
    "arn-six-parts": request_event(methodArn="a:b:c:d:e:f"),
    "arn-empty-parts": request_event(methodArn="arn:::::/"),
    "arn-no-region-or-account": request_event(methodArn="arn:aws:execute-api:::abc123/v1/GET/"),
    "arn-another-service": request_event(methodArn="arn:aws:lambda:us-east-1:123456789012:function/v1/GET/"),
    # its neighbours: the headers, and the event itself
    "headers-missing": {key: value for key, value in request_event().items() if key != "headers"},
    "headers-null": request_event(headers=None),
    "headers-list": request_event(headers=["Authorization"]),
    "headers-string": request_event(headers="Authorization: Bearer spk_good"),
    "header-null": request_event(headers={"Authorization": None}),
    "header-number": request_event(headers={"Authorization": 5}),
    "header-list": request_event(headers={"Authorization": ["Bearer spk_good"]}),
    # the template's authorizer is a REQUEST one
    "token-event": {"type": "TOKEN", "authorizationToken": "Bearer spk_good", "methodArn": METHOD_ARN},
    "event-list": [],
    "event-string": "Bearer spk_good",
    "event-null": None,
}


@pytest.mark.parametrize("event", REFUSED.values(), ids=REFUSED)
def test_a_malformed_authorizer_event_is_refused_unauthorized(tenants, event):
    """API Gateway's answer to ``Exception("Unauthorized")`` is 401; anything else the function raises is its
    AUTHORIZER_CONFIGURATION_ERROR, a 5xx."""
    with pytest.raises(Exception) as raised:  # API Gateway reads its message alone
        authorizer.lambda_handler(event, CONTEXT)
    assert type(raised.value) is Exception and str(raised.value) == "Unauthorized"
