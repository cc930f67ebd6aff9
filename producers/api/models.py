"""Request and response bodies of the REST API. The OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Header
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from events import Delivery, ErrorInfo, JobStatus, ResultFormat
from producers.api.links import api_path
from producers.api.subscription_models import CallbackView
from spectra.jobs import Job
from spectra.parameters import TypedParameter
from spectra.queries import WaitTimeoutAction

#: The header a create takes to be repeatable (POST /v1/queries, /v1/bulk/jobs, /v1/subscriptions): per tenant; each
#: route says how long a key lasts and what a repeat answers.
IdempotencyKey = Annotated[str | None, Header(alias="idempotency-key", min_length=1, max_length=255)]


class QueryRequest(BaseModel):
    """One SQL statement to run as the caller's tenant."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"sql": "select 1 as one", "format": "json", "wait_timeout": 10},
                {
                    "sql": "select id, item from sales where amount > :min_amount",
                    "parameters": [{"name": "min_amount", "value": 100}],
                },
            ]
        },
    )

    sql: str = Field(
        min_length=1,
        description="One SQL statement: SELECT, WITH, EXPLAIN or SHOW (DML and DDL only for a tenant allowed to "
        "write, and only in its own schemas). Named parameters are written :name.",
        examples=["select id, item from sales where amount > :min_amount"],
    )
    parameters: list[TypedParameter] = Field(
        default_factory=list,
        max_length=100,
        description="Values for the SQL's :name placeholders: each placeholder needs one, each one needs its "
        "placeholder. Typed by their JSON type; null is SQL NULL.",
        examples=[[{"name": "min_amount", "value": 100}]],
    )
    format: ResultFormat = Field(
        default=ResultFormat.JSON,
        description="Format of the result files: json (rows inline when small, JSON Lines files), jsonl, csv or "
        "parquet.",
        examples=["json"],
    )
    delivery: Delivery = Field(
        default=Delivery.AUTO,
        description="auto: inline rows when the result is small (format json), files in S3 otherwise; inline: rows in "
        "the results response, never a file (format json; a result too big fails the job); s3: files always; "
        "export: UNLOAD from the warehouse to S3 (format csv or parquet; no parameters, no row_limit).",
        examples=["auto"],
    )
    # strict, as wait_timeout: JSON true is not 1 row, nor "5" five (lax pydantic took both)
    row_limit: StrictInt | None = Field(
        default=None,
        ge=1,
        le=2**63 - 1,  # a BIGINT: more rows than any table holds (and a number the job store can keep exactly)
        description="Deliver at most this many rows; the result then says truncated and the total row count.",
        examples=[1000],
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="POST the job's end here (a signed webhook, as subscriptions get); https on a public address.",
        examples=["https://hooks.example.com/spectra"],
    )
    wait_timeout: StrictInt = Field(
        default=0,
        ge=0,
        le=25,
        description="Seconds (0, or 1 to 25) to wait for the job to end before answering. A job that ends in time "
        "is answered 200 with its result (rows inline when small); otherwise 202 as without a wait. 0: answer at "
        "once.",
        examples=[10],
    )
    on_wait_timeout: WaitTimeoutAction = Field(
        default=WaitTimeoutAction.CONTINUE,
        description="When wait_timeout passes with the job still running: CONTINUE lets it run (202), CANCEL "
        "cancels it.",
        examples=["CONTINUE"],
    )


_JOB_ID = "j_9Qe3rWm0pX8sKc2bT5vYhA"
_WHEN = "2026-07-01T12:00:00.123456Z"


class JobLinks(BaseModel):
    """Where to follow the job."""

    self: str = Field(description="The job (GET; DELETE cancels it).", examples=[f"/v1/jobs/{_JOB_ID}"])
    results: str = Field(description="The job's result, once COMPLETED.", examples=[f"/v1/jobs/{_JOB_ID}/results"])


class JobView(BaseModel):
    """A query job: where it is in its life and what came of it."""

    job_id: str = Field(description="Opaque, URL-safe and unguessable.", examples=[_JOB_ID])
    status: JobStatus = Field(
        description="QUEUED, SUBMITTED (running in the warehouse), then COMPLETED, FAILED or CANCELLED.",
        examples=["COMPLETED"],
    )
    format: ResultFormat = Field(description="Format of the result files.", examples=["json"])
    delivery: Delivery = Field(
        default=Delivery.AUTO, description="How the result is delivered: auto, inline, s3 or export.", examples=["auto"]
    )
    created_at: datetime = Field(description="When the job was submitted (UTC).", examples=[_WHEN])
    updated_at: datetime = Field(description="When the job last changed (UTC).", examples=[_WHEN])
    submitted_at: datetime | None = Field(
        default=None, description="When its statement was started in the warehouse.", examples=[_WHEN]
    )
    completed_at: datetime | None = Field(default=None, description="When it ended.", examples=[_WHEN])
    cancel_requested: bool = Field(
        default=False,
        description="A cancel was asked of the running job: it ends CANCELLED once the warehouse aborts it (a DELETE "
        "answered 429, or a one-call answer's cancel_error, says it did not surely reach the warehouse: ask again).",
        examples=[False],
    )
    row_count: int | None = Field(
        default=None, description="Rows in the result (or rows changed by a write), once COMPLETED.", examples=[3]
    )
    result_bytes: int | None = Field(default=None, description="Size of the result files.", examples=[412])
    error: ErrorInfo | None = Field(
        default=None,
        description="Why the job FAILED: a stable code and the database's own message.",
        examples=[{"code": "statement_failed", "message": 'relation "no_such_table" does not exist'}],
    )
    links: JobLinks = Field(
        description="The job's own URLs.",
        examples=[{"self": f"/v1/jobs/{_JOB_ID}", "results": f"/v1/jobs/{_JOB_ID}/results"}],
    )
    callback: CallbackView | None = Field(
        default=None,
        description="In the answer to a submission with callback_url (and to its idempotent repeats) only: its"
        " signing secret.",
        examples=[None],
    )

    @classmethod
    def of(cls, job: Job) -> JobView:
        base = api_path(f"/v1/jobs/{job.job_id}")
        return cls(
            job_id=job.job_id,
            status=job.status,
            format=job.format,
            delivery=job.delivery,
            created_at=job.created_at,
            updated_at=job.updated_at,
            submitted_at=job.submitted_at,
            completed_at=job.completed_at,
            cancel_requested=job.cancel_requested_at is not None and not job.status.is_terminal,
            row_count=job.result.row_count if job.result else None,
            result_bytes=job.result.bytes if job.result else None,
            error=job.error,
            links=JobLinks(self=base, results=f"{base}/results"),
        )


class JobList(BaseModel):
    """One page of the caller's jobs, newest first."""

    jobs: list[JobView] = Field(description="The jobs of this page (possibly none).", examples=[[]])
    next_token: str | None = Field(
        default=None,
        description="Pass it back (with the same status and limit) for the next page; null after the last.",
        examples=[None],
    )


class ResultFile(BaseModel):
    """One file of a result."""

    url: str = Field(
        description="A presigned GET of the file, valid expires_in seconds. CSV and JSON Lines files are"
        " gzip-compressed (part-NNNNN.csv.gz, .jsonl.gz; Content-Type application/gzip), Parquet files compressed"
        " within (.parquet); an export's are UNLOAD's own parts (gzipped CSV, or Parquet).",
        examples=["https://results.s3.us-east-1.amazonaws.com/acme/j_.../part-00000.jsonl.gz?X-Amz-Signature=..."],
    )
    rows: int = Field(description="Rows in this file.", examples=[3])
    bytes: int = Field(description="Size of this file.", examples=[412])


class JobResults(BaseModel):
    """A COMPLETED job's result."""

    job_id: str = Field(description="The job.", examples=[_JOB_ID])
    format: ResultFormat = Field(description="Format of the result files.", examples=["json"])
    delivery: Delivery = Field(description="How the result was delivered: inline, s3 or export.", examples=["inline"])
    row_count: int = Field(
        description="Rows delivered; for a statement without a result set (a write), the rows it changed (and "
        "no columns or rows).",
        examples=[2],
    )
    truncated: bool = Field(default=False, description="row_limit left rows out.", examples=[False])
    total_row_count: int | None = Field(
        default=None,
        description="Rows the statement returned, when known; for a write, the rows it changed.",
        examples=[2],
    )
    columns: list[dict[str, str]] = Field(
        description="The columns in order: name and warehouse type.",
        examples=[[{"name": "id", "type": "int4"}, {"name": "item", "type": "varchar"}]],
    )
    rows: list[list[Any]] | None = Field(
        default=None,
        description="The rows, as arrays in column order, when delivered inline. NULL is null; NaN and the "
        'infinities are the strings "NaN", "Infinity", "-Infinity"; decimals are exact strings; int8 values '
        "are numbers with every digit (past 2^53, parse them as BigInt in JavaScript).",
        examples=[[[1, "anvil"], [2, "rocket skates"]]],
    )
    files: list[ResultFile] = Field(description="The result files (s3 and export).", examples=[[]])
    manifest_url: str | None = Field(
        default=None,
        description="manifest.json of the files (s3 and export).",
        examples=["https://results.s3.us-east-1.amazonaws.com/acme/j_.../manifest.json?X-Amz-Signature=..."],
    )
    expires_in: int = Field(description="Seconds the URLs stay valid.", examples=[300])
    expires_at: datetime | None = Field(
        default=None, description="When the result stops being served (then 410).", examples=["2026-07-08T12:00:00Z"]
    )


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable, for programs.", examples=["invalid_parameters"])
    message: str = Field(description="For people.", examples=["parameters do not match the SQL: no value for :id"])
    details: Any = Field(
        default=None,
        description="More, by code: the fields at fault, a limit, a job's status.",
        examples=[{"field": "parameters", "unbound": ["id"], "unused": []}],
    )


class ErrorResponse(BaseModel):
    """Every error, whoever answers it (this API or API Gateway), has this shape."""

    error: ErrorBody = Field(
        description="The error.",
        examples=[{"code": "not_found", "message": "job j_x not found", "details": None}],
    )


def response_links(parameter: str, source: str, operations: dict[str, str]) -> dict[str, Any]:
    """OpenAPI links from an answer to the operations that take its ``source`` field as their path ``parameter``
    (``{link name: operationId}``): how a client, and the API fuzzer's stateful phase, follow what was created."""
    return {
        name: {"operationId": operation, "parameters": {parameter: f"$response.body#/{source}"}}
        for name, operation in operations.items()
    }


class QueryAnswer(JobView):
    """The answer to ``POST /v1/queries``: the job, and with ``wait_timeout`` the result of a job that completed in
    time."""

    cancel_error: ErrorInfo | None = Field(
        default=None,
        description="Only when on_wait_timeout CANCEL did not surely reach the warehouse: cancel_failed when it was "
        "not sent (throttled, refused, unreachable, the job store answering too slowly to cancel in time, or a "
        "repeat answered without waiting, its tenant's waits all taken: the job runs on), cancel_unconfirmed when "
        "its outcome is unknown (its answer was lost, or the job store failed "
        "around it), statement_ended when the statement had ended before the cancel reached it (the job ends with "
        "that outcome, or CANCELLED if another client's cancel stopped it). cancel_requested says a cancel "
        "was asked for, not that it was sent; DELETE /v1/jobs/{job_id} asks again.",
        examples=[None],
    )
    results: JobResults | None = Field(
        default=None,
        description="Only when the request waited (wait_timeout) and the job COMPLETED in time: its result, with "
        "the rows inline when small.",
        examples=[
            {
                "job_id": _JOB_ID,
                "format": "json",
                "delivery": "inline",
                "row_count": 1,
                "columns": [{"name": "one", "type": "int4"}],
                "rows": [[1]],
                "files": [],
                "expires_in": 300,
            }
        ],
    )
