"""Request and response bodies of the REST API. The OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events import Delivery, ErrorInfo, JobStatus, ResultFormat
from producers.api.subscription_models import CallbackView
from spectra.jobs import Job, QueryParameter


class QueryRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"sql": "select 1 as one", "format": "json"}]},
    )

    sql: str = Field(
        min_length=1,
        description="One SQL statement: SELECT, WITH, EXPLAIN or SHOW (DML and DDL only for a tenant allowed to "
        "write, and only in its own schemas). Named parameters are written :name.",
    )
    parameters: list[QueryParameter] = Field(default_factory=list, max_length=100)
    format: ResultFormat = Field(
        default=ResultFormat.JSON,
        description="Format of the result files. json: inline rows when small (delivery auto or inline), JSON Lines "
        "files otherwise.",
    )
    delivery: Delivery = Field(
        default=Delivery.AUTO,
        description="auto: inline rows when the result is small (format json), files in S3 otherwise; inline: rows in "
        "the results response, never a file (format json; a result too big fails the job); s3: files always; "
        "export: UNLOAD from the warehouse to S3 (format csv or parquet; no parameters, no row_limit).",
    )
    row_limit: int | None = Field(
        default=None,
        ge=1,
        description="Deliver at most this many rows; the result then says truncated and the total row count.",
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="POST the job's end here (a signed webhook, as subscriptions get); https on a public address.",
    )


class JobLinks(BaseModel):
    self: str
    results: str


class JobView(BaseModel):
    job_id: str
    status: JobStatus
    format: ResultFormat
    delivery: Delivery = Delivery.AUTO
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    cancel_requested: bool = False
    row_count: int | None = None
    result_bytes: int | None = None
    error: ErrorInfo | None = None
    links: JobLinks
    callback: CallbackView | None = Field(
        default=None, description="In the answer to a submission with callback_url only: its signing secret."
    )

    @classmethod
    def of(cls, job: Job) -> JobView:
        base = f"/v1/jobs/{job.job_id}"
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
    jobs: list[JobView]
    next_token: str | None = None


class ResultFile(BaseModel):
    url: str
    rows: int
    bytes: int


class JobResults(BaseModel):
    job_id: str
    format: ResultFormat
    delivery: Delivery = Field(description="How the result was delivered: inline, s3 or export.")
    row_count: int = Field(description="Rows delivered.")
    truncated: bool = Field(default=False, description="row_limit left rows out.")
    total_row_count: int | None = Field(default=None, description="Rows the statement returned, when known.")
    columns: list[dict[str, str]]
    rows: list[list[Any]] | None = Field(
        default=None,
        description="The rows, as arrays in column order, when delivered inline. NULL is null; NaN and the "
        'infinities are the strings "NaN", "Infinity", "-Infinity"; decimals are exact strings; int8 values '
        "are numbers with every digit (past 2^53, parse them as BigInt in JavaScript).",
    )
    files: list[ResultFile]
    manifest_url: str | None = Field(default=None, description="manifest.json of the files (s3 and export).")
    expires_in: int = Field(description="Seconds the URLs stay valid.")
    expires_at: datetime | None = Field(default=None, description="When the result stops being served (then 410).")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody
