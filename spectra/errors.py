"""One exception hierarchy for the domain. The API maps it to HTTP in one place; consumers map it to job failures."""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError

#: A refusal names each thing it refuses cut to this many characters: a request of long bad names would otherwise
#: come back whole in the answer and the logs (past Lambda's 6 MiB answer, a 502)
NAME_ECHO = 100


def echoed(values: list[str], *, most: int) -> list[str]:
    """What an error echoes of the names it refuses: the first ``most``, each cut to :data:`NAME_ECHO` characters,
    and how many more there are."""
    named = [v if len(v) <= NAME_ECHO else v[:NAME_ECHO] + " [...]" for v in values[:most]]
    if len(values) > most:
        named.append(f"[... {len(values) - most} more]")
    return named


class SpectraError(Exception):
    """Base of every error the domain raises on purpose. ``code`` is stable; ``message`` is for people."""

    status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidRequest(SpectraError):
    status = HTTPStatus.BAD_REQUEST
    code = "invalid_request"


class SqlRejected(InvalidRequest):
    """The SQL guard refused the statement (it could change identity or privileges, or is not one statement)."""

    code = "sql_rejected"


class InvalidJson(InvalidRequest):
    """The body is not one strict JSON document in UTF-8: bad syntax or encoding, NaN or Infinity, a number past
    the parser's limits, a key given twice, or nesting deeper than the parser goes."""

    code = "invalid_json"


class BadGzip(InvalidRequest):
    """A bulk batch sent as gzip that does not inflate to its end: cut short, not deflate data, or followed by bytes
    that are no gzip member. Taken, it failed the whole job ``bad_gzip`` when the job read it, the job's good batches
    with it: the code is the one that job failure has."""

    code = "bad_gzip"


class InvalidToken(InvalidRequest):
    """A page token that this service did not sign for this listing (forged, altered, truncated, another tenant's,
    another filter's, or signed with a key since rotated)."""

    code = "invalid_token"


class Unauthorized(SpectraError):
    status = HTTPStatus.UNAUTHORIZED
    code = "unauthorized"


class TenantGone(Unauthorized):
    """The caller's tenant was deleted (or deleted and created again) after the authorizer vouched for its key: API
    Gateway honours its cached answer for ``AuthorizerCacheSeconds``. Refused as the key is from then on: 401
    (``unauthorized``), with no hint of which part failed."""


class NotFound(SpectraError):
    """Also what a tenant gets for another tenant's job: not found, never forbidden."""

    status = HTTPStatus.NOT_FOUND
    code = "not_found"


class Conflict(SpectraError):
    """The job is in a state that does not allow the request (cancel a finished job, results of a running one)."""

    status = HTTPStatus.CONFLICT
    code = "conflict"


class JobNotFinished(Conflict):
    """Results were asked of a job that has not ended (or whose result files are still being written): ask again
    after ``retry_after`` seconds (the API sends it as ``Retry-After``)."""

    code = "job_not_finished"

    def __init__(self, message: str, *, retry_after: int = 5, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class UnsupportedMediaType(SpectraError):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class PayloadTooLarge(SpectraError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


class RecordTooLarge(SpectraError):
    """A record of a result too large for any page the API can answer (spectra.bulk.pages)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "record_too_large"


class Throttled(SpectraError):
    """The warehouse or an AWS service asked us to slow down. Consumers retry these later instead of failing the job;
    the API answers 429 with ``Retry-After`` (``retry_after`` seconds), as API Gateway's own throttling does."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    code = "throttled"
    retry_after: ClassVar[int] = 1


class TooManyWaits(SpectraError):
    """A one-call query over its tenant's cap on waits in progress (spectra/waits.py): the API answers 429 with
    ``Retry-After`` before making the job, so nothing was queued."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    code = "too_many_waits"
    retry_after: ClassVar[int] = 1


class Unavailable(SpectraError):
    """An AWS service the request needs is throttling it or failing on its side (see :func:`passing_trouble`): the
    API answers 503 with ``Retry-After``; nothing about the request is wrong, and the same request may succeed."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "unavailable"
    retry_after: ClassVar[int] = 2


class StatementRejected(SpectraError):
    """The warehouse refused or failed the statement. The job fails with the database's own message."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "statement_rejected"


class IdentityRefused(SpectraError):
    """The executor will not start a job's statement as the identity it would get. ``code`` is the job's failure code.

    Raised by :mod:`spectra.identity`; a job that meets it fails at once (retrying cannot change the answer)."""

    status = HTTPStatus.FORBIDDEN
    code = "identity_refused"


class WriteRefused(IdentityRefused):
    """The tenant's write grant shrank between the job's submission and its start, and no longer allows its statement.
    The job fails with the code the guard would answer at submission."""

    code = "sql_rejected"


class TenantInactive(IdentityRefused):
    """The job's tenant is deactivated, deleted, or deleted and created again since the job was submitted."""

    code = "tenant_inactive"


class NoIdentity(IdentityRefused):
    """The tenant has no database identity of the kind the warehouse takes (a user on a cluster, a secret on
    Serverless)."""

    code = "no_identity"


class InvalidParameters(InvalidRequest):
    """The query's parameters do not fit its SQL: a placeholder without a value, a value without a placeholder, a
    name given twice, a positional placeholder. ``details`` names the parameters."""

    code = "invalid_parameters"


class Gone(SpectraError):
    """The job's result was retained for ``ResultRetentionDays`` and is no more (its files expire with it)."""

    status = HTTPStatus.GONE
    code = "gone"


class ResultsUnavailable(Gone):
    """A bulk job's result files were given up (its job says why): asking again will not bring them."""

    code = "results_unavailable"


class ResultRefused(SpectraError):
    """A result that cannot be delivered as the job asked, whatever the retries: the job fails with it at once."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "result_refused"


class ResultTooLarge(ResultRefused):
    """A result its delivery cannot hold (``inline`` past its limits, an ``export`` of more parts than one answer can
    link to): the job fails with this (``result_too_large``) and the limits."""

    code = "result_too_large"


class DuplicateColumns(ResultRefused):
    """A Parquet export whose query named two columns alike behind a ``*`` (the files would be unreadable)."""

    code = "duplicate_columns"


_ARNS = re.compile(r"arn:aws[A-Za-z-]*:[^\s,;'\"()]*")
#: What a tenant is not told of AWS's own: ARNs (an AccessDenied names the function's role and the bucket and key it
#: was refused) and account ids.
_AWS_INTERNALS = re.compile(_ARNS.pattern + r"|(?<![0-9])[0-9]{12}(?![0-9])")


def without_arns(text: str) -> str:
    """``text`` (the warehouse's message of a failed statement, on its way to a tenant) without ARNs: Redshift names
    the service's IAM role when the role refused a COPY or UNLOAD ("Not authorized to get credentials of role
    arn:aws:iam::<account>:role/..."). Numbers stay: they may be the tenant's own values."""
    return _ARNS.sub("…", text)


def without_aws_internals(text: str) -> str:
    """``text`` (an AWS service's message, on its way to a tenant) with its ARNs and account ids left out."""
    return _AWS_INTERNALS.sub("…", text)


#: AWS's error codes for "slow down" and "not now", as botocore's standard retry mode lists them
#: (botocore/retries/standard.py: its throttled and transient codes), which it has already retried by the time a
#: caller sees one; and DynamoDB's refusal of a write that met a transaction on its item, which the project's
#: clients retry alike (:func:`spectra.dynamo.retry_passing_refusals`).
_PASSING_CODES = frozenset(
    {
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
    }
)


#: ... and its statuses: 429 besides, not every 5xx (S3's 501 NotImplemented will never pass)
_PASSING_STATUSES = frozenset({429, 500, 502, 503, 504})


def passing_trouble(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is an AWS service's passing trouble rather than a
    refusal: throttled (:class:`Throttled`, a throttling code), failing on its side (500, 502, 503, 504), or
    not answering (no connection, a reset, a timeout). botocore has already retried each; the work is tried again as
    it is, later, and never counted as a failure of the job: a DynamoDB or S3 outage of minutes failed good jobs."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, Throttled | Unavailable | AwsConnectionError | HTTPClientError):
            return True
        if isinstance(current, ClientError):
            status = current.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            code = current.response.get("Error", {}).get("Code", "")
            if code in _PASSING_CODES or status in _PASSING_STATUSES:
                return True
        current = current.__cause__
    return False


def reason_of(exc: Exception) -> str:
    """An exception as a job's error tells its tenant: a SpectraError's own message; an AWS service's refusal as its
    code and message; botocore's own failure (no connection, a timeout, no credentials: its text may name the
    endpoint, the bucket and the key) as its type alone; else the exception's type and text; with ARNs and account
    ids left out throughout (the whole exception goes to the log)."""
    if isinstance(exc, SpectraError):
        text = exc.message
    elif isinstance(exc, BotoCoreError):
        text = f"{type(exc).__name__} (the call to AWS failed before the service answered)"
    else:
        error = getattr(exc, "response", None)
        error = error.get("Error") if isinstance(error, dict) else None
        if isinstance(error, dict) and error.get("Code"):  # botocore's ClientError
            text = f"{error['Code']}: {error.get('Message') or 'no message'}"
        else:
            text = f"{type(exc).__name__}: {exc}"
    return without_aws_internals(text)


class ResultUnconvertible(SpectraError):
    """A result page that cannot be converted to the job's format (malformed CSV, text that is not UTF-8). Completion
    retries it; after ``result_max_attempts`` the job fails with this (``result_unconvertible``)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "result_unconvertible"


class StartNotRecorded(SpectraError):
    """A statement's status event came before its job recorded the statement (the executor writes the job once,
    after ExecuteStatement). Completion lets the event come back later; never shown to a tenant."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "start_not_recorded"


class StartUnderWay(SpectraError):
    """A bulk job another attempt may be starting right now (it wrote the job's plan a moment ago, and may be inside
    BatchExecuteStatement): an ending that ran nothing waits, and the executor lets the message come back later
    (:func:`spectra.bulk.lifecycle.being_started`); never shown to a tenant."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "start_under_way"
