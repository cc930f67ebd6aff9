"""Error behaviour no test held before (found by mutation testing spectra/errors.py): the status, code and
Retry-After each refusal is answered with (and the code a job fails with), how many characters of a refused name an
error echoes, which AWS answers count as passing trouble (through an exception's causes too), and what a job's error
tells of an AWS refusal that has no message."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from producers.api import app as api
from spectra import errors
from spectra.errors import JobNotFinished, SpectraError, echoed, passing_trouble, reason_of, without_arns
from tests.unit.test_errors import _answered

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "status", "code", "retry_after"),
    [
        ("SpectraError", 500, "internal_error", None),
        ("InvalidRequest", 400, "invalid_request", None),
        ("SqlRejected", 400, "sql_rejected", None),
        ("InvalidJson", 400, "invalid_json", None),
        ("BadGzip", 400, "bad_gzip", None),
        ("InvalidToken", 400, "invalid_token", None),
        ("InvalidParameters", 400, "invalid_parameters", None),
        ("Unauthorized", 401, "unauthorized", None),
        ("TenantGone", 401, "unauthorized", None),
        ("NotFound", 404, "not_found", None),
        ("Conflict", 409, "conflict", None),
        ("JobNotFinished", 409, "job_not_finished", "5"),
        ("UnsupportedMediaType", 415, "unsupported_media_type", None),
        ("PayloadTooLarge", 413, "payload_too_large", None),
        ("RecordTooLarge", 422, "record_too_large", None),
        ("Throttled", 429, "throttled", "1"),
        ("TooManyWaits", 429, "too_many_waits", "1"),
        ("Unavailable", 503, "unavailable", "2"),
        ("IdentityRefused", 403, "identity_refused", None),
        ("WriteRefused", 403, "sql_rejected", None),
        ("TenantInactive", 403, "tenant_inactive", None),
        ("NoIdentity", 403, "no_identity", None),
        ("Gone", 410, "gone", None),
        ("ResultsUnavailable", 410, "results_unavailable", None),
        ("ResultRefused", 422, "result_refused", None),
        ("ResultTooLarge", 422, "result_too_large", None),
        ("DuplicateColumns", 422, "duplicate_columns", None),
        ("ResultUnconvertible", 422, "result_unconvertible", None),
        ("StartNotRecorded", 503, "start_not_recorded", None),
        ("StartUnderWay", 503, "start_under_way", None),
    ],
)
def test_each_refusal_is_answered_with_its_status_code_and_retry_after(name, status, code, retry_after):
    """Each error reaches a caller as its HTTP status and its stable code in the one error shape (a job that fails
    with it records the same code: a write grant that shrank fails the job ``sql_rejected``, as the guard refuses it
    at submission), and those asking the caller to come back say after how many seconds."""
    refusal = getattr(errors, name)("refused here", details={"why": "a test"})
    answer = api._domain_error(refusal)
    assert (refusal.status, refusal.code) == (status, code)
    assert answer.status_code == status
    assert json.loads(answer.body) == {"error": {"code": code, "message": "refused here", "details": {"why": "a test"}}}
    assert (answer.headers or {}).get("Retry-After") == retry_after


def test_a_statement_rejected_is_422_statement_rejected_for_the_job():
    """The warehouse's refusal is what a job fails with (the API itself answers it as its own failure, 500)."""
    refusal = errors.StatementRejected("relation does not exist")
    assert (refusal.status, refusal.code, refusal.message) == (422, "statement_rejected", "relation does not exist")


def test_an_unfinished_jobs_wait_and_details_are_kept():
    """A job not finished is asked again after the seconds it was given (5 unless told), its details kept."""
    assert JobNotFinished("not yet").retry_after == 5
    later = JobNotFinished("not yet", retry_after=2, details={"state": "InProgress"})
    assert (later.retry_after, later.details, later.message) == (2, {"state": "InProgress"}, "not yet")
    assert api._domain_error(later).headers["Retry-After"] == "2"


def test_a_refused_name_is_echoed_up_to_100_characters():
    """A name of 100 characters is echoed whole; one of 101 is cut to its first 100 and marked cut."""
    whole, long = "a" * 100, "b" * 101
    assert echoed([whole, long], most=5) == [whole, "b" * 100 + " [...]"]


def test_only_the_first_names_are_echoed_and_the_rest_counted():
    """As many names as asked are echoed, the rest counted; exactly that many says no more."""
    assert echoed(["a", "b", "c"], most=3) == ["a", "b", "c"]
    assert echoed(["a", "b", "c", "d", "e"], most=2) == ["a", "b", "[... 3 more]"]
    assert echoed([], most=2) == []


@pytest.mark.parametrize(
    "code",
    [
        "TransactionConflictException",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
    ],
)
def test_each_throttling_or_transient_code_is_passing_trouble_whatever_its_status(code):
    """An AWS answer whose code says slow down or not now passes (the work is tried again later, the job not failed),
    on a 400 and on an answer that carries no status at all."""
    assert passing_trouble(_answered(code, 400))
    assert passing_trouble(_answered(code))


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_each_passing_status_is_passing_trouble_whatever_its_code(status):
    assert passing_trouble(_answered("SomethingElse", status))


@pytest.mark.parametrize("status", [400, 403, 404, 428, 430, 499, 501, 505])
def test_other_statuses_are_refusals(status):
    assert not passing_trouble(_answered("SomethingElse", status))


def test_a_refusal_without_a_status_or_code_is_not_passing():
    assert not passing_trouble(ClientError({}, "X"))
    assert not passing_trouble(_answered("AccessDenied"))


def test_passing_trouble_is_found_among_an_exceptions_causes():
    """A domain error raised from a throttled call passes as the call did; one raised from a refusal does not."""
    try:
        try:
            raise _answered("AccessDenied", 403)
        except ClientError as refused:
            raise errors.StatementRejected("denied") from refused
    except errors.StatementRejected as exc:
        refusal = exc
    try:
        try:
            try:
                raise EndpointConnectionError(endpoint_url="https://s3.amazonaws.com")
            except EndpointConnectionError as unreachable:
                raise ValueError("could not read") from unreachable
        except ValueError as inner:
            raise errors.StatementRejected("failed") from inner
    except errors.StatementRejected as exc:
        trouble = exc
    assert not passing_trouble(refusal)
    assert passing_trouble(trouble)


def test_a_cycle_of_causes_ends():
    """Causes that lead back to each other are read once each: the answer is no, not a loop."""
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    assert not passing_trouble(first)


def test_domain_throttling_and_unavailability_pass():
    assert passing_trouble(errors.Throttled("slow down"))
    assert passing_trouble(errors.Unavailable("not now"))
    assert not passing_trouble(errors.Conflict("finished"))


def test_an_aws_refusal_without_a_message_is_told_so():
    """A job's error names the code of an AWS refusal that said nothing more, and says it said nothing."""
    assert reason_of(ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject")) == "AccessDenied: no message"
    assert reason_of(ClientError({"Error": {"Code": "AccessDenied", "Message": ""}}, "X")) == "AccessDenied: no message"


def test_an_exception_with_a_response_of_no_aws_error_is_told_by_its_type_and_text():
    class Failed(Exception):
        response = {"Error": {"Message": "no code here"}}

    assert reason_of(Failed("it broke")) == "Failed: it broke"


def test_a_domain_errors_message_is_told_without_arns_or_accounts():
    told = reason_of(SpectraError("role arn:aws:iam::123456789012:role/x of account 123456789012 refused"))
    assert told == "role … of account … refused"


def test_without_arns_keeps_numbers_and_leaves_an_ellipsis():
    """A statement's message keeps the tenant's own numbers (twelve digits too); an ARN is left as an ellipsis."""
    told = without_arns("value 123456789012 refused by arn:aws:iam::123456789012:role/spectra, then")
    assert told == "value 123456789012 refused by …, then"
