"""Bulk jobs as the API sees them (Salesforce Bulk API 2.0's workflow): create, upload, close or abort, follow,
fetch results. Nothing here touches the warehouse except to abort a running statement.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from sqlglot import exp

from events import BulkJobQueuedMessage, ErrorInfo
from spectra import logs
from spectra.bulk import outcomes
from spectra.bulk.csvfiles import HEADER_MAX_BYTES, first_line_names_no_column
from spectra.bulk.drops import GENERATION_METADATA, NO_GENERATION, DropOptions, metadata_options, options_problem
from spectra.bulk.files import FileUnreadable, gunzipped, results_key, starts_as_gzip
from spectra.bulk.jsonfiles import JSON_MEDIA_TYPES, as_csv
from spectra.bulk.lifecycle import bulk_ports, export_statement, finish_bulk_job
from spectra.bulk.models import (
    BULK_JOB_ID_PREFIX,
    BulkJob,
    BulkOperation,
    BulkState,
    ColumnDelimiter,
    JobType,
    KeyedBatch,
    LineEnding,
    SourceFile,
    new_bulk_job_id,
    split_object,
)
from spectra.bulk.pages import Page, read_page
from spectra.bulk.store import position_of
from spectra.delivery import check_unload_size, unload_problem
from spectra.dynamo import ListPosition
from spectra.errors import (
    BadGzip,
    Conflict,
    Gone,
    InvalidRequest,
    JobNotFinished,
    NotFound,
    PayloadTooLarge,
    ResultsUnavailable,
    Throttled,
    UnsupportedMediaType,
)
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
RESULT_KINDS = {"successfulResults": "successful", "failedResults": "failed", "unprocessedrecords": "unprocessed"}
#: What a job's batches may be: CSV files, or JSON records (rewritten as CSV when uploaded)
CONTENT_TYPES = ("CSV", "JSON")
#: A gzip JSON batch may inflate to this many times the request limit: the API holds its text and its CSV while
#: rewriting it, one record at a time (twice 8 MiB of text and CSV, in a 512 MB function)
JSON_INFLATED_FACTOR = 2
#: A gzip CSV batch is read to its end when it inflates to at most this many times the request limit (64 MiB of 4),
#: CSV compressing up to 16:1 at the largest batch, the output dropped as it comes (about 0.25 s of inflating on one
#: core). Past that its end is left to the job's read, as before: a 4 MiB body of one repeated byte inflates to 4 GiB,
#: read through in about 17 s of a core, past the API function's 30 s on a 512 MB Lambda's share of one. Not a limit:
#: a CSV batch may inflate to any size.
GZIP_CHECKED_FACTOR = 16


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
    if first.operation is BulkOperation.QUERY and not first.object:  # made before query jobs were named by their FROM
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
    has the message, and failing a closed ingest job made its client upload every batch again."""
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
        listing["job_type"] = job_type.value  # only when given: tokens signed before it existed still resume
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
#: (up to 100 KB): 100 of them made a page of 10 to 28 MB, past Lambda's 6 MiB answer, and every GET of that page
#: was API Gateway's 502 whatever the client retried. A page past it ends early, its token at the last job kept, as
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


def _open_job(ports: Ports, caller: Caller, job_id: str, job: BulkJob | None = None) -> BulkJob:
    """The job (``job``, as already read, else read now), or 409 when it is not Open."""
    job = job or _unexpired(ports, get_job(ports, caller, job_id))
    if job.state is not BulkState.OPEN:
        raise Conflict(
            f"bulk job {job_id} is {job.state.value}; data can be uploaded only while it is Open",
            details={"state": job.state.value},
        )
    return job


#: How an upload key's name starts: the time it was stored (:func:`_stored_lately` reads it back)
_UPLOAD_STAMP = "%Y%m%dT%H%M%S%f"


def _upload_key(job: BulkJob, *, gzip: bool) -> str:
    """Upload keys sort in upload order; the random tail keeps two concurrent uploads apart."""
    stamp = datetime.now(UTC).strftime(_UPLOAD_STAMP)
    name = f"{stamp}-{secrets.token_hex(4)}.csv" + (".gz" if gzip else "")
    return f"{job.tenant_id}/{job.job_id}/uploads/{name}"


def _inflated_head(body: bytes, *, most: int) -> tuple[bytes, bool]:
    """A gzip batch's first :data:`HEADER_MAX_BYTES` inflated, and whether that is all of it, the batch read as its job
    reads it (concatenated members followed) through to its end, or until ``most`` bytes have come: 400 ``bad_gzip``
    for what the job would refuse. Its first MB alone was read, a stream that did not inflate let through: gzip cut
    short, or followed by NUL padding or other bytes that are no gzip member, was answered 201 and then failed the
    whole job ``bad_gzip`` at UploadComplete, its good batches with it (the bulk review)."""
    head = bytearray()
    size = 0
    try:
        for out in gunzipped(body, "the batch"):
            if len(head) <= HEADER_MAX_BYTES:
                head += out[: HEADER_MAX_BYTES + 1 - len(head)]
            size += len(out)
            if size > most:
                return bytes(head[:HEADER_MAX_BYTES]), False  # its end is the job's to read
    except FileUnreadable as exc:
        raise BadGzip(f"the batch {exc.reason}") from None
    return bytes(head[:HEADER_MAX_BYTES]), len(head) <= HEADER_MAX_BYTES


def _no_header(head: bytes, *, whole: bool, delimiter: str) -> str | None:
    """What makes a batch's first line no header, if anything: nothing but a byte order mark, spaces and line breaks
    (a batch of blank lines, an empty file gzipped), or a first line that names no column as the job reads it
    (:func:`~spectra.bulk.csvfiles.first_line_names_no_column`: empty, blanks alone, a spreadsheet's empty first row
    ``,,,``; COPY's IGNOREHEADER would skip it and load the header as a row, and the job refused it as "the first
    line has no column names"). Taken 201, such a batch failed the whole job, its other batches with it, naming a
    stored file the client never saw (the bulk bad input review; the rows of blanks and delimiters, the diff review)."""
    text = head.removeprefix(b"\xef\xbb\xbf")
    if whole and not text.strip(b" \t\r\n"):
        return "holds no header line" + (" and no rows" if text else "") + ": it is empty but for white space"
    first, ended, _ = text.partition(b"\n")
    if (ended or whole) and first_line_names_no_column(first.decode("utf-8", "surrogateescape"), delimiter):
        return "starts with a line that names no column (blank, or empty fields alone): it must be the header line"
    return None


def _header_encoding_problem(body: bytes, *, whole: bool = True) -> str | None:
    """What makes a plain batch's first line no UTF-8 header, if anything: a file saved as UTF-16 (Excel's "Unicode
    Text", PowerShell's ``>``) or in a spreadsheet's own encoding was taken 201 and then failed the whole job, its
    other batches with it, naming a stored file the client never saw. The bytes up to the first line break are the
    header's own (a break quoted inside it ends the check early, never wrongly), so this refuses no batch the job would
    load; the header's other faults need the table, and are the job's to find."""
    line, *rest = re.split(rb"[\r\n]", body[:HEADER_MAX_BYTES], maxsplit=1)
    if not rest and (len(body) > HEADER_MAX_BYTES or not whole):
        return None  # no line break in the first MB, perhaps cut inside a character: the job says what is wrong
    if b"\x00" in line:
        return "holds NUL bytes (UTF-16?)"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 (UTF-16, or a spreadsheet's own encoding?)"
    return None


def _request_digest(kind: str, *parts: bytes) -> str:
    """What a request under an ``Idempotency-Key`` asked, for telling its repeat from another request: its route and
    options, and the bytes of a batch."""
    digest = hashlib.sha256(kind.encode())
    for part in parts:
        digest.update(b"\0" + part)
    return digest.hexdigest()


def _keyed_repeat(job: BulkJob, name: str | None, digest: str, idempotency_key: str | None) -> KeyedBatch | None:
    """The batch (or upload URL) the job already has under ``idempotency_key``, if any: its request asked what this
    one asks, or this one is a 409. Once the job is no longer Open, only a batch its UploadComplete (or abort) listed
    is part of it: any other is a 409 with the job's state, as for a request without a key."""
    first = job.keyed_batches.get(name) if name else None
    if first is None:
        return None
    if first.digest != digest:
        raise Conflict(
            "Idempotency-Key was already used for a different request",
            details={"idempotency_key": idempotency_key, "job_id": job.job_id},
        )
    if job.state is not BulkState.OPEN and all(f.key != first.key for f in job.files):
        raise Conflict(
            f"bulk job {job.job_id} is {job.state.value}; the batch of this Idempotency-Key is not part of it",
            details={"state": job.state.value},
        )
    return first


def upload_batch(
    ports: Ports,
    caller: Caller,
    job_id: str,
    body: bytes,
    *,
    gzip: bool,
    idempotency_key: str | None = None,
    media: str | None = None,
) -> SourceFile:
    """Store one batch: a CSV job's as sent (gzip stays gzip, COPY reads it so), a JSON job's rewritten as CSV
    (:mod:`spectra.bulk.jsonfiles`). ``media``: the request's media type, which must be the job's kind (or
    ``application/octet-stream``, what generated clients send for a file).

    ``idempotency_key`` names the batch: it is recorded on the job in the write that counts it, so a repeat (a client
    whose answer was lost: a 504 while the function went on, a reset connection) finds it and is answered 201 without
    storing or counting it again (but for a first copy taken back after its count landed: :func:`_restored`), even
    once UploadComplete listed it; the same key with other bytes is a 409. Two copies racing each other both store,
    one counts: the other takes its copy back (:func:`_take_back`). A batch a close listed before its count failed is
    the job's, answered 201 (:func:`_listed`)."""
    name = caller.keyed_id("", idempotency_key) if idempotency_key is not None else None
    digest = _request_digest("batch", b"gzip" if gzip else b"plain", body)
    job = _unexpired(ports, get_job(ports, caller, job_id))
    _check_batch(ports, job, body, gzip=gzip, media=media)  # bad input is a 4xx of its own, not "a different request"
    if job.content_type == "JSON":  # stored as the CSV the load reads (its digest stays the request's)
        inflated_max = JSON_INFLATED_FACTOR * ports.settings.bulk_max_batch_bytes
        # the id's null is a missing id only where the load stages rows on it; an insert loads NULL (or refuses it)
        key = job.external_id_field if job.operation.needs_external_id else None
        body, gzip = as_csv(body, gzip=gzip, max_bytes=inflated_max, key=key), False
    if (first := _keyed_repeat(job, name, digest, idempotency_key)) is not None:
        return _restored(ports, job, first, body, gzip=gzip)
    job = _open_job(ports, caller, job_id, job)
    most = ports.settings.bulk_max_files
    if job.uploads >= most:
        raise _too_many(job_id, most)
    bulk = bulk_ports(ports)
    stored = bulk.files.put(_upload_key(job, gzip=gzip), body)
    # Counted once stored: an UploadComplete that listed the batches before this one was stored finds the count
    # changed and lists again (_close). Refused: the job was closed or aborted while the batch was on its way, or
    # batches sent at once passed the limit together (this one is taken back: the job would list it).
    keyed = (name, KeyedBatch(key=stored.key, digest=digest)) if name else None
    try:
        counted = bulk.jobs.count_upload(job_id, limit=most, keyed=keyed)
    except Exception:
        if name and _counted_as(bulk, job_id, name, stored):
            return stored  # its count landed, its answer lost and botocore's retries failed: the batch is the job's
        if not _take_back(bulk, job_id, stored):
            raise
        return _listed(bulk, job_id, keyed, stored)  # a close listed it before the count failed: the job's
    if counted is None:
        closed = bulk.jobs.get(job_id)
        recorded = closed.keyed_batches.get(name) if closed is not None and name else None
        if recorded is not None and recorded.key == stored.key:
            # its own count, whose answer was lost and whose retry met another batch's count (so not taken for its
            # own by updated_at): taken back, the 201 batch was gone from the job (the diff review)
            return stored
        if recorded is not None:  # a copy of this request counted its batch first
            _take_back(bulk, job_id, stored)
            first = _keyed_repeat(closed, name, digest, idempotency_key)
            return _keyed_source(ports, first, size=len(body), gzip=gzip)
        if closed is not None and closed.state is BulkState.OPEN:
            if not _take_back(bulk, job_id, stored):
                raise _too_many(job_id, most)
            # a close listed it between the read and the take-back: the job's (a 400 telling the client to send it
            # to another job would load it twice; the whole-feature review)
        elif closed is None or all(f.key != stored.key for f in closed.files):
            raise _became(job_id, closed)
        return _listed(bulk, job_id, keyed, stored)
    return stored


def _listed(bulk: BulkPorts, job_id: str, keyed: tuple[str, KeyedBatch] | None, stored: SourceFile) -> SourceFile:
    """A batch a close (or an abort) listed before its count: part of the job, answered 201. Under a key, the key is
    recorded so a repeat finds it (a 409 'not Open' would say the job does not hold it, and the client send it again
    elsewhere); a failed record is logged, not answered 5xx for a batch the job loads."""
    if keyed is not None:
        try:
            bulk.jobs.record_keyed_batch(job_id, *keyed)
        except (ClientError, BotoCoreError):
            logger.warning("bulk job %s: batch %s is listed, its Idempotency-Key not recorded", job_id, stored.key)
    return stored


def _restored(ports: Ports, job: BulkJob, first: KeyedBatch, body: bytes, *, gzip: bool) -> SourceFile:
    """The batch a repeat under its ``Idempotency-Key`` is answered with, put back from the repeat's bytes (the same:
    the digests match) if its object is gone while the job is ``Open``: a PUT whose count landed while the write
    raised, and whose reads of the job failed too, took its object back though the job records it (the whole-feature
    review); answered 201 without it, the batch's rows were never loaded. Its key is the one the job records, and it is
    counted again once put, so a close that listed the job's batches before the put lists again (its condition is on
    the count); refused, the job was closed meanwhile, and a batch it did not list is a 409 as for any PUT. A job no
    longer Open gets nothing put back (its batches expire before its record: nothing would load it)."""
    bulk = bulk_ports(ports)
    if job.state is not BulkState.OPEN or bulk.files.size(first.key) is not None:
        return _keyed_source(ports, first, size=len(body), gzip=gzip)
    logger.warning("batch %s of an Idempotency-Key was taken back after its count: put again", first.key)
    stored = bulk.files.put(first.key, body)
    if bulk.jobs.count_upload(job.job_id) is None:
        closed = bulk.jobs.get(job.job_id)
        if closed is None or all(f.key != stored.key for f in closed.files):
            bulk.files.discard(stored)
            raise _became(job.job_id, closed)
    return stored


def _became(job_id: str, closed: BulkJob | None) -> Conflict:
    """The 409 for a batch stored while its job was closed or aborted, and not listed by it."""
    state = closed.state.value if closed else "gone"
    return Conflict(
        f"bulk job {job_id} became {state} while this batch was uploading; the batch is not part of it",
        details={"state": state},
    )


def _counted_as(bulk: BulkPorts, job_id: str, name: str, stored: SourceFile) -> bool:
    """Whether the job records the keyed batch ``name`` as ``stored``, its own object (each stored key is unique):
    its count was applied, though the write raised (its answer lost, botocore's next tries throttled or timed out).
    Taken back then, its key's repeat was answered 201 for an object gone, its rows never loaded (the diff review).
    False when the job cannot be read: the batch is taken back, as any batch whose count failed."""
    try:
        job = bulk.jobs.get(job_id)
    except (ClientError, BotoCoreError):
        return False
    recorded = job.keyed_batches.get(name) if job is not None else None
    return recorded is not None and recorded.key == stored.key


def _check_batch(ports: Ports, job: BulkJob, body: bytes, *, gzip: bool, media: str | None = None) -> None:
    """A batch's body as the job can take it: of the job's kind, within the request limit, not empty, gzip exactly
    when it says so, and for CSV a header line in UTF-8 (stored otherwise, it failed the whole job)."""
    job_id = job.job_id
    if media in JSON_MEDIA_TYPES and job.content_type != "JSON":
        raise UnsupportedMediaType(
            f"bulk job {job_id} takes CSV (its contentType): send text/csv, or create a job with contentType JSON"
        )
    if media == "text/csv" and job.content_type == "JSON":
        raise UnsupportedMediaType(f"bulk job {job_id} takes JSON (its contentType): send application/json")
    limit = ports.settings.bulk_max_batch_bytes
    if len(body) > limit:
        raise PayloadTooLarge(
            f"the batch is {len(body)} bytes; send at most {limit} per request, or upload through"
            f" POST /v1/bulk/jobs/{job_id}/uploads",
            details={"limit": limit},
        )
    if not body:
        raise InvalidRequest("the batch is empty")
    if gzip and not starts_as_gzip(body):
        raise InvalidRequest("Content-Encoding is gzip but the body is not gzip data")
    if not gzip and starts_as_gzip(body):  # stored as CSV, it failed the whole job for a header that is not UTF-8
        raise InvalidRequest("the body is gzip data: send it with Content-Encoding: gzip")
    if job.content_type != "CSV":
        return
    if gzip:
        head, whole = _inflated_head(body, most=GZIP_CHECKED_FACTOR * limit)
    else:
        head, whole = body[:HEADER_MAX_BYTES], len(body) <= HEADER_MAX_BYTES
    if problem := _header_encoding_problem(head, whole=whole):
        raise UnsupportedMediaType(f"the batch's header line {problem}: save the file as CSV UTF-8")  # failed the job
    if problem := _no_header(head, whole=whole, delimiter=job.column_delimiter.char):
        raise InvalidRequest(f"the batch {problem}")  # stored, it failed the whole job, naming a file never seen


def _keyed_source(ports: Ports, batch: KeyedBatch | None, *, size: int, gzip: bool) -> SourceFile:
    """The batch a repeat under an ``Idempotency-Key`` is answered with: the first request's."""
    assert batch is not None  # _keyed_repeat answers a batch the job records, or raises
    return SourceFile(bucket=bulk_ports(ports).files.results_bucket, key=batch.key, size=size, gzip=gzip)


def _unexpired(ports: Ports, job: BulkJob) -> BulkJob:
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
    warehouse no longer knows) leaves the answer to the job, ending Aborted (found by the diff review: 200
    ``InProgress`` read as the abort accepted, for a job that then ended JobComplete)."""
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


def _too_many(job_id: str, most: int) -> InvalidRequest:
    """A job takes at most ``bulk_max_files`` files, batches PUT and upload URLs issued together: each is a file its
    load lists (S3 cannot ask the job's state, so every URL issued can store one until the bucket expires it), and
    UploadComplete refuses more than that many."""
    return InvalidRequest(
        f"bulk job {job_id} has had its {most} batches and upload URLs: send UploadComplete, and put more data in"
        " another job",
        details={"limit": most},
    )


def _take_back(bulk: BulkPorts, job_id: str, stored: SourceFile) -> bool:
    """The PUT fails for a batch that is stored all the same, which the next UploadComplete would list: delete it, or
    the client's retry of the failed request loads it twice. Not when an UploadComplete (or an abort) has listed it
    meanwhile: it is part of the job then, and True says so (the PUT answers 201). A function that dies between
    storing and counting leaves the batch (README, Bulk API).

    Withdrawn first, in a write conditional on the job being Open that a close's own write is conditional on
    (:meth:`~spectra.bulk.store.BulkJobStore.withdraw`): a look at the job, then the delete, let a close list the
    batch between the two, and the load failed "deleted before the job read it", every batch of the job unloaded
    (the bulk concurrency review: a keyed retry racing UploadComplete, a batch refused at the limit)."""
    try:
        withdrawn = bulk.jobs.withdraw(job_id, stored.key)
        if withdrawn is not None and all(batch.key != stored.key for batch in withdrawn.keyed_batches.values()):
            bulk.files.discard(stored)
            return False
        # Open, its count landed unseen (the job records it under its key): the job's, kept, as a close lists it
        # (_counted_batches), where deleted after that close, it failed the load (the second diff review)
        job = withdrawn or bulk.jobs.get(job_id)
    except (ClientError, BotoCoreError):
        job = None  # the store fails: taken back (a keyed repeat puts it back if its count landed: _restored)
    if job is None:
        bulk.files.discard(stored)
        return False
    counted = any(batch.key == stored.key for batch in job.keyed_batches.values())
    if not counted and all(f.key != stored.key for f in job.files):
        bulk.files.discard(stored)
        return False
    return True


#: Longer than any take-back of a batch refused its count takes (three DynamoDB writes, with botocore's retries)
TAKE_BACK_SECONDS = 60


def _stored_lately(files: list[SourceFile]) -> bool:
    """Whether any of the batches was stored within :data:`TAKE_BACK_SECONDS` (its key starts with its time)."""
    since = (utcnow() - timedelta(seconds=TAKE_BACK_SECONDS)).strftime(_UPLOAD_STAMP)
    return any(f.key.rsplit("/", 1)[-1] >= since for f in files)


def _counted_batches(bulk: BulkPorts, job: BulkJob) -> list[SourceFile]:
    """The job's batches as stored, less those taken back (``withdrawn_batches``: a withdrawn batch may not be deleted
    yet). Not a keyed batch the job records: one taken back after its count landed unseen, then put back by its
    key's repeat (:func:`_restored`), is the job's."""
    withdrawn = set(job.withdrawn_batches) - {batch.key for batch in job.keyed_batches.values()}
    return [f for f in bulk.files.uploaded_batches(job) if f.key not in withdrawn]


def upload_url(
    ports: Ports, caller: Caller, job_id: str, *, gzip: bool, idempotency_key: str | None = None
) -> dict[str, Any]:
    """A presigned PUT for one more batch of an Open job: for files larger than a request body may be. S3 cannot
    ask the job's state, so a file put after UploadComplete under a new URL is stored but not part of the job: it
    lies beside the job's batches, never loaded, until the results bucket expires it. Each URL writes its key once
    (``If-None-Match: *``, in ``headers``): put again after UploadComplete, a batch the job listed could be replaced
    by one of any size, and the job pins each batch as listed (its ETag) besides. Each URL counts as one of
    the job's ``bulk_max_files`` batches (UploadComplete lists both kinds under the same prefix).

    ``idempotency_key`` names the batch, as :func:`upload_batch`'s does: a repeat is answered a URL for the same key
    (signed anew, so it expires later; the key still takes one write), counted once; with ``gzip`` changed, a 409.
    Once the job is closed, a repeat is answered only if UploadComplete listed the batch (the URL was used)."""
    name = caller.keyed_id("", idempotency_key) if idempotency_key is not None else None
    digest = _request_digest("url", b"gzip" if gzip else b"plain")
    job = _unexpired(ports, get_job(ports, caller, job_id))
    if job.content_type == "JSON":  # S3 stores the file as it is, and the load reads CSV
        raise InvalidRequest(
            f"bulk job {job_id} takes JSON batches through PUT /v1/bulk/jobs/{job_id}/batches (up to"
            f" {ports.settings.bulk_max_batch_bytes} bytes a request, gzip accepted), which rewrites them as the CSV"
            " the load reads; an upload URL stores a file as it is: for larger files, a job with contentType CSV"
        )
    if (first := _keyed_repeat(job, name, digest, idempotency_key)) is not None:
        return _upload_answer(ports, first.key)
    job = _open_job(ports, caller, job_id, job)
    most = ports.settings.bulk_max_files
    key = _upload_key(job, gzip=gzip)
    keyed = (name, KeyedBatch(key=key, digest=digest)) if name else None
    # counted as a batch: each URL can store one, and UploadComplete lists both kinds under the same prefix
    if bulk_ports(ports).jobs.count_upload(job_id, limit=most, keyed=keyed) is None:
        now = get_job(ports, caller, job_id)
        if (first := _keyed_repeat(now, name, digest, idempotency_key)) is not None:
            return _upload_answer(ports, first.key)  # a copy of this request counted it first
        _open_job(ports, caller, job_id, now)  # 409 when it was closed or aborted meanwhile
        raise _too_many(job_id, most)
    return _upload_answer(ports, key)


def _upload_answer(ports: Ports, key: str) -> dict[str, Any]:
    files = bulk_ports(ports).files
    ttl = ports.settings.upload_url_ttl_seconds
    return {
        "url": files.presign_put(files.results_bucket, key, ttl_seconds=ttl, once=True),
        "method": "PUT",
        "key": key,
        "headers": {"If-None-Match": "*"},
        "expires_in": ttl,
    }


def drop_upload_url(
    ports: Ports, caller: Caller, *, object_name: str, filename: str | None, gzip: bool, metadata: dict[str, str]
) -> dict[str, Any]:
    """A presigned PUT into the ingest bucket, under the tenant's own prefix: ``<tenant>/<table>/<name>.csv``. The
    tenant needs no S3 rights of its own, and the URL opens exactly one key for a few minutes. Not once: each PUT in
    that time is a drop of its own, as a file put again at a key is (a conditional write would refuse a tenant's
    second drop of a file name while the first is kept, ``IngestRetentionDays``)."""
    try:
        split_object(object_name)
    except ValueError as exc:
        raise InvalidRequest(str(exc), details={"field": "object"}) from exc
    try:
        refused = options_problem(DropOptions.model_validate(metadata_options(metadata)))
    except ValidationError as exc:
        raise InvalidRequest(f"job options are not valid: {exc.errors()[0]['msg']}") from exc
    if refused:  # else every file put through the URL would make a Failed job, found out only after the upload
        raise InvalidRequest(refused[1], details={"field": refused[0]})
    name = filename or f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    if "/" in name or not name.strip() or len(name) > 200:
        raise InvalidRequest("filename must be a plain file name", details={"field": "filename"})
    # the drop takes .csv and .csv.gz in any case: `Jan.CSV` stays so, and `jan.csv` sent gzip becomes `jan.csv.gz`
    # (not `jan.csv.csv.gz`, nor `Jan.CSV.csv`, the keys and job names the suffix was added to before)
    lower = name.lower()
    if gzip and not lower.endswith(".csv.gz"):
        name += ".gz" if lower.endswith(".csv") else ".csv.gz"
    elif not gzip and not lower.endswith(".csv"):
        name += ".csv"
    files = bulk_ports(ports).files
    key = f"{caller.tenant_id}/{object_name.lower()}/{name}"
    ttl = ports.settings.upload_url_ttl_seconds
    metadata = {k: v for k, v in metadata.items() if k.lower() != GENERATION_METADATA}  # the service's to set
    # Signed in: a URL issued to this tenant loads nothing for a later tenant of the same id, and it marks the file
    # as put through a drop URL, whose options no sidecar overrides (a tenant from before generations: a placeholder)
    metadata[GENERATION_METADATA] = caller.generation or NO_GENERATION
    url = files.presign_put(files.ingest_bucket, key, ttl_seconds=ttl, metadata=metadata)
    headers = {f"x-amz-meta-{k}": v for k, v in metadata.items()}
    return {
        "url": url,
        "method": "PUT",
        "bucket": files.ingest_bucket,
        "key": key,
        "headers": headers,
        "expires_in": ttl,
    }


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
    job = _unexpired(ports, get_job(ports, caller, job_id))
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
            # "has 109 batches" told the client its job was wrong: the bulk concurrency review)
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
                # its load ended before the cancel could stop it (committed, or failed on its own): 200 with the
                # JobComplete job read as the abort accepted (note 33's list)
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


@dataclass(frozen=True)
class ResultFile:
    """An ingest result file: inline when small, else a presigned URL to redirect to."""

    body: bytes | None
    url: str | None


def job_results(ports: Ports, caller: Caller, job_id: str, kind: str) -> ResultFile:
    job = get_job(ports, caller, job_id)
    if job.operation is BulkOperation.QUERY:
        raise InvalidRequest(f"bulk job {job_id} is a query job: read GET /v1/bulk/jobs/{job_id}/results")
    if not job.state.is_terminal:
        raise JobNotFinished(f"bulk job {job_id} is {job.state.value}; results exist once it has ended")
    if not job.results_ready:
        shows = "; it shows JobComplete once they are" if job.results_pending else ""
        raise JobNotFinished(
            f"bulk job {job_id} ended {job.state.value}; its result files are being written{shows}", retry_after=2
        )
    if job.results_unavailable:
        raise ResultsUnavailable(f"bulk job {job_id} has no result files: {job.results_unavailable}")
    if job.state is BulkState.ABORTED and not job.files and not _batches_may_have_expired(ports, job):
        # aborted Open before any batch was stored (by its client, or for being Open too long; no PUT was counted,
        # or its upload URLs were never used): no records, so no files were written, and each lists none (a 404 read
        # as a wrong job id). An aborted job that took batches but lists none lost them to the bucket's expiry, and
        # a Failed job without files is one whose file was replaced, or a late sidecar's report: rows that exist
        # nowhere to list, 404 or 410 below
        return ResultFile(body=outcomes.no_records(job, RESULT_KINDS[kind]), url=None)
    left = _retention_left(ports, job)
    files = bulk_ports(ports).files
    key = results_key(job, RESULT_KINDS[kind])
    size = files.size(key)
    if size is None:
        raise _missing(ports, job, f"bulk job {job_id} has no {kind}")
    if size <= ports.settings.bulk_inline_download_max_bytes:
        return ResultFile(body=files.read_all(key), url=None)
    ttl = max(1, min(ports.settings.presign_ttl_seconds, int(left.total_seconds())))  # never past the retention
    return ResultFile(body=None, url=files.presign_get(files.results_bucket, key, ttl_seconds=ttl))


def _batches_may_have_expired(ports: Ports, job: BulkJob) -> bool:
    """Whether an aborted job's listing of its batches, made as it was aborted, may have missed some to the bucket's
    expiry: only when it took any (``uploads`` counts batches PUT and upload URLs issued) and was aborted at least
    ``ResultRetentionDays`` after it was made (a batch expires that long after it was written, never before the job
    was). An empty listing made sooner is a job that stored none: its URLs went unused."""
    if not job.uploads:
        return False
    aborted_at = job.completed_at or utcnow()
    return aborted_at >= job.created_at + timedelta(days=ports.settings.result_retention_days)


def query_results(ports: Ports, caller: Caller, job_id: str, *, locator: str | None, max_records: int | None) -> Page:
    job = get_job(ports, caller, job_id)
    if job.operation is not BulkOperation.QUERY:
        raise InvalidRequest(f"bulk job {job_id} is an ingest job: read its successfulResults and failedResults")
    if job.state in (BulkState.FAILED, BulkState.ABORTED):
        raise Conflict(
            f"bulk job {job_id} ended {job.state.value}; it has no results", details={"state": job.state.value}
        )
    if job.state is not BulkState.JOB_COMPLETE:
        raise JobNotFinished(f"bulk job {job_id} is {job.state.value}; results exist once it is JobComplete")
    _retention_left(ports, job)
    settings = ports.settings
    wanted = min(max_records or settings.bulk_page_max_records, settings.bulk_page_max_records)
    try:
        return read_page(
            bulk_ports(ports).files,
            ports.page_tokens,
            job,
            locator=locator,
            max_records=wanted,
            max_bytes=settings.bulk_page_max_bytes,
        )
    except NotFound:  # a file the UNLOAD wrote is gone (the message would name the results bucket and key)
        raise _missing(ports, job, f"bulk job {job_id} has lost a file of its results") from None


def _missing(ports: Ports, job: BulkJob, message: str) -> NotFound | Gone:
    """A result file that is not there: never written (a job whose input was replaced lists nothing), 404; or, once
    ``ResultRetentionDays`` passed since its files were written, expired by the results bucket's lifecycle (its
    record lives 30 days), 410 as a query job's results are past their expiry."""
    if utcnow() < _retention_end(ports, job):
        return NotFound(message)
    return _expired(ports, job)


def _retention_end(ports: Ports, job: BulkJob) -> datetime:
    """When a job's result files pass ``ResultRetentionDays`` since they were written. A query job's files are its
    UNLOAD's parts, written from its start on (the lifecycle takes one written before a midnight UTC a day before
    those of an UNLOAD that ended after it); an ingest job's are written once it ends."""
    if job.operation is BulkOperation.QUERY:
        written = job.started_at or job.created_at
    else:
        written = job.completed_at or job.updated_at
    return written + timedelta(days=ports.settings.result_retention_days)


def _retention_left(ports: Ports, job: BulkJob) -> timedelta:
    """How long the job's result files are served yet; past their retention, 410. The bucket's lifecycle deletes
    them up to a day later (it rounds to the next midnight UTC, and S3 deletes when it gets to it): until then they
    were still read and their URLs signed for the whole presign time (found by review), where a query job's results
    end at their expiry (:func:`spectra.delivery.results_body`)."""
    left = _retention_end(ports, job) - utcnow()
    if left <= timedelta(0):
        raise _expired(ports, job)
    return left


def _expired(ports: Ports, job: BulkJob) -> Gone:
    days = ports.settings.result_retention_days
    return Gone(
        f"the result files of bulk job {job.job_id} are kept {days} days after they were written and have expired;"
        " run the job again",
        details={"retention_days": days},
    )
