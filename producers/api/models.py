"""Request and response bodies of the REST API. The OpenAPI document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from events import ErrorInfo, JobStatus, ResultFormat
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
    format: ResultFormat = Field(default=ResultFormat.JSON, description="Format of the result files.")
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
    row_count: int
    columns: list[dict[str, str]]
    rows: list[list[Any]] | None = Field(default=None, description="Present when the result is small enough.")
    files: list[ResultFile]
    expires_in: int = Field(description="Seconds the file URLs stay valid.")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody
