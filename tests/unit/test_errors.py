"""What a job's error tells its tenant of AWS's failures: what went wrong, not the service's roles, account, buckets
and keys (found by the isolation review and, for the paths its fix missed, the diff review)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from spectra.errors import StatementRejected, passing_trouble, reason_of
from spectra.warehouse import _call

pytestmark = pytest.mark.unit

DENIED = (
    "User: arn:aws:sts::123456789012:assumed-role/spectra-CompletionRole/spectra-completion is not authorized to"
    " perform: redshift-data:GetStatementResultV2 on resource: arn:aws:redshift-serverless:us-east-1:123456789012:"
    "workgroup/0a1b2c3d because no identity-based policy allows the redshift-data:GetStatementResultV2 action"
)
INTERNALS = ("arn:", "123456789012", "spectra-CompletionRole", "workgroup/0a1b2c3d")


def test_a_data_api_refusal_is_told_without_arns():
    """The warehouse port turns the Data API's refusals into StatementRejected, whose message a job's error carries
    (statement_rejected, or a result the Data API refused to page)."""

    def refuse(**_):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": DENIED}}, "GetStatementResultV2")

    with pytest.raises(StatementRejected) as refused:
        _call(refuse)
    told = reason_of(refused.value)
    assert told == refused.value.message
    assert "is not authorized to perform: redshift-data:GetStatementResultV2 on resource: …" in told
    assert not [internal for internal in INTERNALS if internal in told], told


def test_a_failure_to_reach_aws_is_told_by_its_kind_alone():
    """botocore's own failures name the endpoint: for S3, the results bucket and the object's key."""
    url = "https://spectra-results-123456789012.s3.us-east-1.amazonaws.com/acme/j_1/part-00000.csv.gz"
    told = reason_of(EndpointConnectionError(endpoint_url=url))
    assert told == "EndpointConnectionError (the call to AWS failed before the service answered)"


def test_other_failures_keep_their_type_and_text():
    assert reason_of(ValueError("bad page")) == "ValueError: bad page"


def _answered(code: str, status: int | None = None) -> ClientError:
    """An AWS refusal with this code, and this HTTP status if given (an answer may carry none)."""
    response: dict = {"Error": {"Code": code, "Message": "no"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "X")


def _botocore_retries(exc) -> bool:
    """What botocore's standard retry mode (ports.py's) says of the same answer."""
    from botocore.retries import standard

    class Answer:
        status_code = exc.response["ResponseMetadata"]["HTTPStatusCode"]

    context = standard.RetryContext(
        attempt_number=1, operation_model=None, parsed_response=exc.response, http_response=Answer()
    )
    checkers = [standard.TransientRetryableChecker(), standard.ThrottledRetryableChecker()]
    return standard.OrRetryChecker(checkers).is_retryable(context)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 400),
        ("ProvisionedThroughputExceededException", 400),
        ("SlowDown", 503),
        ("InternalError", 500),
        ("BadGateway", 502),
        ("ServiceUnavailable", 503),
        ("GatewayTimeout", 504),
        ("RequestTimeout", 400),
        ("NotImplemented", 501),
        ("HttpVersionNotSupported", 505),
        ("AccessDenied", 403),
        ("ValidationException", 400),
        ("ConditionalCheckFailedException", 400),
    ],
)
def test_passing_trouble_is_what_botocore_retries(code, status):
    """Found by the diff review: every answer of 500 or more counted as passing, S3's 501 NotImplemented (which will
    never pass, and botocore does not retry) included, so such a job was never counted and held its slot for a day."""
    exc = _answered(code, status)
    assert passing_trouble(exc) == _botocore_retries(exc)
