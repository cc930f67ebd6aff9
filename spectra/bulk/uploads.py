"""A bulk job's data as the API takes it (Salesforce Bulk API 2.0's PUT of batches): batches sent to the API,
checked as the job will read them (gzip, header line; JSON records rewritten as CSV), presigned upload URLs for
larger files, and drop URLs into the ingest bucket. Under an ``Idempotency-Key`` a repeated request is answered with
its first batch; a stored batch whose count fails is taken back.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from spectra.bulk.csvfiles import HEADER_MAX_BYTES, first_line_names_no_column
from spectra.bulk.drops import GENERATION_METADATA, NO_GENERATION, DropOptions, metadata_options, options_problem
from spectra.bulk.files import FileUnreadable, gunzipped, starts_as_gzip
from spectra.bulk.jsonfiles import JSON_MEDIA_TYPES, as_csv
from spectra.bulk.lifecycle import bulk_ports
from spectra.bulk.models import BulkJob, BulkState, KeyedBatch, SourceFile, split_object
from spectra.bulk.service import UPLOAD_STAMP, get_job, unexpired
from spectra.errors import BadGzip, Conflict, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from spectra.ports import BulkPorts, Ports
from spectra.tenants import Caller

logger = logging.getLogger(__name__)

#: A gzip JSON batch may inflate to this many times the request limit: the API holds its text and its CSV while
#: rewriting it, one record at a time (twice 8 MiB of text and CSV, in a 512 MB function)
JSON_INFLATED_FACTOR = 2
#: A gzip CSV batch is read to its end when it inflates to at most this many times the request limit (64 MiB of 4),
#: CSV compressing up to 16:1 at the largest batch, the output dropped as it comes (about 0.25 s of inflating on one
#: core). Past that its end is left to the job's read: a 4 MiB body of one repeated byte inflates to 4 GiB,
#: read through in about 17 s of a core, past the API function's 30 s on a 512 MB Lambda's share of one. Not a limit:
#: a CSV batch may inflate to any size.
GZIP_CHECKED_FACTOR = 16


def _open_job(ports: Ports, caller: Caller, job_id: str, job: BulkJob | None = None) -> BulkJob:
    """The job (``job``, as already read, else read now), or 409 when it is not Open."""
    job = job or unexpired(ports, get_job(ports, caller, job_id))
    if job.state is not BulkState.OPEN:
        raise Conflict(
            f"bulk job {job_id} is {job.state.value}; data can be uploaded only while it is Open",
            details={"state": job.state.value},
        )
    return job


def _upload_key(job: BulkJob, *, gzip: bool) -> str:
    """Upload keys sort in upload order; the random tail keeps two concurrent uploads apart."""
    stamp = datetime.now(UTC).strftime(UPLOAD_STAMP)
    name = f"{stamp}-{secrets.token_hex(4)}.csv" + (".gz" if gzip else "")
    return f"{job.tenant_id}/{job.job_id}/uploads/{name}"


def _inflated_head(body: bytes, *, most: int) -> tuple[bytes, bool]:
    """A gzip batch's first :data:`HEADER_MAX_BYTES` inflated, and whether that is all of it, the batch read as its job
    reads it (concatenated members followed) through to its end, or until ``most`` bytes have come: 400 ``bad_gzip``
    for what the job would refuse. Read no further than its first MB, a stream that does not inflate (gzip cut short,
    or followed by NUL padding or other bytes that are no gzip member) would be answered 201 and then fail the whole
    job ``bad_gzip`` at UploadComplete, its good batches with it."""
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
    ``,,,``; COPY's IGNOREHEADER would skip it and load the header as a row, and the job refuses it as "the first
    line has no column names"). Taken 201, such a batch would fail the whole job, its other batches with it, naming a
    stored file the client never saw."""
    text = head.removeprefix(b"\xef\xbb\xbf")
    if whole and not text.strip(b" \t\r\n"):
        return "holds no header line" + (" and no rows" if text else "") + ": it is empty but for white space"
    first, ended, _ = text.partition(b"\n")
    if (ended or whole) and first_line_names_no_column(first.decode("utf-8", "surrogateescape"), delimiter):
        return "starts with a line that names no column (blank, or empty fields alone): it must be the header line"
    return None


def _header_encoding_problem(body: bytes, *, whole: bool = True) -> str | None:
    """What makes a plain batch's first line no UTF-8 header, if anything: a file saved as UTF-16 (Excel's "Unicode
    Text", PowerShell's ``>``) or in a spreadsheet's own encoding, taken 201, would fail the whole job, its other
    batches with it, naming a stored file the client never saw. The bytes up to the first line break are the
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
    job = unexpired(ports, get_job(ports, caller, job_id))
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
    # changed and lists again (spectra.bulk.service._close). Refused: the job was closed or aborted while the batch
    # was on its way, or batches sent at once passed the limit together (this one is taken back: the job would list
    # it).
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
            # own by updated_at): taken back, the batch answered 201 would be gone from the job
            return stored
        if recorded is not None:  # a copy of this request counted its batch first
            _take_back(bulk, job_id, stored)
            first = _keyed_repeat(closed, name, digest, idempotency_key)
            return _keyed_source(ports, first, size=len(body), gzip=gzip)
        if closed is not None and closed.state is BulkState.OPEN:
            if not _take_back(bulk, job_id, stored):
                raise _too_many(job_id, most)
            # a close listed it between the read and the take-back: the job's (a 400 telling the client to send it
            # to another job would load it twice)
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
    the digests match) if its object is gone while the job is ``Open``: a PUT whose count lands while the write
    raises, and whose reads of the job fail too, takes its object back though the job records it; answered 201
    without it, the batch's rows would never be loaded. Its key is the one the job records, and it is
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
    Taken back then, its key's repeat would be answered 201 for an object gone, its rows never loaded.
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
    (:meth:`~spectra.bulk.store.BulkJobStore.withdraw`): a look at the job, then the delete, would let a close list
    the batch between the two, and the load fail "deleted before the job read it", every batch of the job unloaded
    (a keyed retry racing UploadComplete, a batch refused at the limit)."""
    try:
        withdrawn = bulk.jobs.withdraw(job_id, stored.key)
        if withdrawn is not None and all(batch.key != stored.key for batch in withdrawn.keyed_batches.values()):
            bulk.files.discard(stored)
            return False
        # Open, its count landed unseen (the job records it under its key): the job's, kept, as a close lists it
        # (spectra.bulk.service._counted_batches); deleted after that close, it would fail the load
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
    job = unexpired(ports, get_job(ports, caller, job_id))
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
    # (not `jan.csv.csv.gz`, nor `Jan.CSV.csv`)
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
