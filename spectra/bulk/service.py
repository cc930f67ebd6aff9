"""Bulk jobs as the API sees them (Salesforce Bulk API 2.0's workflow): create, get and list, close (UploadComplete)
or abort. A job's batches come in through :mod:`spectra.bulk.uploads` and its results go out through
:mod:`spectra.bulk.downloads`. Nothing here touches the warehouse except to abort a running statement.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlglot import exp

from events import BulkJobQueuedMessage, ErrorInfo
from spectra import logs
from spectra.bulk.lifecycle import bulk_ports, export_statement, finish_bulk_job
from spectra.bulk.models import (
    BULK_JOB_ID_PREFIX,
    BulkJob,
    BulkOperation,
    BulkState,
    ColumnDelimiter,
    JobType,
    LineEnding,
    SourceFile,
    new_bulk_job_id,
    split_object,
)
from spectra.bulk.store import position_of
from spectra.delivery import check_unload_size, unload_problem
from spectra.dynamo import ListPosition
from spectra.errors import Conflict, InvalidRequest, NotFound, Throttled
from spectra.jobs import utcnow
from spectra.ports import BulkPorts, Ports
from spectra.sql_guard import check_sql, parse_statement
from spectra.tenants import Caller, same_generation

logger = logging.getLogger(__name__)

#: UploadComplete lists the stored batches again while batches keep arriving, then answers 429
CLOSE_ATTEMPTS = 5
#: An Open job takes batches until ``result_retention_days`` less this after it was created: the results bucket's
#: lifecycle expires every object that long after it was written (rounded up to the next midnight), the job's batches
#: included, so a job closed later would load what is left of them and account for nothing of the rest.
OPEN_MARGIN = timedelta(hours=1)
#: What a job's batches may be: CSV files, or JSON records (rewritten as CSV when uploaded)
CONTENT_TYPES = ("CSV", "JSON")


@dataclass(frozen=True)
class NewJob:
    object: str | None
    operation: BulkOperation
    external_id_field: str | None = None
    column_delimiter: ColumnDelimiter = ColumnDelimiter.COMMA
    line_ending: LineEnding = LineEnding.LF
    content_type: str = "CSV"
    query: str | None = None


def create_job(
    ports: Ports,
    caller: Caller,
    spec: NewJob,
    *,
    correlation_id: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[BulkJob, bool]:
    """An ingest job starts ``Open`` (waiting for its data); a query job is queued at once. Returns the job and
    whether it was created now.

    ``idempotency_key`` names the job (:meth:`Caller.keyed_id`): the same key with the same fields answers the job it
    made (False), as it is now, as long as its record lives (30 days; jobs are never deleted before, and their files
    expire sooner); with other fields, a 409. A query job whose message could not be queued stays ``UploadComplete``
    for the reconciler to queue: keyed, the error is raised (a 500, and the retry gets the job back); without a key the
    job is answered, since its client's retry would be another job."""
    target, query = _checked_request(ports, spec)
    now = utcnow()
    job = BulkJob(
        job_id=new_bulk_job_id() if idempotency_key is None else caller.keyed_id(BULK_JOB_ID_PREFIX, idempotency_key),
        tenant_id=caller.tenant_id,
        tenant_generation=caller.generation,
        db_user=caller.db_user or "",
        object=target,
        operation=spec.operation,
        external_id_field=(spec.external_id_field or spec.operation.default_external_id or "").lower() or None,
        column_delimiter=spec.column_delimiter,
        line_ending=spec.line_ending,
        content_type=spec.content_type,
        query=query,
        state=BulkState.UPLOAD_COMPLETE if query else BulkState.OPEN,
        queued_at=now if query else None,
        created_at=now,
        updated_at=now,
        correlation_id=correlation_id,
    )
    if query:
        check_unload_size(export_statement(ports.settings, job), ports.settings.max_sql_bytes)
    stored, created = bulk_ports(ports).jobs.create(job)
    logs.bind(job_id=stored.job_id)  # the request's later lines are about this job, as a query job's are
    if not created:
        return _repeat(stored, job, idempotency_key or ""), False
    if query:
        try:
            _queue(ports, job)
        except Exception as exc:
            if idempotency_key is not None:
                raise  # the client's retry with its key gets this job back
            # Keyless, the retry would be another job: this one is answered (as a query job is, queries._unqueued)
            logger.error(
                "bulk job %s: its message's send failed (%s); the reconciler queues it", job.job_id, type(exc).__name__
            )
    return job, True


def _checked_request(ports: Ports, spec: NewJob) -> tuple[str, str | None]:
    """The job's object (the table it loads, or what its query reads) and its query as checked (None for an ingest
    job); a field that is wrong is refused before anything is stored."""
    _check_content_type(spec)
    query = None
    if spec.operation is BulkOperation.QUERY:
        if not spec.query:
            raise InvalidRequest("a query job needs a query", details={"field": "query"})
        query = check_sql(spec.query, max_bytes=ports.settings.max_sql_bytes)
        if problem := unload_problem(query, export=False):
            raise InvalidRequest(problem, details={"field": "query"})
        target = spec.object or queried_object(query)
    else:
        if spec.query:
            raise InvalidRequest("query is only for operation query", details={"field": "query"})
        if not spec.object:
            raise InvalidRequest(
                f"operation {spec.operation.value} needs an object (a table)", details={"field": "object"}
            )
        try:
            split_object(spec.object)
        except ValueError as exc:
            raise InvalidRequest(str(exc), details={"field": "object"}) from exc
        target = spec.object
        external_id = spec.external_id_field or spec.operation.default_external_id
        if spec.operation.needs_external_id and not external_id:
            raise InvalidRequest(
                f"operation {spec.operation.value} needs externalIdFieldName", details={"field": "externalIdFieldName"}
            )
    return target, query


def queried_object(query: str) -> str:
    """What a query job that names no ``object`` reads, as Bulk 2.0 names a query job's object (its SOQL's FROM): the
    first table of the statement's outermost FROM as the query writes it (``schema.table`` when it names a schema);
    "" when that FROM reads no table of the warehouse (``select 1``, a subquery, a WITH query's own name, a UNION).
    A name for listing and filtering jobs and events only: what the job may read is the warehouse's to decide."""
    tree = parse_statement(query)
    source = tree.args.get("from_") if isinstance(tree, exp.Select) else None
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table) or not table.name:
        return ""
    with_names = (
        {cte.alias_or_name.lower() for cte in tree.args["with_"].expressions} if tree.args.get("with_") else set()
    )
    if not table.db and table.name.lower() in with_names:
        return ""
    return ".".join(part for part in (table.db, table.name) if part)


def _check_content_type(spec: NewJob) -> None:
    """CSV, or JSON records for an ingest job (spectra.bulk.jsonfiles), which have no delimiter or line ending of
    their own to name: the batches become CSV with the defaults."""
    if spec.content_type not in CONTENT_TYPES:
        raise InvalidRequest("contentType must be CSV or JSON", details={"field": "contentType"})
    if spec.content_type != "JSON":
        return
    if spec.operation is BulkOperation.QUERY:
        raise InvalidRequest(
            "a query job's results are CSV pages (Bulk 2.0's): leave contentType out, or CSV",
            details={"field": "contentType"},
        )
    for field, value, default in (
        ("columnDelimiter", spec.column_delimiter, ColumnDelimiter.COMMA),
        ("lineEnding", spec.line_ending, LineEnding.LF),
    ):
        if value is not default:
            raise InvalidRequest(f"a JSON job's records have no {field}: leave it out", details={"field": field})


#: What a repeat of a create must ask again to be the same request.
_REQUESTED = ("object", "operation", "external_id_field", "column_delimiter", "line_ending", "content_type", "query")


def _repeat(first: BulkJob, asked: BulkJob, idempotency_key: str) -> BulkJob:
    """``first``, made by the request with the same key, when ``asked`` is that request again (the same tenant and
    generation: the keyed id is made of them)."""
    if first.operation is BulkOperation.QUERY and not first.object:  # an older record names no object
        asked = asked.model_copy(update={"object": first.object})
    if any(getattr(first, name) != getattr(asked, name) for name in _REQUESTED):
        raise Conflict(
            "Idempotency-Key was already used for a different request",
            details={"idempotency_key": idempotency_key, "job_id": first.job_id},
        )
    return first


def _queue(ports: Ports, job: BulkJob) -> None:
    """Queue the job's start. If the send fails the job stays UploadComplete, queued by the reconciler within
    ``REQUEUE_AFTER_SECONDS``: whether SQS took the message cannot be told from the error (the SDK retries an attempt
    whose answer was lost and raises only the last attempt's error), so failing the job would race an executor that
    has the message, and failing a closed ingest job would make its client upload every batch again."""
    message = BulkJobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id, correlation_id=job.correlation_id)
    ports.queue.send(message)


def get_job(ports: Ports, caller: Caller, job_id: str) -> BulkJob:
    job = bulk_ports(ports).jobs.get_for_tenant(caller.tenant_id, job_id)
    # a predecessor's job (the tenant id deleted and created again) is not the caller's
    if job is None or not same_generation(caller.generation, job.tenant_generation):
        raise NotFound(f"bulk job {job_id} not found")
    return job


def list_jobs(
    ports: Ports,
    caller: Caller,
    *,
    state: BulkState | None,
    operation: BulkOperation | None,
    limit: int,
    next_token: str | None,
    job_type: JobType | None = None,
) -> BulkJobListing:
    """One page of the caller's bulk jobs; ``next_token`` is signed for this tenant, filter and page size, as the
    query jobs' listing's is (``spectra/tokens.py``): any other token is refused before the store is asked.
    ``job_type`` filters as Bulk 2.0's ``jobType`` does; with an ``operation`` of the other kind it is a 400 (the
    two filters would list nothing)."""
    if job_type is not None and operation is not None and JobType.of(operation) is not job_type:
        raise InvalidRequest(
            f"operation {operation.value} is not of jobType {job_type.value}",
            details={"field": "operation", "value": operation.value},
        )
    limit = min(limit, ports.settings.api_page_max)
    listing = {
        "listing": "bulk-jobs",
        "tenant": caller.tenant_id,
        "state": state.value if state else None,
        "operation": operation.value if operation else None,
        "limit": limit,
    }
    if job_type is not None:
        listing["job_type"] = job_type.value  # only when given: a token signed without the field still resumes
    if job_type is JobType.V2_QUERY:
        operation = BulkOperation.QUERY
    after = ListPosition.from_token(ports.page_tokens, next_token, listing)
    page = bulk_ports(ports).jobs.list_for_tenant(
        caller.tenant_id,
        limit=limit,
        state=state,
        operation=operation,
        ingest_only=job_type is JobType.V2_INGEST,
        after=after,
    )
    kept, resume_after = _within_answer(page.jobs), page.resume_after
    if len(kept) < len(page.jobs):
        resume_after = position_of(kept[-1])
    token = resume_after.token(ports.page_tokens, listing) if resume_after else None
    jobs = [j for j in kept if same_generation(caller.generation, j.tenant_generation)]  # not a predecessor's
    return BulkJobListing(jobs=jobs, next_token=token)


#: What a page of the listing may carry of its jobs' texts (query, error message, dropped file's key) as Lambda
#: answers them: JSON in a JSON body, so a control character takes 7 bytes. A query job's record holds its query
#: (up to 100 KB): 100 of them make a page of 10 to 28 MB, past Lambda's 6 MiB answer, and every GET of such a page
#: would be API Gateway's 502 whatever the client retried. A page past it ends early, its token at the last job kept, as
#: a filtered page may be short already; a page keeps its first job whatever its size (700 KB at most).
LIST_TEXT_MAX_BYTES = 5 * 1024 * 1024


def _within_answer(jobs: list[BulkJob]) -> list[BulkJob]:
    kept: list[BulkJob] = []
    size = 0
    for job in jobs:
        message = job.error.message if job.error else None
        size += len(json.dumps(json.dumps([job.query, message, message, job.object_key])))  # errorMessage, error
        if kept and size > LIST_TEXT_MAX_BYTES:
            break
        kept.append(job)
    return kept


@dataclass(frozen=True)
class BulkJobListing:
    jobs: list[BulkJob]
    next_token: str | None


def unexpired(ports: Ports, job: BulkJob) -> BulkJob:
    """The job, or 409 when it stayed Open past its batches' lifetime (:data:`OPEN_MARGIN`): it is aborted then, its
    remaining batches listed in unprocessedrecords, rather than loaded in part."""
    days = ports.settings.result_retention_days
    if job.state is not BulkState.OPEN or utcnow() < job.created_at + timedelta(days=days) - OPEN_MARGIN:
        return job
    reason = ErrorInfo(
        code="open_too_long",
        message=f"bulk job {job.job_id} was Open for {days} days less an hour: its batches expire"
        f" {days} days after they were uploaded (ResultRetentionDays), so it is aborted rather than loaded in part;"
        " upload them to a new job",
    )
    try:
        ended = _abort_open(ports, job, error=reason)
    except _AbortedMeanwhile:
        ended = bulk_ports(ports).jobs.get(job.job_id) or job  # by a copy of this request, or its client: say why
    raise Conflict(ended.error.message if ended.error else reason.message, details={"state": ended.state.value})


class _AbortedMeanwhile(Conflict):
    """Another request aborted the job between this one's read and its write: this abort did nothing, and says so
    (409, as for a job that had ended before the read), so that of concurrent aborts one answers 200."""


def _abort_open(ports: Ports, job: BulkJob, **changes: Any) -> BulkJob:
    """Abort an Open job with its batches listed (so unprocessedrecords holds their rows): conditional on the batch
    count seen before the listing, as UploadComplete is, so that a batch counted meanwhile (answered 201) is listed
    on the next try rather than left out. The job as it ends, or as it is once another request moved it
    (:class:`_AbortedMeanwhile` when that request aborted it)."""
    bulk = bulk_ports(ports)
    for _ in range(CLOSE_ATTEMPTS):
        files = _counted_batches(bulk, job)
        seen = job.model_copy(update={"files": files})
        aborted = finish_bulk_job(ports, seen, BulkState.ABORTED, unstarted=True, uploads=job, files=files, **changes)
        if aborted is not None:
            return aborted
        job = bulk.jobs.get(job.job_id) or job
        if job.state is BulkState.ABORTED:
            raise _AbortedMeanwhile(f"bulk job {job.job_id} already ended Aborted", details={"state": job.state.value})
        if job.state is not BulkState.OPEN:
            return job
    raise Throttled(f"bulk job {job.job_id} is still receiving batches; abort it once they are done")


#: What a load whose statement ended before the abort's cancel reached it ends as, once its event is recorded
_LOAD_ENDED_AS = {"FINISHED": (BulkState.JOB_COMPLETE, "committed"), "FAILED": (BulkState.FAILED, "failed")}


def _refuse_abort_of_an_ended_load(ports: Ports, job_id: str, statement_id: str) -> None:
    """The cancel found the load's statement ended (the usual case: it finished in the warehouse and its event is
    on its way, seconds later): the abort stops nothing, and the job ends as its load did. 409, as for a job whose
    end is recorded already, naming the state it will end in; a statement another abort's cancel ended (or one the
    warehouse no longer knows) leaves the answer to the job, ending Aborted. A 200 ``InProgress`` would read as the
    abort accepted, for a job that then ends JobComplete."""
    try:
        status = ports.warehouse.describe(statement_id).status
    except NotFound:
        return
    if status in _LOAD_ENDED_AS:
        state, how = _LOAD_ENDED_AS[status]
        raise Conflict(
            f"bulk job {job_id}'s load {how} before the abort could stop it; the job ends {state.value}",
            details={"state": BulkState.IN_PROGRESS.value, "ends": state.value},
        )


def _ended_aborted(ports: Ports, job: BulkJob, abort: Callable[[], BulkJob | None]) -> BulkJob | None:
    """``abort()``'s answer. A failure after its write (asking for the result files, the event's PutEvents) leaves the
    job Aborted with what it owes left to the reconciler: the answer is the aborted job, not a 500 inviting a retry
    that would find the job ended (409)."""
    try:
        return abort()
    except _AbortedMeanwhile:
        raise  # not this request's abort: nothing of it failed after a write
    except Exception:
        current = bulk_ports(ports).jobs.get(job.job_id)
        if current is None or current.state is not BulkState.ABORTED:
            raise
        logger.warning("bulk job %s aborted; what it owes is left to the reconciler", job.job_id, exc_info=True)
        return current


#: How an upload key's name starts (:func:`spectra.bulk.uploads._upload_key`): the time it was stored, which
#: :func:`_stored_lately` reads back
UPLOAD_STAMP = "%Y%m%dT%H%M%S%f"


#: Longer than any take-back of a batch refused its count takes (:func:`spectra.bulk.uploads._take_back`: three
#: DynamoDB writes, with botocore's retries)
TAKE_BACK_SECONDS = 60


def _stored_lately(files: list[SourceFile]) -> bool:
    """Whether any of the batches was stored within :data:`TAKE_BACK_SECONDS` (its key starts with its time)."""
    since = (utcnow() - timedelta(seconds=TAKE_BACK_SECONDS)).strftime(UPLOAD_STAMP)
    return any(f.key.rsplit("/", 1)[-1] >= since for f in files)


def _counted_batches(bulk: BulkPorts, job: BulkJob) -> list[SourceFile]:
    """The job's batches as stored, less those taken back (``withdrawn_batches``: a withdrawn batch may not be deleted
    yet). Not a keyed batch the job records: one taken back after its count landed unseen, then put back by its
    key's repeat (:func:`spectra.bulk.uploads._restored`), is the job's."""
    withdrawn = set(job.withdrawn_batches) - {batch.key for batch in job.keyed_batches.values()}
    return [f for f in bulk.files.uploaded_batches(job) if f.key not in withdrawn]


def change_state(ports: Ports, caller: Caller, job_id: str, state: str) -> BulkJob:
    """PATCH: ``UploadComplete`` queues an Open job; ``Aborted`` stops it. Repeating UploadComplete is harmless."""
    if state == BulkState.UPLOAD_COMPLETE.value:
        return _close(ports, caller, job_id)
    if state == BulkState.ABORTED.value:
        return _abort(ports, caller, job_id)
    raise InvalidRequest(
        f"state must be UploadComplete or Aborted, not {state!r}", details={"field": "state", "value": state}
    )


def _close(ports: Ports, caller: Caller, job_id: str) -> BulkJob:
    bulk = bulk_ports(ports)
    job = unexpired(ports, get_job(ports, caller, job_id))
    if job.state is not BulkState.OPEN:
        return _closed_already(job)
    for attempt in range(CLOSE_ATTEMPTS):
        files = _counted_batches(bulk, job)
        if not files:
            raise InvalidRequest(f"bulk job {job_id} has no data: upload at least one batch before UploadComplete")
        most = ports.settings.bulk_max_files
        if len(files) > most and attempt == CLOSE_ATTEMPTS - 1 and not _stored_lately(files):
            # still more than it may have, none stored lately: a batch stored by a function that died before counting
            # it stays (README); one stored lately may be on its way to being taken back (the 429 below)
            raise InvalidRequest(f"bulk job {job_id} has {len(files)} batches; at most {most}")
        if len(files) > most:
            # more than it counted: batches stored and refused at its limit, on their way to being taken back (a 400
            # "has 109 batches" would tell the client its job is wrong)
            job = get_job(ports, caller, job_id)
            if job.state is not BulkState.OPEN:
                return _closed_already(job)
            continue
        closed = bulk.jobs.close(job, files=files, queued_at=utcnow())
        if closed is not None:
            _queue(ports, closed)
            return closed
        job = get_job(ports, caller, job_id)
        if job.state is not BulkState.OPEN:  # a concurrent PATCH won: a close is the job, an abort a 409
            return _closed_already(job)
        # a batch was stored since the listing: list again, so that it is loaded
    raise Throttled(f"bulk job {job_id} is still receiving batches; send UploadComplete once they are done")


def _closed_already(job: BulkJob) -> BulkJob:
    """UploadComplete on a job no longer Open: the job as it is when an UploadComplete closed it (a retried close is
    harmless), a 409 when it failed or was aborted, whether before this request or while it listed the batches."""
    if job.state in (BulkState.UPLOAD_COMPLETE, BulkState.IN_PROGRESS, BulkState.JOB_COMPLETE):
        return job  # a repeated UploadComplete: queued by the first one, or by the reconciler if that failed
    raise Conflict(f"bulk job {job.job_id} is {job.state.value}", details={"state": job.state.value})


def _abort(ports: Ports, caller: Caller, job_id: str) -> BulkJob:
    bulk = bulk_ports(ports)
    job = get_job(ports, caller, job_id)
    if job.state is BulkState.OPEN:
        # its batches are listed only at UploadComplete: list them now, so unprocessedrecords holds their rows
        job = _ended_aborted(ports, job, partial(_abort_open, ports, job))
        if job.state is BulkState.ABORTED:
            return job
    if job.state is BulkState.UPLOAD_COMPLETE:
        aborted = _ended_aborted(ports, job, partial(finish_bulk_job, ports, job, BulkState.ABORTED, unstarted=True))
        if aborted is not None:
            return aborted
        job = get_job(ports, caller, job_id)
    if job.state is BulkState.IN_PROGRESS:
        marked = bulk.jobs.update(job_id, [BulkState.IN_PROGRESS], abort_requested_at=utcnow())
        if marked is not None:
            stopped = ports.warehouse.cancel(marked.statement_id) if marked.statement_id else True
            current = get_job(ports, caller, job_id)
            if current.state.is_terminal and current.state is not BulkState.ABORTED:
                # its load ended before the cancel could stop it (committed, or failed on its own): 409, since 200
                # with the JobComplete job would read as the abort accepted
                raise Conflict(
                    f"bulk job {job_id} ended {current.state.value} before the abort could stop it",
                    details={"state": current.state.value},
                )
            if not stopped and not current.state.is_terminal:
                _refuse_abort_of_an_ended_load(ports, job_id, marked.statement_id)
            return current
        # it ended between the read and this write: the abort did nothing, as when it ended before the read
        job = get_job(ports, caller, job_id)
    if job.results_pending:
        # shown InProgress while its result files are written, but its load has committed: the abort does nothing,
        # and says so (an answer of the job as shown would read as an abort accepted), naming why GET shows InProgress
        raise Conflict(
            f"bulk job {job_id} already ended JobComplete (its load committed); its result files are being written",
            details={"state": job.state.value},
        )
    raise Conflict(f"bulk job {job_id} already ended {job.state.value}", details={"state": job.state.value})
