"""What a tenant is told of AWS's refusals, past the ARNs the first tests cover (found by the mutation review)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from spectra.errors import reason_of, without_arns

pytestmark = pytest.mark.unit


def _refused(message: str) -> ClientError:
    return ClientError({"Error": {"Code": "AccessDenied", "Message": message}}, "PutObject")


def test_an_account_id_outside_an_arn_is_not_told():
    told = reason_of(_refused("Access Denied: bucket spectra-results-123456789012 is owned by account 123456789012"))
    assert "123456789012" not in told, told
    assert told.startswith("AccessDenied: Access Denied: bucket spectra-results-")


@pytest.mark.parametrize("partition", ["aws-us-gov", "aws-cn"])
def test_arns_of_every_partition_are_left_out(partition):
    arn = f"arn:{partition}:iam::123456789012:role/spectra-CompletionRole"
    assert "spectra-CompletionRole" not in reason_of(_refused(f"User: {arn} is not authorized"))
    assert "spectra-CompletionRole" not in without_arns(f"Not authorized to get credentials of role {arn}")


def test_a_tenants_longer_number_is_kept_whole():
    told = reason_of(_refused("value 1234567890123 is out of range"))
    assert "1234567890123" in told, told
