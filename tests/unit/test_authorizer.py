"""The authorizer's reading of the Authorization header (the lookup itself is TenantDirectory's)."""

import pytest

from producers.authorizer.app import bearer_token

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
