"""Message and event models shared by producers and consumers."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: ``source`` of every event the project publishes on its own bus.
EVENT_SOURCE = "spectra"


class JobStatus(StrEnum):
    """Query job states: QUEUED → SUBMITTED → COMPLETED | FAILED | CANCELLED."""

    QUEUED = "QUEUED"
    SUBMITTED = "SUBMITTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class ResultFormat(StrEnum):
    """Format of a query's result files: json (JSON Lines files, rows inline when small), jsonl, csv, parquet."""

    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


class Delivery(StrEnum):
    """How a query's result reaches the client (``POST /v1/queries`` ``delivery``; README, "Results").

    ``auto``: rows inline in the results response when small, files in S3 otherwise; ``inline``: rows inline, never
    a file (too big fails the job); ``s3``: files always; ``export``: UNLOAD straight from the warehouse to S3.
    """

    AUTO = "auto"
    INLINE = "inline"
    S3 = "s3"
    EXPORT = "export"


class StatementState(StrEnum):
    """Terminal states the Data API announces in its status-change events."""

    FINISHED = "FINISHED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"


class _Contract(BaseModel):
    """A message or event the project's functions exchange. Read with fields it does not know, kept: a deploy
    replaces functions one at a time, so a message or event written by a newer producer (or, after a rollback, an
    older consumer's reader) meets a reader that does not know a field added since. Forbidden, every webhook delivery
    queued by a notifier that added ``subscription_created_at`` would fail the older delivery function five times into
    its dead-letter queue; ignored, a reader that sends the message on (a delivery's retry, a job's delayed retry) would
    drop the field for the newer reader after it. Fields are added within a version; a change that breaks a reader makes
    a new one."""

    model_config = ConfigDict(extra="allow", frozen=True)


class JobQueuedMessage(_Contract):
    """Body of a message on the jobs queue: "run this job". The job itself lives in the job store.

    ``job``: the job as the API recorded it (``spectra.jobs.Job`` as JSON), so the executor's first delivery starts
    the statement without reading the job store. Only the API sends it, with a job it just wrote; messages sent by
    others (a slot freed for a waiting job, the reconciler) and jobs too large for a message carry ids only, and the
    executor reads the job. A redelivered message is never trusted for it either (spectra/lifecycle.py)."""

    version: Literal["1"] = "1"
    job_id: str = Field(min_length=1, max_length=64)
    tenant_id: str = Field(min_length=1, max_length=128)
    correlation_id: str | None = None
    job: dict[str, Any] | None = None


class StatementStatusChange(BaseModel):
    """``detail`` of the Data API's "Redshift Data Statement Status Change" event, as AWS documents it."""

    model_config = ConfigDict(extra="allow")

    principal: str | None = None
    statementName: str | None = None
    statementId: str
    redshiftQueryId: int | None = None
    state: StatementState
    rows: int | None = None
    expireAt: int | None = None


class StatementStatusChangeEvent(EventBridgeModel):
    """The whole EventBridge event (source ``aws.redshift-data``) as it arrives in the completion queue.

    ``account`` is optional because moto leaves it out of events it delivers to SQS; nothing here reads it.
    """

    source: Literal["aws.redshift-data"]
    account: str | None = None
    detail: StatementStatusChange


#: The most characters of an error message a job, its events and its notifications carry. A database's message can
#: echo the value it choked on (PostgreSQL repeats a whole bad literal), and a tenant's 100 KB of SQL would then make an
#: event too large for EventBridge, SNS or a batch of webhook deliveries (each escapes it again): the head of the
#: message says what went wrong; the statement and its values are the tenant's own.
ERROR_MESSAGE_MAX_CHARS = 2000
_CUT = " [...]"


class ErrorInfo(_Contract):
    """Why a job failed: a stable code for programs and a message for people (the database's own, when it said).
    A longer ``message`` is cut to its first :data:`ERROR_MESSAGE_MAX_CHARS` characters, ending ``[...]``.

    A field it does not know is read and dropped, not kept as messages keep theirs: an error is answered to tenants
    (a job's ``error``, ``cancel_error``) and documented as exactly these two fields, and what a newer version stored
    beside them is not meant for this version's answers."""

    # documented closed (the API's answers hold no other field); the published event schemas open it again
    model_config = ConfigDict(extra="ignore", frozen=True, json_schema_extra={"additionalProperties": False})

    code: str = Field(description="Stable, for programs.", examples=["statement_failed"])
    message: str = Field(
        description="For people; at most 2,000 characters (a longer one is cut, ending ' [...]').",
        max_length=ERROR_MESSAGE_MAX_CHARS,
        examples=['relation "no_such_table" does not exist'],
    )

    @field_validator("message", mode="before")
    @classmethod
    def _cut(cls, value: object) -> object:
        if isinstance(value, str) and len(value) > ERROR_MESSAGE_MAX_CHARS:
            return value[: ERROR_MESSAGE_MAX_CHARS - len(_CUT)] + _CUT
        return value


JOB_EVENT_DETAIL_TYPES: dict[JobStatus, str] = {
    JobStatus.COMPLETED: "Job Completed",
    JobStatus.FAILED: "Job Failed",
    JobStatus.CANCELLED: "Job Cancelled",
}


class JobEventDetail(_Contract):
    """``detail`` of the project's "Job Completed" / "Job Failed" / "Job Cancelled" events (source ``spectra``).

    Subscribers match on ``detail-type`` and may filter on ``tenant_id``. Result files are not presigned here: events
    outlive presigned URLs, so subscribers fetch ``GET /v1/jobs/{job_id}/results`` (or read ``result_location`` with
    their own S3 access).
    """

    version: Literal["1"] = "1"
    job_id: str
    tenant_id: str
    #: the generation of the tenant that made the job (spectra/tenants.py): a tenant deleted and created again under
    #: the same id is another tenant, and the notifier delivers the event to this generation's subscriptions only.
    #: Absent in events published before generations were carried (and for jobs made before generations existed).
    tenant_generation: str | None = None
    status: Literal[JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED]  # a job event is about its end
    format: ResultFormat
    #: the rows delivered: with ``truncated``, the ``row_limit`` the job asked for cut the result, and
    #: ``total_row_count`` is how many the statement returned (as ``GET /v1/jobs/{job_id}/results`` says)
    row_count: int | None = None
    truncated: bool = False
    total_row_count: int | None = None
    result_bytes: int | None = None
    result_location: str | None = None
    error: ErrorInfo | None = None
    created_at: datetime
    submitted_at: datetime | None = None
    completed_at: datetime
    duration_ms: int | None = None
    correlation_id: str | None = None


class BulkJobQueuedMessage(_Contract):
    """Body of a jobs-queue message for a bulk job ("start this load or export"); ``kind`` tells it from a query's."""

    version: Literal["1"] = "1"
    kind: Literal["bulk"] = "bulk"
    job_id: str = Field(min_length=1, max_length=64)
    tenant_id: str = Field(min_length=1, max_length=128)
    correlation_id: str | None = None


class BulkResultsRequested(_Contract):
    """Body of a bulk-results-queue message: "write the result files of this finished ingest job"."""

    version: Literal["1"] = "1"
    job_id: str = Field(min_length=1, max_length=64)
    tenant_id: str = Field(min_length=1, max_length=128)


def parse_job_message(body: str) -> JobQueuedMessage | BulkJobQueuedMessage:
    """A jobs-queue message of either kind (a message without ``kind`` is a query job's, as before bulk existed)."""
    data = json.loads(body)
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "bulk":
        return BulkJobQueuedMessage.model_validate(data)
    if kind is not None:  # a kind of a newer version: left to fail into the DLQ, for a redrive once it is deployed
        raise ValueError(f"a jobs-queue message of a kind this version does not run: {kind!r}")
    return JobQueuedMessage.model_validate(data)


BULK_EVENT_DETAIL_TYPES: dict[str, str] = {
    "JobComplete": "Bulk Job Completed",
    "Failed": "Bulk Job Failed",
    "Aborted": "Bulk Job Aborted",
}


class BulkJobEventDetail(_Contract):
    """``detail`` of "Bulk Job Completed" / "Bulk Job Failed" / "Bulk Job Aborted" (source ``spectra``): a bulk job of
    either door (API or S3 drop) ended. Counts follow Bulk 2.0: processed = succeeded + failed."""

    version: Literal["1"] = "1"
    job_id: str
    tenant_id: str
    #: the generation of the tenant that made the job (spectra/tenants.py): a tenant deleted and created again under
    #: the same id is another tenant, and the notifier delivers the event to this generation's subscriptions only.
    #: Absent in events published before generations were carried (and for jobs made before generations existed).
    tenant_generation: str | None = None
    object: str
    operation: str
    state: Literal["JobComplete", "Failed", "Aborted"]  # a bulk job event is about its end
    source: str
    object_key: str | None = None
    number_records_processed: int = 0
    number_records_failed: int = 0
    error: ErrorInfo | None = None
    created_at: datetime
    completed_at: datetime
    correlation_id: str | None = None


class _S3Bucket(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str


class _S3Object(BaseModel):
    model_config = ConfigDict(extra="allow")

    key: str  # URL-encoded, as S3 sends it ("a b.csv" arrives as "a+b.csv")
    size: int = 0
    eTag: str = ""
    versionId: str | None = None
    sequencer: str | None = None  # distinct per write of the key, the same in every copy of one event


class _S3Entity(BaseModel):
    model_config = ConfigDict(extra="allow")

    bucket: _S3Bucket
    object: _S3Object


class S3EventRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    eventName: str
    eventTime: datetime | None = None  # when S3 took the write (ISO 8601, UTC)
    s3: _S3Entity


class S3Notification(BaseModel):
    """An S3 event notification as it arrives in the ingest queue (S3 → SQS), in AWS's documented shape. S3 also
    sends one ``s3:TestEvent`` without ``Records`` when the notification is configured."""

    model_config = ConfigDict(extra="allow")

    Records: list[S3EventRecord] = Field(default_factory=list)

    @model_validator(mode="after")
    def _records_or_the_test_event(self) -> S3Notification:
        """A body with neither is no S3 notification (sent by hand, or by a misconfigured source: an SNS envelope, an
        EventBridge event): refused, so it fails into the ingest DLQ, where ``dlq show`` and its alarm tell of it,
        instead of being deleted as if it were the test event, whatever file it was about."""
        if not self.Records and (self.model_extra or {}).get("Event") != "s3:TestEvent":
            raise ValueError("neither Records nor the s3:TestEvent")
        return self


# -- notifications (spectra/notify) ----------------------------------------------------------------------------------

#: detail-type of the event that says a webhook subscription was disabled (it failed too often, or answered 410).
SUBSCRIPTION_DISABLED = "Subscription Disabled"

#: Every detail-type the project publishes on its bus: what a webhook subscription may ask for.
SUBSCRIBABLE_EVENT_TYPES: tuple[str, ...] = (
    *JOB_EVENT_DETAIL_TYPES.values(),
    *BULK_EVENT_DETAIL_TYPES.values(),
    SUBSCRIPTION_DISABLED,
)

#: The terminal job events (query and bulk): what the SNS topic receives.
TERMINAL_JOB_EVENT_TYPES: frozenset[str] = frozenset(
    {*JOB_EVENT_DETAIL_TYPES.values(), *BULK_EVENT_DETAIL_TYPES.values()}
)


class SubscriptionDisabledDetail(_Contract):
    """``detail`` of "Subscription Disabled" (source ``spectra``): the notifier stopped delivering to a tenant's
    webhook, because it failed ``consecutive_failures`` deliveries in a row or answered 410 Gone. ``resources`` holds
    the subscription id. Delete the subscription and create it again once the endpoint works."""

    version: Literal["1"] = "1"
    subscription_id: str
    tenant_id: str
    #: the generation of the tenant that made the subscription (spectra/tenants.py): the event goes to that
    #: generation's subscriptions only, never to a tenant deleted and created again under the same id
    tenant_generation: str | None = None
    #: the origin of the subscription's URL: scheme, host and port, without the path or query string (either may
    #: carry a token the receiver checks, as chat services' webhook URLs do in their path)
    url: str
    reason: Literal["consecutive_failures", "gone"]
    message: str
    consecutive_failures: int
    last_status: int | None = None
    disabled_at: datetime


class ProjectEvent(EventBridgeModel):
    """Any event of the project's bus as the notifier receives it (EventBridge → SQS): the envelope, with the detail
    kept as sent so a webhook carries exactly what the bus carried. ``account`` is optional: moto leaves it out."""

    source: Literal["spectra"]
    account: str | None = None
    detail: dict[str, Any]


class WebhookDelivery(_Contract):
    """Body of a message on the webhook delivery queue: "POST this event to this subscription".

    ``webhook_id`` is derived from the subscription and the event, so every attempt (and a second copy of the same
    event) carries the same ``webhook-id`` header and receivers can deduplicate. ``payload`` is the exact body sent.
    ``not_before``: a retry waits until then (SQS delays a message 15 minutes at most, so longer waits take hops).
    """

    version: Literal["1"] = "1"
    webhook_id: str = Field(min_length=1, max_length=64)
    tenant_id: str = Field(min_length=1, max_length=128)
    subscription_id: str = Field(min_length=1, max_length=128)
    event_type: str
    payload: str
    attempt: int = Field(default=1, ge=1)
    not_before: datetime | None = None
    #: when the subscription was made: a subscription made again under the same id (an Idempotency-Key names it)
    #: after this one was deleted gets none of this one's deliveries. Absent in messages queued before it was carried.
    subscription_created_at: datetime | None = None

    @property
    def job_id(self) -> str | None:
        """The job the delivered event is about (``data.job_id`` of the payload), for the logs."""
        try:
            data = json.loads(self.payload).get("data")
        except (ValueError, AttributeError):
            return None
        job_id = data.get("job_id") if isinstance(data, dict) else None
        return job_id if isinstance(job_id, str) else None

    last_error: str | None = None
