"""Request and response bodies of the Bulk API, with Salesforce Bulk API 2.0's field names so its clients' habits
and scripts carry over."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from events import ErrorInfo
from producers.api.links import api_path
from spectra.bulk.models import (
    COLUMN_PATTERN,
    OBJECT_PATTERN,
    BulkJob,
    BulkOperation,
    BulkState,
    ColumnDelimiter,
    JobType,
    LineEnding,
)
from spectra.bulk.service import NewJob

# Field names are Bulk 2.0's (camelCase) on purpose.


_BULK_ID = "b_Xk2mQ8rT4vW1zN6pL3sJ9a"
_WHEN = "2026-07-01T12:00:00Z"
_OBJECT = Field(
    pattern=OBJECT_PATTERN, description="The table: `table` (schema public) or `schema.table`.", examples=["contacts"]
)
_EXTERNAL_ID = Field(
    default=None,
    pattern=COLUMN_PATTERN,
    description="The key column of update, upsert and delete: upsert must name one; update and delete key on `id` "
    "when it is left out (Bulk 2.0 keys them on Id).",
    examples=["email"],
)


class CreateBulkJob(BaseModel):
    """A bulk load (insert, update, upsert, delete into a table) or export (query)."""

    # Whole examples, one per kind of job: without them, Swagger UI's "Try it out" put every field's example into one
    # body (an upsert with a query), which the API refuses.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"object": "contacts", "operation": "upsert", "externalIdFieldName": "email"},
                {"operation": "query", "query": "select email, name from contacts"},
            ]
        },
    )

    object: str | None = Field(
        default=None,
        pattern=OBJECT_PATTERN,
        description="The table: `table` (schema public) or `schema.table`. A query job that names none is named by"
        " the first table its FROM reads.",
        examples=["contacts"],
    )
    operation: BulkOperation = Field(description="insert, update, upsert, delete or query.", examples=["upsert"])
    externalIdFieldName: str | None = _EXTERNAL_ID
    # null is the default, as an unset field, which clients that write every field of a class send: a create with
    # "lineEnding": null is not a 400
    columnDelimiter: ColumnDelimiter | None = Field(
        default=ColumnDelimiter.COMMA, description="The field separator of the CSV (null: COMMA).", examples=["COMMA"]
    )
    lineEnding: LineEnding | None = Field(
        default=LineEnding.LF, description="The CSV's line ending (null: LF).", examples=["LF"]
    )
    contentType: str | None = Field(
        default="CSV",
        description="CSV, or JSON for an ingest job: its batches are JSON records (PUT .../batches), stored as CSV"
        " (null: CSV).",
        examples=["CSV"],
        json_schema_extra={"enum": ["CSV", "JSON", None]},  # a str, so that another value is the service's own 400
    )
    query: str | None = Field(
        default=None,
        max_length=100_000,
        description="The SELECT of a query job.",
        examples=["select email, name from contacts"],
    )
    # Bulk 2.0's, sent by its clients' scripts; unknown fields are refused, so it is named here to be ignored
    assignmentRuleId: str | None = Field(
        default=None,
        max_length=64,
        description="Accepted and ignored (Bulk 2.0's: a warehouse table has no assignment rules).",
        examples=[None],
    )

    def new_job(self) -> NewJob:
        return NewJob(
            object=self.object,
            operation=self.operation,
            external_id_field=self.externalIdFieldName,
            column_delimiter=self.columnDelimiter or ColumnDelimiter.COMMA,
            line_ending=self.lineEnding or LineEnding.LF,
            content_type="CSV" if self.contentType is None else self.contentType,  # "" stays the service's 400
            query=self.query,
        )


class ChangeBulkJobState(BaseModel):
    """Close a job for loading, or abort it."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["UploadComplete", "Aborted"] = Field(
        description="UploadComplete (start the load) or Aborted.", examples=["UploadComplete"]
    )


class UploadUrlRequest(BaseModel):
    """A presigned URL for one more batch of an Open job."""

    model_config = ConfigDict(extra="forbid")

    gzip: bool = Field(default=False, strict=True, description="The file will be gzip-compressed.", examples=[False])


class DropUploadRequest(BaseModel):
    """A presigned URL to drop a file into the ingest bucket under the caller's own prefix."""

    model_config = ConfigDict(extra="forbid")

    object: str = _OBJECT
    filename: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9._ -]+$",
        description="The file's name (default: a timestamp and random digits); .csv (or .csv.gz with gzip) is "
        "added unless it ends so, in any case.",
        examples=["new-contacts.csv"],
    )
    # JSON true/false only, as the document says (not 0/1)
    gzip: bool = Field(default=False, strict=True, description="The file will be gzip-compressed.", examples=[False])
    # a load only: a dropped file cannot run a query (spectra.bulk.drops refuses one)
    operation: Literal["insert", "update", "upsert", "delete"] | None = Field(
        default=None,
        description="What the load does (default insert); upsert needs externalIdFieldName, update and delete key on "
        "`id` when it names none (as Bulk 2.0 keys them on Id).",
        examples=["insert"],
    )
    externalIdFieldName: str | None = _EXTERNAL_ID
    columnDelimiter: ColumnDelimiter | None = Field(
        default=None, description="The field separator (default COMMA).", examples=["COMMA"]
    )
    lineEnding: LineEnding | None = Field(default=None, description="The line ending (default LF).", examples=["LF"])


class UploadUrl(BaseModel):
    """Where and how to PUT a file."""

    url: str = Field(
        description="A presigned SigV4 URL.",
        examples=["https://ingest.s3.us-east-1.amazonaws.com/acme/contacts/new.csv?X-Amz-Signature=..."],
    )
    method: str = Field(default="PUT", description="The HTTP method to use.", examples=["PUT"])
    key: str = Field(description="The object's key in its bucket.", examples=["acme/contacts/new-contacts.csv"])
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Send these headers with the PUT.",
        examples=[{"x-amz-meta-operation": "upsert"}],
    )
    expires_in: int = Field(description="Seconds the URL stays valid.", examples=[900])


class BulkJobInfo(BaseModel):
    """Bulk 2.0's JobInfo, plus where a dropped job came from."""

    id: str = Field(description="The bulk job's id.", examples=[_BULK_ID])
    operation: BulkOperation = Field(description="What the job does.", examples=["upsert"])
    object: str = Field(
        description="The table (a query job's, unless it named one: the first table its FROM reads, or empty).",
        examples=["contacts"],
    )
    createdById: str = Field(description="The tenant that created the job.", examples=["acme"])
    createdDate: datetime = Field(description="When the job was created.", examples=[_WHEN])
    systemModstamp: datetime = Field(description="When the job last changed.", examples=[_WHEN])
    state: BulkState = Field(
        description="Where the job is in its life. A JobComplete ingest job shows InProgress until its result files "
        "are written (or given up: 410), so that a client can fetch them once it sees JobComplete; its Bulk Job "
        "Completed event goes out when its load commits, which for a large or gzip job is before that.",
        examples=["JobComplete"],
    )
    externalIdFieldName: str | None = Field(default=None, description="The key column.", examples=["email"])
    concurrencyMode: str = Field(default="Parallel", description="Always Parallel (Bulk 2.0's).", examples=["Parallel"])
    contentType: str = Field(
        default="CSV",
        description="CSV, or JSON (batches sent as JSON records; results are CSV).",
        examples=["CSV"],
        json_schema_extra={"enum": ["CSV", "JSON"]},
    )
    # a number, as Bulk 2.0's (58.0): typed clients decode it as one, and a string failed them
    apiVersion: float = Field(default=1.0, description="This API's version, a number (Bulk 2.0's).", examples=[1.0])
    jobType: JobType = Field(description="V2Ingest or V2Query.", examples=["V2Ingest"])
    lineEnding: LineEnding = Field(description="The CSV's line ending.", examples=["LF"])
    columnDelimiter: ColumnDelimiter = Field(description="The CSV's field separator.", examples=["COMMA"])
    numberRecordsProcessed: int = Field(default=0, description="Rows processed (loaded + failed).", examples=[1000])
    numberRecordsFailed: int = Field(default=0, description="Rows refused.", examples=[2])
    retries: int = Field(default=0, description="Always 0.", examples=[0])
    totalProcessingTime: int = Field(default=0, description="Milliseconds the load took.", examples=[5321])
    apiActiveProcessingTime: int = Field(
        default=0, description="Milliseconds spent processing: totalProcessingTime (Bulk 2.0's).", examples=[5321]
    )
    apexProcessingTime: int = Field(
        default=0, description="Always 0: no triggers run (Bulk 2.0's, for its clients).", examples=[0]
    )
    errorMessage: str | None = Field(
        default=None,
        description="Why the job failed; on a JobComplete job, why its result files do not list every record counted.",
        examples=[None],
    )
    error: ErrorInfo | None = Field(
        default=None,
        description="errorMessage with a stable code (results_mismatch on a JobComplete job).",
        examples=[None],
    )
    contentUrl: str | None = Field(
        default=None,
        description="Where to PUT batches, while the job is Open.",
        examples=[f"/v1/bulk/jobs/{_BULK_ID}/batches"],
    )
    query: str | None = Field(default=None, description="The query of a query job.", examples=[None])
    source: str = Field(description="api (the Bulk API) or s3 (a file dropped in the ingest bucket).", examples=["api"])
    objectKey: str | None = Field(default=None, description="The dropped file's key (S3 door).", examples=[None])
    resultsReady: bool = Field(
        default=False, description="The result files are written and can be read.", examples=[True]
    )

    @classmethod
    def of(cls, job: BulkJob) -> BulkJobInfo:
        counts = job.counts
        base = api_path(f"/v1/bulk/jobs/{job.job_id}")
        return cls(
            id=job.job_id,
            operation=job.operation,
            object=job.object,
            createdById=job.tenant_id,
            createdDate=job.created_at,
            systemModstamp=job.updated_at,
            state=job.shown_state,  # InProgress until a JobComplete ingest job's result files can be read
            externalIdFieldName=job.external_id_field,
            jobType=JobType.of(job.operation),
            lineEnding=job.line_ending,
            contentType=job.content_type,
            columnDelimiter=job.column_delimiter,
            numberRecordsProcessed=counts.processed if counts else 0,
            numberRecordsFailed=counts.failed if counts else 0,
            totalProcessingTime=job.processing_ms or 0,
            apiActiveProcessingTime=job.processing_ms or 0,
            errorMessage=job.error.message if job.error else None,
            error=job.error,
            contentUrl=f"{base}/batches" if job.state is BulkState.OPEN else None,
            query=job.query,
            source=job.source.value,
            objectKey=job.object_key,
            resultsReady=job.results_ready,
        )


class BulkJobList(BaseModel):
    """One page of the caller's bulk jobs."""

    done: bool = Field(description="This is the last page.", examples=[True])
    records: list[BulkJobInfo] = Field(description="The jobs of this page.", examples=[[]])
    nextRecordsUrl: str | None = Field(
        default=None, description="The next page's URL; null after the last.", examples=[None]
    )
