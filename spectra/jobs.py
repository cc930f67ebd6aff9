"""The query job: what a tenant asked for, where it is in its life, and what came of it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from events import Delivery, ErrorInfo, JobStatus, ResultFormat

#: Legal moves. Anything else is refused by the store's conditional write, so a late or duplicate message is a no-op.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.SUBMITTED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SUBMITTED: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """The states a job may be in to move to ``target``."""
    return frozenset(state for state, targets in TRANSITIONS.items() if target in targets)


def new_job_id() -> str:
    """Opaque, URL-safe and unguessable (128 random bits); also valid as a Data API StatementName and ClientToken."""
    return "j_" + secrets.token_urlsafe(16)


def utcnow() -> datetime:
    return datetime.now(UTC)


def utcnow_after(*earlier: datetime | None) -> datetime:
    """Now, or the latest of ``earlier`` if that is later. A job's times are stamped by the clocks of the hosts that
    moved it (the API's, the executor's, the completion consumer's), which differ by up to seconds: a quick job was
    recorded ending before it began (a negative ``duration_ms``, a negative ``totalProcessingTime``)."""
    return max([utcnow(), *(moment for moment in earlier if moment is not None)])


class QueryParameter(BaseModel):
    """A named parameter as the Data API binds it (``:name`` in the SQL, a string value), never spliced into the
    text. What tenants send, typed, is :class:`spectra.parameters.TypedParameter`; a job keeps what it will run."""

    model_config = ConfigDict(frozen=True)  # fields it does not know are ignored: stored on jobs, read across deploys

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    value: str = Field(max_length=65_535)


class ResultFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str
    rows: int
    bytes: int


class JobResult(BaseModel):
    """Where a finished job's rows are, and how many there are.

    * ``delivery`` ``inline``: the rows are on the job record itself (``inline_rows``: the JSON array text, gzipped
      and base64-encoded to keep the item small), nothing is in S3 (``manifest_key`` is None, ``files`` empty).
    * ``s3`` / ``export``: ``files`` under ``prefix`` in ``bucket``, listed again in ``manifest_key``.
    * Results written before deliveries existed have ``delivery`` ``s3`` and, when small, ``inline`` set: their rows
      are in the manifest.

    ``row_count`` counts the rows delivered; ``truncated`` says a ``row_limit`` cut the result, and
    ``total_row_count`` is then how many rows the statement returned. For a statement without a result set (a
    write), both are the rows it changed. ``expires_at``: when the files (and the inline rows with them) stop being
    served; the results bucket's lifecycle deletes files after that day.
    """

    model_config = ConfigDict(frozen=True)

    bucket: str
    prefix: str
    manifest_key: str | None
    files: list[ResultFile]
    row_count: int
    bytes: int
    columns: list[dict[str, str]]
    inline: bool = False
    delivery: Delivery = Delivery.S3
    inline_rows: str | None = None
    truncated: bool = False
    total_row_count: int | None = None
    expires_at: datetime | None = None
    #: data rows the pages held (counted to the end when a line taken for the header could have been data; None
    #: when reading stopped early): how completion tells such a line from a header. Never stored.
    rows_read: int | None = Field(default=None, exclude=True)

    @property
    def location(self) -> str | None:
        return f"s3://{self.bucket}/{self.prefix}" if self.files else None


class Job(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_id: str
    tenant_id: str
    db_user: str
    sql: str
    parameters: list[QueryParameter] = Field(default_factory=list)
    format: ResultFormat = ResultFormat.JSON
    delivery: Delivery = Delivery.AUTO
    #: deliver at most this many rows (the result says ``truncated`` when it held more)
    row_limit: int | None = None
    status: JobStatus = JobStatus.QUEUED
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    statement_id: str | None = None
    #: the Data API session the statement runs in, and the identity that session was opened as (spectra/sessions.py)
    session_id: str | None = None
    session_identity: str | None = None
    session_opened_at: int | None = None  # epoch seconds (floored), so its return to the pool keeps its age
    result: JobResult | None = None
    error: ErrorInfo | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    cancel_requested_at: datetime | None = None
    event_published: bool = False
    #: the generation of the tenant that submitted the job (spectra.tenants): a tenant deleted and created again under
    #: the same id does not inherit its predecessor's queued jobs
    tenant_generation: str | None = None
    #: completions that failed to convert the result; at ``result_max_attempts`` the job fails instead
    result_attempts: int = 0
    #: the schemas the tenant owned when the guard let it write (None: submitted without the write flag, so the guard
    #: let only reads through); the executor checks the statement again if the grant has shrunk since
    #: (spectra/identity.py :func:`~spectra.identity.check_write_grant`)
    write_grant: list[str] | None = None

    @property
    def duration_ms(self) -> int | None:
        if self.completed_at is None:
            return None
        return int((self.completed_at - self.created_at).total_seconds() * 1000)
