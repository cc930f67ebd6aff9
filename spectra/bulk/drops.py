"""The S3 door: a CSV put at ``s3://<ingest bucket>/<tenant>/<table>/<name>.csv`` (or ``.csv.gz``) becomes a bulk
ingest job, the same kind of job the Bulk API makes, run the same way, listed in the same place.

* The job's options come from a sidecar ``<name>.json`` put *before* the file, or from the object's metadata
  (``x-amz-meta-operation`` ...), the sidecar winning; the default is an insert with commas and LF. A file put
  through a drop URL (``POST /v1/bulk/uploads``) runs with the options the URL signed in, and no sidecar applies.
* The job id is derived from the object's identity (bucket, key, version, ETag) and the write's ``sequencer``, so
  the same S3 event delivered twice (SQS is at-least-once) makes one job and loads once, while a new upload to the
  same key is a new job, even of the very same file (the ingest bucket is not versioned, so only the sequencer tells
  the two writes apart).
* A drop that cannot be loaded as it is (a key outside ``<tenant>/<table>/``, a bad sidecar) still becomes a job,
  Failed with the reason, so the tenant sees what happened. The reason is stored with the job when it is made, so
  if failing it is cut short (the function dies, S3 fails), the event's redelivery finishes the failing and the
  executor, should the reconciler queue it meanwhile, fails it rather than loading it with default options.
* Only a drop naming no active tenant has no one to tell: it is logged and counted, and the object is tagged
  ``spectra-rejected``.
* A sidecar put *after* its file (``aws s3 sync`` uploads in parallel) came too late for the file's job. The
  executor reads the sidecar again before it loads (:func:`late_sidecar_error`) and fails the job ``late_sidecar``
  if it asks for other options (nothing loaded: put the file again). The sidecar's own event looks for the job among
  the tenant's jobs made since :data:`LATE_SIDECAR_WINDOW` before the sidecar was written, however late its event
  is handled (the newest :data:`LATE_SIDECAR_JOBS`): one started already is named by a Failed job for the sidecar's
  key; one not started is left to the executor's check. So a file meant to be upserted and inserted instead is never
  silent, but for a sidecar put in the moment between the executor's read and its load whose event misses the job in
  the (eventually consistent) tenant index.
* Every object put in the bucket is announced (a suffix filter is case-sensitive and would miss ``DATA.CSV``); a
  sidecar (``<tenant>/<table>/<name>.json`` or ``.JSON``) and a folder marker (a key ending ``/``) make no job, and
  ``.csv`` / ``.csv.gz`` match in any case. A file with no sidecar of its own but one named after it with its
  extension kept (``jan.csv.json``) or ending ``.json`` in another case (``jan.Json``), which no file reads, is
  refused ``invalid_drop`` (nothing loaded), by its own event or, when that sidecar came after the event, by the
  executor's check. (The sidecar of a file named ``jan.csv.csv`` is ``jan.csv.json``, read for it as usual.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events import BulkJobQueuedMessage, ErrorInfo, S3EventRecord
from spectra import logs
from spectra.bulk.files import CLOCK_LEEWAY, FileReplaced, WrittenBefore
from spectra.bulk.lifecycle import bulk_ports, finish_bulk_job
from spectra.bulk.models import (
    BULK_JOB_ID_PREFIX,
    COLUMN_PATTERN,
    BulkJob,
    BulkOperation,
    BulkState,
    ColumnDelimiter,
    JobSource,
    LineEnding,
    SourceFile,
    split_object,
)
from spectra.identity import before_reactivation
from spectra.jobs import utcnow
from spectra.ports import Ports
from spectra.tenant_cache import tenant_record
from spectra.tenants import TENANT_ID_PATTERN, Tenant, same_generation

logger = logging.getLogger(__name__)

SIDECAR_MAX_BYTES = 64 * 1024
#: S3's longest key, in UTF-8 bytes
MAX_KEY_BYTES = 1024
LATE_SIDECAR_WINDOW = timedelta(minutes=5)
#: A dropped file written this long after the write its event announced was put again (S3 keeps whole seconds)
PUT_AGAIN_MARGIN = timedelta(seconds=2)
LATE_SIDECAR_JOBS = 100
#: Object metadata a drop URL signs in: the generation of the tenant it was issued to (spectra/tenants.py). A file put
#: through the URL of an earlier tenant of the same id (deleted, then created again) is not loaded for the new one.
GENERATION_METADATA = "spectra-generation"
#: The generation a drop URL signs in for a tenant from before generations (never one drawn: those are hex)
NO_GENERATION = "none"
#: A drop that makes no job is tagged ``spectra-rejected=<why>``, one of these; the ingest bucket's lifecycle expires
#: each (template.yaml), as it does loaded drops: a file for a tenant since deleted is not kept past the retention.
REJECTED_TAG = "spectra-rejected"
NO_ACTIVE_TENANT, PREVIOUS_TENANT = REJECTIONS = ("no-active-tenant", "previous-tenant")
_SUFFIXES = (".csv.gz", ".csv")
#: a sidecar's name: the data file's, with one of these instead of .csv / .csv.gz (looked for in this order)
SIDECAR_SUFFIXES = (".json", ".JSON")
_TENANT_ID = re.compile(TENANT_ID_PATTERN)


@dataclass(frozen=True)
class DroppedObject:
    """What an S3 ObjectCreated notification says about the object (the key already URL-decoded)."""

    bucket: str
    key: str
    size: int
    etag: str = ""
    version_id: str | None = None
    sequencer: str | None = None  # S3's: one per write of the key, the same in every copy of its notification
    written_at: datetime | None = None  # the notification's eventTime: when S3 took the write

    @classmethod
    def from_notification(cls, record: S3EventRecord) -> DroppedObject:
        """S3 event records carry the key URL-encoded ("a b.csv" arrives as "a+b.csv")."""
        obj = record.s3.object
        return cls(
            bucket=record.s3.bucket.name,
            key=unquote_plus(obj.key),
            size=obj.size,
            etag=obj.eTag,
            version_id=obj.versionId,
            sequencer=obj.sequencer,
            written_at=record.eventTime,
        )

    @property
    def job_id(self) -> str:
        parts = [self.bucket, self.key, self.version_id or "", self.etag.strip('"')]
        if self.sequencer:  # the write itself: in an unversioned bucket the same file put again has the same ETag
            parts.append(self.sequencer)
        identity = "\n".join(parts)
        digest = hashlib.sha256(identity.encode()).digest()[:16]
        return BULK_JOB_ID_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


class DropOptions(BaseModel):
    """A drop's job options, with the Bulk API's field names."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    operation: BulkOperation = BulkOperation.INSERT
    externalIdFieldName: str | None = Field(default=None, pattern=COLUMN_PATTERN)  # as the API's
    columnDelimiter: ColumnDelimiter = ColumnDelimiter.COMMA
    lineEnding: LineEnding = LineEnding.LF


_METADATA_FIELDS = {name.lower(): name for name in DropOptions.model_fields}


def metadata_options(metadata: dict[str, str]) -> dict[str, str]:
    """The job options among an object's metadata (S3 gives its names lower-cased), under their own names."""
    return {_METADATA_FIELDS[key]: value for key, value in metadata.items() if key in _METADATA_FIELDS}


def options_problem(options: DropOptions) -> tuple[str, str] | None:
    """``(field, reason)`` when a drop with these options can never be loaded: the door fails such a drop, and the
    API refuses a drop URL for it."""
    if options.operation is BulkOperation.QUERY:
        return "operation", "a dropped file cannot run a query"
    if options.operation.needs_external_id and not (
        options.externalIdFieldName or options.operation.default_external_id
    ):
        return "externalIdFieldName", f"operation {options.operation.value} needs externalIdFieldName"
    return None


class DropRefused(Exception):
    pass


def accept_drop(ports: Ports, dropped: DroppedObject) -> BulkJob | None:
    """Make (once) the job for a dropped file and queue it (again, for a repeated event of a job not started yet);
    None for a repeated event or a drop nobody owns."""
    bulk = bulk_ports(ports)
    if dropped.bucket != bulk.files.ingest_bucket:
        # only the ingest bucket notifies the queue (its policy): a record naming another was put there by hand
        logger.warning("S3 record for s3://%s/%s: not the ingest bucket; not loaded", dropped.bucket, dropped.key)
        return None
    parts = dropped.key.split("/")
    if len(parts) == 3 and parts[-1].endswith(SIDECAR_SUFFIXES):
        # a sidecar: read when its data file comes (a sidecar elsewhere is a misplaced drop, told below)
        return _late_sidecar(ports, dropped)
    if dropped.key.endswith("/") and not dropped.size:
        return None  # a folder marker (the S3 console's "Create folder"): not a file, nothing to load or tell
    tenant = ports.tenants.get(parts[0]) if _is_tenant_id(parts[0]) else None
    if tenant is not None:
        logs.bind(tenant_id=tenant.tenant_id)
    if tenant is None or not tenant.active:
        logger.warning("dropped file s3://%s/%s names no active tenant; not loaded", dropped.bucket, dropped.key)
        bulk.files.tag(SourceFile(bucket=dropped.bucket, key=dropped.key), REJECTED_TAG, NO_ACTIVE_TENANT)
        return None
    head = bulk.files.head(dropped.bucket, dropped.key)
    metadata = {key.lower(): value for key, value in ((head or {}).get("Metadata") or {}).items()}
    issued_to = metadata.get(GENERATION_METADATA)
    if (issued_to and tenant.generation and issued_to != tenant.generation) or _before(dropped, tenant):
        # through a drop URL issued to an earlier tenant of the same id (deleted, then created again), or put
        # before this tenant was created (its event handled late: a backlog, a redrive from the dead-letter queue)
        logger.warning("dropped file s3://%s/%s was a previous tenant's", dropped.bucket, dropped.key)
        bulk.files.tag(SourceFile(bucket=dropped.bucket, key=dropped.key), REJECTED_TAG, PREVIOUS_TENANT)
        return None
    if before_reactivation(dropped.written_at, tenant):
        # put while the tenant was inactive (a leaked key's drop URL), or before it was deactivated, and handled
        # only once it was active again (an event's retry, a redrive): deactivating it is meant to stop such work
        logger.warning("dropped file s3://%s/%s was put before the tenant was reactivated", dropped.bucket, dropped.key)
        bulk.files.tag(SourceFile(bucket=dropped.bucket, key=dropped.key), REJECTED_TAG, NO_ACTIVE_TENANT)
        return None
    name = parts[-1]
    problem = None
    options = DropOptions()
    table = parts[1] if len(parts) == 3 else ""
    if len(parts) == 3 and name.lower().endswith(".json"):  # a sidecar in another case (.Json): read by no file
        named = name[: -len(".json")]
        problem = ErrorInfo(
            code="invalid_key",
            message=f"{dropped.key}: a sidecar ends .json or .JSON, so this one is not read; put it again as"
            f" {_stem(named, _SUFFIXES) or named}.json, then its file",  # jan.csv.Json: jan.json
        )
    elif len(parts) != 3 or not name.lower().endswith(_SUFFIXES):
        problem = ErrorInfo(
            code="invalid_key",
            message=f"{dropped.key}: drop files at <tenant>/<table>/<name>.csv or .csv.gz (any case), nothing deeper"
            " or shallower",
        )
    else:
        try:
            split_object(table)
            options = _options(ports, dropped, metadata, tenant)
        except (ValueError, DropRefused) as exc:
            problem = ErrorInfo(code="invalid_drop", message=f"{dropped.key}: {exc}")
        if problem is None and (refused := options_problem(options)):
            problem = ErrorInfo(code="invalid_drop", message=f"{dropped.key}: {refused[1]}")
            if options.operation is BulkOperation.QUERY:
                # a load refused, not a query job: a query job has no unprocessedrecords, so the file's records would
                # be listed nowhere; the drop's default operation stands in
                options = options.model_copy(update={"operation": BulkOperation.INSERT})
    source = SourceFile(
        bucket=dropped.bucket,
        key=dropped.key,
        size=dropped.size,
        gzip=dropped.key.lower().endswith(".gz"),
        etag=dropped.etag.strip('"') or None,
        written_at=dropped.written_at,
        through_drop_url=issued_to is not None,
    )
    # the problem is recorded with the job: a refused drop whose failing is interrupted is never loaded
    job, created = bulk.jobs.create(_drop_job(tenant, dropped, table, options, files=[source], error=problem))
    if job.error is not None and not job.state.is_terminal:  # refused: fail it (again, if failing it was cut short)
        return finish_bulk_job(ports, job, BulkState.FAILED, error=job.error, unstarted=True)
    if not created and job.state is not BulkState.UPLOAD_COMPLETE:
        logger.info(
            "bulk job %s for s3://%s/%s is %s already", job.job_id, dropped.bucket, dropped.key, job.state.value
        )
        return None
    # Queued again when a delivery of the event finds its job not started: the delivery that made it may never have
    # queued it (the queue refused, the function died). A failed send propagates, so the event comes back; the job
    # stays as it is rather than fail, since nothing is wrong with the file. The executor starts a job once, however
    # many messages name it (spectra/bulk/lifecycle.py).
    ports.queue.send(BulkJobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id))
    if not created:
        logger.info(
            "bulk job %s for s3://%s/%s exists, not started: queued again", job.job_id, dropped.bucket, dropped.key
        )
        return None
    return job


def _before(dropped: DroppedObject, tenant: Tenant) -> bool:
    """Whether the dropped write came before the tenant was created (less :data:`CLOCK_LEEWAY`: S3's clock and the
    one that stamped the tenant differ): a file put for an earlier tenant of the same id, whose event was handled
    only after the id was deleted and created again, is not the new tenant's to load."""
    return dropped.written_at is not None and dropped.written_at < _own_since(tenant)


def _own_since(tenant: Tenant) -> datetime:
    """The earliest write that can be the tenant's (less :data:`CLOCK_LEEWAY`): an object written before, a data
    file or a sidecar, was put for an earlier tenant of the same id (deleted, then created again; the bucket keeps
    an untagged file, and every sidecar, until someone deletes it), or staged before the tenant was created. Not its
    reactivation: a standing sidecar (``daily.json`` beside each day's ``daily.csv``) put while it was active stays its
    own (were the earliest write counted from the reactivation, every such drop would fail after a deactivation), and a
    drop URL, all a tenant's key gets, stores data files only."""
    return tenant.created_at - CLOCK_LEEWAY


def _late_sidecar(ports: Ports, dropped: DroppedObject) -> BulkJob | None:
    """A sidecar that came after its file: fail the file's job if it has not started, else report it (see the module
    docstring). None when no recent job of its file runs with other options than it sets."""
    tenant_id, table, _name = dropped.key.split("/")
    tenant = ports.tenants.get(tenant_id) if _is_tenant_id(tenant_id) else None
    if tenant is None or not tenant.active:
        return None
    logs.bind(tenant_id=tenant_id)
    stem = _stem(dropped.key, SIDECAR_SUFFIXES)
    sidecar = _sidecar_options(ports, dropped.bucket, stem, since=_own_since(tenant), older="ignored")
    if sidecar is None:
        return None  # replaced or deleted since, or an earlier tenant's (its event handled late)
    bulk = bulk_ports(ports)
    # the window runs back from the sidecar's write, not from this handling of its event, which a backlog, failed
    # receives or a redrive from the DLQ can put minutes later
    since = (dropped.written_at or utcnow()) - LATE_SIDECAR_WINDOW
    # the tenant's drops only (README: "or 100 drops"): counting its Bulk API and query jobs against the 100 would let
    # a tenant using both doors have a late sidecar go unreported, its file loaded as an insert
    for job in bulk.jobs.list_for_tenant(tenant_id, limit=LATE_SIDECAR_JOBS, source=JobSource.S3_DROP).jobs:
        if job.created_at < since:
            break
        if not same_generation(tenant.generation, job.tenant_generation):
            continue  # a predecessor's (the id deleted and created again): not this tenant's to hear of
        if job.source is not JobSource.S3_DROP or not _meant_for(job.object_key or "", stem):
            continue
        own = _stem(job.object_key or "", _SUFFIXES)
        if own != stem and _sidecar_options(ports, dropped.bucket, own or "", since=None, older="ignored"):
            continue  # a stray sidecar named after a file that has (and ran with) one of its own
        # a sidecar that is not valid asks for something the job cannot be known to run with: never silent either
        differs = (
            f"options it cannot give ({sidecar.invalid})"
            if sidecar.options is None
            else _differences(job, sidecar.asked)
        )
        if not differs or job.state in (BulkState.FAILED, BulkState.ABORTED):
            continue
        if job.files and job.files[0].through_drop_url:
            continue  # it runs with the options its drop URL signed in, whatever the sidecar says
        if job.state is BulkState.UPLOAD_COMPLETE:
            # Not started, as the (lagging) index says: read it. A job still waiting is left to the executor, which
            # reads the sidecar again before it loads, once it has checked that the file itself was not put again.
            job = bulk.jobs.get(job.job_id) or job
            if job.state in (BulkState.UPLOAD_COMPLETE, BulkState.FAILED, BulkState.ABORTED):
                continue
        data_name, name = job.object_key.rsplit("/", 1)[-1], dropped.key.rsplit("/", 1)[-1]
        named = "" if _stem(job.object_key, _SUFFIXES) == stem else f" (name it {_stem(data_name, _SUFFIXES)}.json)"
        error = ErrorInfo(
            code="late_sidecar",
            message=f"{name} came after {data_name}, whose job {job.job_id} was {job.state.value} by then and may have"
            f" loaded without it; the sidecar asks for {differs}. Put a sidecar before its file{named} (aws s3 sync"
            " uploads files in parallel), or send the options as object metadata",
        )
        options = sidecar.options or DropOptions()
        report, _ = bulk.jobs.create(_drop_job(tenant, dropped, table, options, files=[], error=error))
        if not report.state.is_terminal:
            return finish_bulk_job(ports, report, BulkState.FAILED, error=report.error, unstarted=True)
        return None
    return None


def _drop_job(
    tenant: Tenant,
    dropped: DroppedObject,
    table: str,
    options: DropOptions,
    *,
    files: list[SourceFile],
    error: ErrorInfo | None,
) -> BulkJob:
    """The job a drop makes, ``UploadComplete`` (``error``: to be failed at once)."""
    now = utcnow()
    return BulkJob(
        job_id=dropped.job_id,
        tenant_id=tenant.tenant_id,
        tenant_generation=tenant.generation,
        db_user=tenant.db_user or "",
        object=table.lower() or "-",
        operation=options.operation,
        external_id_field=(options.externalIdFieldName or options.operation.default_external_id or "").lower() or None,
        column_delimiter=options.columnDelimiter,
        line_ending=options.lineEnding,
        source=JobSource.S3_DROP,
        object_key=dropped.key,
        state=BulkState.UPLOAD_COMPLETE,
        files=files,
        created_at=now,
        updated_at=now,
        queued_at=now,
        error=error,
    )


def late_sidecar_error(ports: Ports, job: BulkJob) -> ErrorInfo | None:
    """The executor's check before it loads a dropped file: its sidecar, read now (S3 reads are consistent), asks for
    other options than the job runs with. The sidecar came after the file's event was handled; its own event may not
    find the job (the jobs' tenant index is eventually consistent, and the two events can be handled together), so
    the job fails here, before anything is loaded, rather than load with the defaults unseen. Raises
    :class:`FileReplaced` when the file itself was put again since the job was made (its ETag, or the write's time):
    the newer upload's own job loads it, with whatever sidecar came with it."""
    if job.source is not JobSource.S3_DROP or not job.object_key or not job.files:
        return None
    stem = _stem(job.object_key, _SUFFIXES)
    if stem is None:
        return None
    source = job.files[0]
    head = bulk_ports(ports).files.head(source.bucket, source.key)
    if head is None:
        return None  # deleted: the load fails saying so
    written = head.get("LastModified")
    # the dropped write's time, as its notification gave it (a job stored without it: when the job was made)
    dropped_at = source.written_at or job.created_at
    if (source.etag and str(head.get("ETag", "")).strip('"') != source.etag) or (
        isinstance(written, datetime) and written > dropped_at + PUT_AGAIN_MARGIN
    ):
        # Put again since the dropped write, maybe with its sidecar (a changed file and sidecar, in the right order):
        # the newer upload's own job loads it, with that sidecar. The same bytes put again have the same ETag, so
        # the write's time tells (the job would otherwise load them too, and its sidecar check blame the sidecar),
        # counted from the write rather than from the job: the first write's event may be handled long after both
        # (a backlog, a redrive from the dead-letter queue).
        raise FileReplaced(
            f"{source.key} was replaced by a newer upload before this job read it (put again after the dropped"
            " write); the newer file is loaded by its own job"
        )
    if source.through_drop_url or _through_drop_url(head):
        return None  # its options are the ones the drop URL signed in, whatever sidecar is there
    # the record identity_for has just read: a sidecar older than the tenant was not the job's to be made with
    tenant = tenant_record(ports.tenants, job.tenant_id, max_age=ports.settings.tenant_cache_seconds)
    sidecar = _sidecar_options(ports, source.bucket, stem, since=_own_since(tenant) if tenant else None)
    if sidecar is None:
        # one named after the file with its extension, put after the file's event was handled
        misnamed = _misnamed_sidecar(ports, source.bucket, source.key, stem)
        return ErrorInfo(code="invalid_drop", message=f"{job.object_key}: {misnamed}") if misnamed else None
    if sidecar.options is None:
        # put (or spoiled) after the job was made, and not valid: what the tenant meant is unknown, and loading with
        # the defaults (an insert where an upsert was meant) would be silent
        return ErrorInfo(
            code="late_sidecar",
            message=f"its sidecar {sidecar.name} came after it and is not valid ({sidecar.invalid}); nothing was"
            f" loaded: put {job.object_key.rsplit('/', 1)[-1]} again with a valid sidecar",
        )
    differs = _differences(job, sidecar.asked)
    if not differs:
        return None
    return ErrorInfo(
        code="late_sidecar",
        message=f"its sidecar {sidecar.name} came after it and asks for {differs}; nothing was loaded: put"
        f" {job.object_key.rsplit('/', 1)[-1]} again to load it with the sidecar's options",
    )


def _differences(job: BulkJob, wanted: dict[str, Any]) -> str:
    """What the sidecar's fields ask for that the job does not run with, as text ("" when nothing)."""
    running = {
        "operation": job.operation,
        "externalIdFieldName": job.external_id_field,
        "columnDelimiter": job.column_delimiter,
        "lineEnding": job.line_ending,
    }
    differs = []
    for field, value in wanted.items():
        ran = running[field]
        if field == "externalIdFieldName":
            # none named (null) is the key its operation takes by default, as the job was made with it
            operation = BulkOperation(wanted.get("operation", job.operation))
            value = (value or operation.default_external_id or "").lower() or None
        if value != ran:
            shown = value.value if hasattr(value, "value") else value
            differs.append(f"{field} {shown}")
    return ", ".join(differs)


def _is_tenant_id(value: str) -> bool:
    return _TENANT_ID.fullmatch(value) is not None


def _stem(key: str, suffixes: tuple[str, ...]) -> str | None:
    """The key without the first of ``suffixes`` it ends with (in any case); None when it ends with none."""
    return next((key[: -len(s)] for s in suffixes if key.lower().endswith(s.lower())), None)


def _read_sidecar(
    ports: Ports, bucket: str, stem: str, *, since: datetime | None, older: str = "refused"
) -> tuple[str, dict[str, Any]] | None:
    """The sidecar of the data files named ``stem`` (``<stem>.json``, else ``<stem>.JSON``): its name and document, or
    None. One written before ``since`` (:func:`_own_since`) was not put for this tenant: an earlier tenant's of the id
    (deleted, then created again; sidecars never expire), or one staged before the tenant was created. Its options are
    not this tenant's to load with, nor is loading without them silent: it is ``refused`` (:class:`DropRefused`, saying
    why; ignored, an upsert staged early would load as an insert), or, with ``older="ignored"``, counts as none (the
    sidecar's own event, handled late: the earlier tenant's, and nothing to report to this one)."""
    files = bulk_ports(ports).files
    for suffix in SIDECAR_SUFFIXES:  # DATA.CSV's sidecar may be DATA.JSON
        name = f"{stem.rsplit('/', 1)[-1]}{suffix}"
        if len((stem + suffix).encode()) > MAX_KEY_BYTES:
            return None  # no such object can exist, and S3 answers a read of it 400 KeyTooLongError, not 404
        try:
            sidecar = files.read_small(bucket, stem + suffix, limit=SIDECAR_MAX_BYTES, written_since=since)
        except ValueError as exc:  # past the limit (the storage layer's reason names the bucket: tenants are not told)
            raise DropRefused(f"sidecar {name} is larger than {SIDECAR_MAX_BYTES} bytes") from exc
        except WrittenBefore as exc:
            if older == "ignored":
                continue
            raise DropRefused(
                f"sidecar {name} was written before this tenant was created (an earlier tenant's of the id, or"
                f" staged early), so its options are not taken: delete it, or put it again, then put the file again"
            ) from exc
        if sidecar is None:
            continue
        try:
            document = json.loads(sidecar, object_pairs_hook=_fields_once)
            if not isinstance(document, dict):
                raise ValueError("it must be a JSON object")
        except (ValueError, RecursionError) as exc:
            raise DropRefused(f"sidecar {name} is not a JSON object: {exc}") from exc
        return name, document
    return None


def _fields_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose fields each come once: of two ``operation`` fields, neither silently wins."""
    document = dict(pairs)
    if len(document) != len(pairs):
        repeated = sorted(key for key, times in Counter(key for key, _ in pairs).items() if times > 1)
        raise ValueError(f"a field is given more than once: {', '.join(repeated)[:200]}")
    return document


def _through_drop_url(head: dict[str, Any] | None) -> bool:
    """Whether the object was put through a drop URL, which signs the tenant's generation into its metadata."""
    metadata = (head or {}).get("Metadata") or {}
    return any(key.lower() == GENERATION_METADATA for key in metadata)


#: Problems a refused sidecar's job error lists.
MAX_LISTED_PROBLEMS = 10


def _options(ports: Ports, dropped: DroppedObject, metadata: dict[str, str], tenant: Tenant) -> DropOptions:
    """The object's metadata, overridden by a sidecar ``<name>.json`` next to it, except for a file put through a
    drop URL: the API checked and signed its options (and tenants cannot put sidecars: a drop URL names a ``.csv``),
    so a sidecar someone else left under the name (never expired; perhaps for an earlier tenant of the same id)
    cannot turn the tenant's insert into a delete. Nor can one written before the tenant was created, an earlier
    tenant's of the id, for a file put straight into the bucket."""
    values = metadata_options(metadata)
    if GENERATION_METADATA in metadata:  # put through a drop URL
        sidecar = None
    else:
        stem = _stem(dropped.key, _SUFFIXES) or dropped.key
        sidecar = _read_sidecar(ports, dropped.bucket, stem, since=_own_since(tenant))
        if sidecar is None and (misnamed := _misnamed_sidecar(ports, dropped.bucket, dropped.key, stem)):
            raise DropRefused(misnamed)
    if sidecar is not None:
        values.update(sidecar[1])
    try:
        return DropOptions.model_validate(values)
    except ValidationError as exc:
        raise DropRefused(f"job options are not valid: {_problems(exc)}") from exc


def _meant_for(key: str, stem: str) -> bool:
    """Whether the sidecar of the data files named ``stem`` is, or was meant as, the data file ``key``'s: its own
    (``jan.json`` for ``jan.csv``), or named after it with its extension kept (``jan.csv.json``, see
    :func:`_misnamed_sidecar`)."""
    own = _stem(key, _SUFFIXES)
    return own is not None and stem in (own, key, own + key[len(own) : len(own) + len(".csv")])


def _misnamed_sidecar(ports: Ports, bucket: str, key: str, stem: str) -> str | None:
    """Why the data file ``key`` (``stem`` less its extension), which has no sidecar of its own, is not to be loaded
    with the defaults: a sidecar beside it that no file reads but that was meant for it, named after the file with
    its extension kept (``jan.csv.json``, ``jan.csv.gz.json``, in any case of ``.json``), or with ``.json`` in a case
    other than the two a sidecar is read in (``jan.Json``). Its options were meant for the file: loaded with the
    defaults, a file whose sidecar asks for an upsert would be inserted, and nothing would say why. None when there is
    none. A few listings per drop without a sidecar, each of names that start like such a sidecar's only (not every name
    starting ``jan.``: a folder of ``jan.2024-…`` files and their sidecars can fill the first page and push the one
    meant for ``jan.csv`` past it)."""
    files = bulk_ports(ports).files
    extension = key[len(stem) : len(stem) + len(".csv")]  # as the key spells it: .csv, .CSV
    right = f"{stem.rsplit('/', 1)[-1]}{SIDECAR_SUFFIXES[0]}"
    # ".j"/".J": a folder of rotated copies (daily.csv.20240101, ...) is not listed at each drop
    prefixes = dict.fromkeys(base + end for base in (key, stem + extension, stem) for end in (".j", ".J"))
    possible = [prefix for prefix in prefixes if len(f"{prefix}son".encode()) <= MAX_KEY_BYTES]  # as _read_sidecar
    for other in (found for prefix in possible for found in files.keys_starting(bucket, prefix)):
        name = other.rsplit("/", 1)[-1]
        if any(other.startswith(base) and other[len(base) :].lower() == ".json" for base in (key, stem + extension)):
            return (
                f"sidecar {name} keeps the file's extension, so it is not read for it (a sidecar is named after its"
                f" file less .csv or .csv.gz), and loading it without its options would be silent: put the sidecar"
                f" again as {right}, then the file"
            )
        suffix = other[len(stem) :]
        if suffix.lower() == ".json" and suffix not in SIDECAR_SUFFIXES:
            return (
                f"sidecar {name} ends {suffix}, so it is not read for it (a sidecar ends .json or .JSON), and"
                f" loading it without its options would be silent: put the sidecar again as {right}, then the file"
            )
    return None


def _problems(exc: ValidationError) -> str:
    """The first few of a refused sidecar's problems, each location cut (a sidecar of thousands of bad keys would
    make an error past what a job record holds), and how many more."""
    errors = exc.errors()
    listed = "; ".join(
        f"{'.'.join(map(str, e['loc']))[:100] or 'options'}: {e['msg']}" for e in errors[:MAX_LISTED_PROBLEMS]
    )
    return listed + (f"; and {len(errors) - MAX_LISTED_PROBLEMS} more" if len(errors) > MAX_LISTED_PROBLEMS else "")


@dataclass(frozen=True)
class _LateSidecar:
    name: str
    options: DropOptions | None  # None: not valid
    asked: dict[str, Any]  # the fields it sets, as the options read them
    invalid: str | None = None  # why it is not valid


def _sidecar_options(
    ports: Ports, bucket: str, stem: str, *, since: datetime | None, older: str = "refused"
) -> _LateSidecar | None:
    """The sidecar of the data files named ``stem``, as a late one is judged (valid or not, and why); None when
    there is none (not put, or deleted since; ``older``: see :func:`_read_sidecar`)."""
    name = f"{stem.rsplit('/', 1)[-1]}{SIDECAR_SUFFIXES[0]}"
    try:
        sidecar = _read_sidecar(ports, bucket, stem, since=since, older=older)
        if sidecar is None:
            return None
        name, document = sidecar
        options = DropOptions.model_validate(document)
    except DropRefused as exc:
        return _LateSidecar(name, None, {}, str(exc))
    except ValidationError as exc:
        return _LateSidecar(name, None, {}, f"job options are not valid: {_problems(exc)}")
    return _LateSidecar(name, options, options.model_dump(include=set(document)))
