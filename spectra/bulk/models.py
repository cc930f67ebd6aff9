"""The bulk job: Salesforce Bulk API 2.0's workflow and names, on a Redshift table.

States (Bulk 2.0's): ``Open`` (the tenant uploads batches) → ``UploadComplete`` (queued) → ``InProgress`` (its load
or UNLOAD runs in the warehouse) → ``JobComplete`` | ``Failed`` | ``Aborted``. A query job starts at
``UploadComplete``; a job made by an S3 drop too (its one file is already uploaded).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from events import ErrorInfo


class BulkState(StrEnum):
    """Bulk 2.0's job states: Open → UploadComplete → InProgress → JobComplete | Failed | Aborted."""

    OPEN = "Open"
    UPLOAD_COMPLETE = "UploadComplete"
    IN_PROGRESS = "InProgress"
    JOB_COMPLETE = "JobComplete"
    FAILED = "Failed"
    ABORTED = "Aborted"

    @property
    def is_terminal(self) -> bool:
        return self in (BulkState.JOB_COMPLETE, BulkState.FAILED, BulkState.ABORTED)


#: Legal moves; the store's conditional writes refuse anything else, so a repeated message is a no-op.
BULK_TRANSITIONS: dict[BulkState, frozenset[BulkState]] = {
    BulkState.OPEN: frozenset({BulkState.UPLOAD_COMPLETE, BulkState.ABORTED, BulkState.FAILED}),
    BulkState.UPLOAD_COMPLETE: frozenset({BulkState.IN_PROGRESS, BulkState.ABORTED, BulkState.FAILED}),
    BulkState.IN_PROGRESS: frozenset({BulkState.JOB_COMPLETE, BulkState.FAILED, BulkState.ABORTED}),
    BulkState.JOB_COMPLETE: frozenset(),
    BulkState.FAILED: frozenset(),
    BulkState.ABORTED: frozenset(),
}


def bulk_sources_of(target: BulkState) -> frozenset[BulkState]:
    return frozenset(state for state, targets in BULK_TRANSITIONS.items() if target in targets)


class BulkOperation(StrEnum):
    """What a bulk job does: load rows (insert, update, upsert, delete) or export a query's rows (query)."""

    INSERT = "insert"
    UPDATE = "update"
    UPSERT = "upsert"
    DELETE = "delete"
    QUERY = "query"

    @property
    def needs_external_id(self) -> bool:
        return self in (BulkOperation.UPDATE, BulkOperation.UPSERT, BulkOperation.DELETE)

    @property
    def default_external_id(self) -> str | None:
        """The key column of a job that names none: ``id`` for update and delete, which Bulk 2.0 keys on the record's
        Id (its clients send no externalIdFieldName for them, and a header ``Id`` folds to ``id``); none for upsert,
        which Bulk 2.0 too asks to name one."""
        return "id" if self in (BulkOperation.UPDATE, BulkOperation.DELETE) else None


class JobType(StrEnum):
    """Bulk 2.0's two kinds of job: loads (insert, update, upsert, delete) and query jobs."""

    V2_INGEST = "V2Ingest"
    V2_QUERY = "V2Query"

    @classmethod
    def of(cls, operation: BulkOperation) -> JobType:
        return cls.V2_QUERY if operation is BulkOperation.QUERY else cls.V2_INGEST


class ColumnDelimiter(StrEnum):
    """Bulk 2.0's names for the field separator."""

    COMMA = "COMMA"
    TAB = "TAB"
    PIPE = "PIPE"
    SEMICOLON = "SEMICOLON"
    CARET = "CARET"
    BACKQUOTE = "BACKQUOTE"

    @property
    def char(self) -> str:
        return {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}[self.value]


class LineEnding(StrEnum):
    """Bulk 2.0's names for the line separator."""

    LF = "LF"
    CRLF = "CRLF"

    @property
    def chars(self) -> str:
        return "\r\n" if self is LineEnding.CRLF else "\n"


class JobSource(StrEnum):
    """Which door the job came through."""

    API = "api"
    S3_DROP = "s3"


#: A table as the tenant names it: ``table`` (schema ``public``) or ``schema.table``, plain identifiers only, so the
#: name can be quoted into SQL and an S3 key without ambiguity.
OBJECT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,126}(\.[A-Za-z_][A-Za-z0-9_]{0,126})?$"
_OBJECT = re.compile(OBJECT_PATTERN)
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,126}$"


def split_object(name: str) -> tuple[str, str]:
    """``(schema, table)``, lower-cased as the warehouse folds unquoted names; unqualified names are in ``public``."""
    if not _OBJECT.fullmatch(name):  # match's $ would take "accounts\n" too
        raise ValueError(f"{name!r} is not a table name (letters, digits and _ , optionally schema.table)")
    schema, _, table = name.lower().rpartition(".")
    return schema or "public", table


BULK_JOB_ID_PREFIX = "b_"


def is_bulk_job_id(value: str) -> bool:
    """Bulk job ids (and so their statements' names) start ``b_``, query job ids ``j_``."""
    return value.startswith(BULK_JOB_ID_PREFIX)


def new_bulk_job_id() -> str:
    """Opaque, URL-safe, unguessable; the ``b_`` prefix routes its Data API events to the bulk completion path."""
    return BULK_JOB_ID_PREFIX + secrets.token_urlsafe(16)


class SourceFile(BaseModel):
    """One uploaded CSV file of a job: an S3 object (gzip when ``gzip``)."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    key: str
    size: int = 0
    gzip: bool = False
    #: a dropped file's ETag as its notification gave it: the ingest bucket keeps no versions, so a newer upload to
    #: the key replaces the file, and the job is loaded only while the key still holds what was dropped
    etag: str | None = None
    #: when S3 took the dropped write, as its notification gave it: the same bytes put again later (the same ETag)
    #: are told apart by the object's time, however late the first write's event is handled
    written_at: datetime | None = None
    #: a dropped file put through a drop URL (``POST /v1/bulk/uploads``), whose signed options no sidecar overrides
    through_drop_url: bool = False

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class KeyedBatch(BaseModel):
    """A batch stored, or an upload URL issued, under a client's ``Idempotency-Key`` (``BulkJob.keyed_batches``):
    where it is, and a digest of what was asked, so that a repeat is told from another request under the same key."""

    model_config = ConfigDict(frozen=True)

    key: str  # the batch's key in the results bucket
    digest: str  # sha256 of the request (spectra.bulk.uploads._request_digest)


class LoadPlan(BaseModel):
    """What the executor decided to run, kept so completion can read each sub-statement's answer. A query job's
    (an UNLOAD, no sub-statements to read) holds only ``planned_at``."""

    model_config = ConfigDict(frozen=True)

    columns: list[str]  # the file's columns, in file order, lower-cased
    #: the same names as the first file writes them, for the result files' header (Bulk 2.0 repeats the fields as
    #: uploaded); empty in plans recorded before it was kept: ``columns`` then
    header: list[str] = Field(default_factory=list)
    #: per COPY: the index (in the batch) of the COPY and of the SELECT of its rejected rows
    copies: list[tuple[int, int]] = Field(default_factory=list)
    #: per COPY: the index of its ``SELECT pg_last_copy_count()`` (empty in plans recorded before it was asked: their
    #: COPYs' ResultRows are read instead)
    loaded: list[int] = Field(default_factory=list)
    applied_index: int | None = None  # SELECT count(*) of the rows applied to the target (update/upsert/delete)
    updated_index: int | None = None  # upsert: SELECT count(*) of the rows that matched an existing row
    outcome_index: int | None = None  # SELECT of per-id outcomes (failed ids, and upsert's smaller created set)
    #: set: that SELECT is an UNLOAD to this S3 prefix (CSV parts with a header line, ``<prefix>manifest``)
    outcome_url: str | None = None
    #: the warehouse type of the external id column (DescribeTable's ``typeName``), to match ids as it prints them
    external_id_type: str | None = None
    #: its declared length (a sized character type's: DescribeTable's ``length``, else ``precision``)
    external_id_length: int | None = None
    #: a decimal type's scale (DescribeTable's ``scale``): ``4`` is the id ``4.00`` in a NUMERIC(10,2)
    external_id_scale: int | None = None
    #: when the executor wrote the plan, its last look before starting the statement (None in plans recorded before
    #: it was kept): while it is recent, that executor may be inside (Batch)ExecuteStatement
    planned_at: datetime | None = None


class BulkCounts(BaseModel):
    """Every input record counted once: processed = succeeded + failed."""

    model_config = ConfigDict(frozen=True)

    processed: int = 0
    failed: int = 0
    created: int | None = None  # upsert: rows inserted (the rest of the succeeded ones were updated)


class ExportFile(BaseModel):
    """A part file a query job's UNLOAD wrote, with its record count (MANIFEST VERBOSE)."""

    model_config = ConfigDict(frozen=True)

    key: str
    rows: int
    bytes: int


class BulkJob(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    tenant_id: str
    #: the submitting tenant's generation (spectra.tenants): a re-created tenant does not inherit queued jobs
    tenant_generation: str | None = None
    db_user: str = ""  # for the record; the identity is read from the tenant when the job starts (spectra.identity)
    object: str
    operation: BulkOperation
    external_id_field: str | None = None
    column_delimiter: ColumnDelimiter = ColumnDelimiter.COMMA
    line_ending: LineEnding = LineEnding.LF
    content_type: str = "CSV"
    query: str | None = None
    source: JobSource = JobSource.API
    object_key: str | None = None  # the dropped object (S3 door)
    state: BulkState = BulkState.OPEN
    files: list[SourceFile] = Field(default_factory=list)
    #: batches the API has stored, and upload URLs it has issued, for the job while it was Open (at most
    #: ``bulk_max_files``; spectra.bulk.uploads.upload_batch and upload_url)
    uploads: int = 0
    #: the batches and upload URLs of ``uploads`` asked for with an ``Idempotency-Key``, by the key's name
    #: (:meth:`spectra.tenants.Caller.keyed_id`): recorded in the write that counts them, so a repeat is counted once
    keyed_batches: dict[str, KeyedBatch] = Field(default_factory=dict)
    #: keys of batches stored while it was Open but refused their count (a keyed repeat's second copy, one past the
    #: limit) and taken back (spectra.bulk.uploads._take_back): withdrawn in a write a close is conditional on, so no
    #: close lists one between the take-back's look at the job and its delete
    withdrawn_batches: list[str] = Field(default_factory=list)
    #: failed attempts at recording the statement's outcome (spectra.bulk.lifecycle._failed_attempt)
    result_attempts: int = 0
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None = None  # when it became UploadComplete
    started_at: datetime | None = None
    completed_at: datetime | None = None
    statement_id: str | None = None
    plan: LoadPlan | None = None
    counts: BulkCounts | None = None
    export_files: list[ExportFile] = Field(default_factory=list)
    export_columns: list[str] = Field(default_factory=list)
    #: the field separator a query job's UNLOAD wrote its parts with (its columnDelimiter); None for jobs unloaded
    #: before the parts followed it, in commas: their pages keep commas in the header line too
    export_delimiter: ColumnDelimiter | None = None
    results_ready: bool = False
    #: the run whose result files the routes serve, under ``results/<attempt>/`` (spectra.bulk.files.results_key):
    #: each run that writes them writes under an attempt of its own, and the job's write that records it is the
    #: commit, so no run's files ever land over another's. None: written before attempts (``results/`` itself), or
    #: not written
    results_attempt: str | None = None
    #: why its result files were given up (spectra.bulk.lifecycle.give_up_results): the result routes answer 410
    results_unavailable: str | None = None
    #: the bulk results run writing its result files holds them until then (epoch seconds): a lease longer than the
    #: function may run, so that a repeated request waits rather than writes beside it (spectra.bulk.lifecycle)
    results_writer_until: int | None = None
    #: runs that took that lease and neither finished nor gave it back: each ran out of time (or died)
    results_writers_lost: int = 0
    error: ErrorInfo | None = None
    abort_requested_at: datetime | None = None
    event_published: bool = False
    correlation_id: str | None = None

    @property
    def results_pending(self) -> bool:
        """An ingest job ended ``JobComplete`` whose result files are neither written nor given up yet: a large or
        gzip job's, which the bulk results function writes after its load commits
        (:func:`spectra.bulk.lifecycle.finish_bulk_job`)."""
        return (
            self.state is BulkState.JOB_COMPLETE
            and self.operation is not BulkOperation.QUERY
            and not self.results_ready
            and self.results_unavailable is None
        )

    @property
    def shown_state(self) -> BulkState:
        """The state the API shows: ``InProgress`` while :attr:`results_pending`, else the stored one. Bulk 2.0 clients
        (jsforce's ``loadAndWaitForResults``, simple-salesforce) poll until ``JobComplete`` and fetch the result files
        at once, which got 409 ``job_not_finished`` while the files were being written. The stored state, the
        event and the webhooks keep ``JobComplete`` at the load's end; the listing's ``state`` filter follows this
        (:meth:`spectra.bulk.store.BulkJobStore.list_for_tenant`)."""
        return BulkState.IN_PROGRESS if self.results_pending else self.state

    @property
    def processing_ms(self) -> int | None:
        if self.started_at is None or self.completed_at is None:
            return None
        return int((self.completed_at - self.started_at).total_seconds() * 1000)

    @property
    def source_bytes(self) -> int:
        return sum(f.size for f in self.files)
