"""Request and response bodies of the Bulk API, with Salesforce Bulk API 2.0's field names so its clients' habits
and scripts carry over."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from events import ErrorInfo
from spectra.bulk.models import (
    COLUMN_PATTERN,
    OBJECT_PATTERN,
    BulkJob,
    BulkOperation,
    BulkState,
    ColumnDelimiter,
    LineEnding,
)

# Field names are Bulk 2.0's (camelCase) on purpose.


class CreateBulkJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: str | None = Field(
        default=None, pattern=OBJECT_PATTERN, description="The table: `table` (schema public) or `schema.table`."
    )
    operation: BulkOperation
    externalIdFieldName: str | None = Field(
        default=None, pattern=COLUMN_PATTERN, description="The key column of update, upsert and delete."
    )
    columnDelimiter: ColumnDelimiter = ColumnDelimiter.COMMA
    lineEnding: LineEnding = LineEnding.LF
    contentType: str = Field(default="CSV", description="Only CSV.")
    query: str | None = Field(default=None, max_length=100_000, description="The SELECT of a query job.")


class ChangeBulkJobState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["UploadComplete", "Aborted"] = Field(description="UploadComplete (start the load) or Aborted.")


class UploadUrlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gzip: bool = Field(default=False, strict=True, description="The file will be gzip-compressed.")


class DropUploadRequest(BaseModel):
    """A presigned URL to drop a file into the ingest bucket under the caller's own prefix."""

    model_config = ConfigDict(extra="forbid")

    object: str = Field(pattern=OBJECT_PATTERN)
    filename: str | None = Field(default=None, max_length=200, pattern=r"^[A-Za-z0-9._ -]+$")
    gzip: bool = Field(default=False, strict=True)  # JSON true/false only, as the document says (not 0/1)
    operation: BulkOperation | None = None
    externalIdFieldName: str | None = Field(default=None, pattern=COLUMN_PATTERN)
    columnDelimiter: ColumnDelimiter | None = None
    lineEnding: LineEnding | None = None


class UploadUrl(BaseModel):
    url: str
    method: str = "PUT"
    key: str
    headers: dict[str, str] = Field(default_factory=dict, description="Send these headers with the PUT.")
    expires_in: int


class BulkJobInfo(BaseModel):
    """Bulk 2.0's JobInfo, plus where a dropped job came from."""

    id: str
    operation: BulkOperation
    object: str
    createdById: str
    createdDate: datetime
    systemModstamp: datetime
    state: BulkState
    externalIdFieldName: str | None = None
    concurrencyMode: str = "Parallel"
    contentType: str = "CSV"
    apiVersion: str = "1"
    jobType: str
    lineEnding: LineEnding
    columnDelimiter: ColumnDelimiter
    numberRecordsProcessed: int = 0
    numberRecordsFailed: int = 0
    retries: int = 0
    totalProcessingTime: int = 0
    errorMessage: str | None = None
    error: ErrorInfo | None = None
    contentUrl: str | None = None
    query: str | None = None
    source: str = Field(description="api (the Bulk API) or s3 (a file dropped in the ingest bucket).")
    objectKey: str | None = Field(default=None, description="The dropped file's key (S3 door).")
    resultsReady: bool = False

    @classmethod
    def of(cls, job: BulkJob) -> BulkJobInfo:
        counts = job.counts
        base = f"/v1/bulk/jobs/{job.job_id}"
        return cls(
            id=job.job_id,
            operation=job.operation,
            object=job.object,
            createdById=job.tenant_id,
            createdDate=job.created_at,
            systemModstamp=job.updated_at,
            state=job.state,
            externalIdFieldName=job.external_id_field,
            jobType="V2Query" if job.operation is BulkOperation.QUERY else "V2Ingest",
            lineEnding=job.line_ending,
            columnDelimiter=job.column_delimiter,
            numberRecordsProcessed=counts.processed if counts else 0,
            numberRecordsFailed=counts.failed if counts else 0,
            totalProcessingTime=job.processing_ms or 0,
            errorMessage=job.error.message if job.error else None,
            error=job.error,
            contentUrl=f"{base}/batches" if job.state is BulkState.OPEN else None,
            query=job.query,
            source=job.source.value,
            objectKey=job.object_key,
            resultsReady=job.results_ready,
        )


class BulkJobList(BaseModel):
    done: bool
    records: list[BulkJobInfo]
    nextRecordsUrl: str | None = None
