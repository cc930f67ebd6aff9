"""How a bulk job moves once it is ``UploadComplete``: the executor checks its files and starts its load (or its
UNLOAD) as the tenant; the completion consumer, fed by the same Data API status events as query jobs (or by the
reconciler when one is lost), counts what happened, writes the result files and ends the job.

Every step is safe to repeat: the ``UploadComplete → InProgress`` write is conditional, the statement's ClientToken is
the job id, the terminal write is conditional on the state seen, and the event and the result files are recorded as
done on the job, so a retry finishes what is owed and a duplicate event does nothing.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime, timedelta
from typing import Any

from events import (
    BULK_EVENT_DETAIL_TYPES,
    BulkJobEventDetail,
    BulkJobQueuedMessage,
    BulkResultsRequested,
    ErrorInfo,
    StatementState,
    StatementStatusChange,
)
from spectra import deadline, logs, share
from spectra.bulk import outcomes
from spectra.bulk.csvfiles import (
    BulkInputError,
    TableColumn,
    check_columns,
    names_kept,
    no_rows,
    owner_column,
    read_header,
)
from spectra.bulk.files import FileReplaced, job_prefix, new_results_attempt, outcome_prefix
from spectra.bulk.models import (
    BulkCounts,
    BulkJob,
    BulkOperation,
    BulkState,
    ExportFile,
    JobSource,
    LoadPlan,
    split_object,
)
from spectra.bulk.sql import Manifest, check_statement_sizes, load_statements, max_errors, unload_statement
from spectra.delivery import unloadable
from spectra.errors import (
    IdentityRefused,
    NotFound,
    StartUnderWay,
    StatementRejected,
    Throttled,
    passing_trouble,
    reason_of,
    without_arns,
)
from spectra.identity import identity_for
from spectra.jobs import utcnow, utcnow_after
from spectra.lifecycle import ORPHANED_AFTER_SECONDS
from spectra.ports import BulkPorts, Ports
from spectra.publisher import PublishFailed
from spectra.settings import Settings
from spectra.sql_guard import embeddable
from spectra.unload import read_unload_manifest
from spectra.warehouse import DatabaseIdentity

logger = logging.getLogger(__name__)

#: The most input whose result files an ending that ran nothing writes itself (every record unprocessed); larger
#: input goes to the bulk results function, as a large load's does.
UNSTARTED_INLINE_MAX_BYTES = 2 * 1024 * 1024

#: How long a bulk results run holds a job's result files: longer than the function may run (its Timeout in
#: template.yaml, 900 s), so a lease outlives its writer only when the writer was stopped.
RESULTS_WRITER_LEASE = timedelta(seconds=960)
#: Runs that may take the lease and be stopped (out of time, as every run is for a job too large to write in the
#: function's 15 minutes) before the next request gives the job's result files up. Without it, requests, their
#: redeliveries and the reconciler's asks would keep starting such runs for RESULTS_GIVEN_UP_AFTER
#: (spectra.bulk.reconcile).
RESULTS_WRITERS_LOST_MAX = 3


def bulk_ports(ports: Ports) -> BulkPorts:
    if ports.bulk is None:
        raise RuntimeError("this function has no bulk resources (BULK_JOBS_TABLE is not set)")
    return ports.bulk


# --------------------------------------------------------------------------------------------------------------------
# Start


def start_bulk_job(ports: Ports, message: BulkJobQueuedMessage, *, final_attempt: bool = False) -> BulkJob | None:
    """Check the job's files against its table and start its statement. None when there is nothing (more) to do.

    Throttling propagates (the message comes back later) except on the queue's last delivery, where the job fails
    with the service's reason. Input problems fail the job at once, before anything is written, naming the problem.
    """
    bulk = bulk_ports(ports)
    if not share.take_slot(ports, message):
        return None  # its tenant is at its running cap: the job waits UploadComplete (spectra/share.py)
    job = bulk.jobs.transition(
        message.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE}, started_at=utcnow()
    )
    if job is None:
        job = bulk.jobs.get(message.job_id)
        if job is None or job.state.is_terminal:  # a late message: the slot just taken is not the job's to keep
            share.release_slot(ports, message.tenant_id, message.job_id)
        if job is None:
            logger.error("bulk job %s from the queue does not exist; dropping the message", message.job_id)
            return None
        if job.state is not BulkState.IN_PROGRESS or job.statement_id:
            logger.info("bulk job %s is %s; nothing to start", job.job_id, job.state.value)
            if job.state is BulkState.IN_PROGRESS and job.statement_id and job.abort_requested_at is not None:
                # An abort the earlier attempt found after recording its statement, whose cancel failed (throttled,
                # a passing error): nobody else asks again (the reconciler's role may not cancel), so this copy does.
                ports.warehouse.cancel(job.statement_id)
            return None
        if job.abort_requested_at is not None:  # an earlier attempt stopped before recording its statement
            if _left_to_its_starter(ports, job, final_attempt=final_attempt):  # ... or another is starting it now
                return None
            return _abort_unrecorded(ports, job)
        if _adopt_unrecorded(ports, job):
            return None
    if job.error is not None:  # a drop refused at the door whose failing was cut short: fail it, never load it
        finish_bulk_job(ports, job, BulkState.FAILED, error=job.error, unstarted=True)
        return None
    from spectra.bulk.drops import late_sidecar_error  # the door builds on this module

    try:
        identity = identity_for(ports, job)  # spectra/identity.py: a tenant identity, or the job fails
    except IdentityRefused as exc:
        # unstarted: a statement another copy recorded meanwhile refuses it (the warehouse is not asked here), and
        # one it may be starting right now is waited for
        error = ErrorInfo(code=exc.code, message=exc.message)
        _end_unstarted(ports, job, BulkState.FAILED, final_attempt=final_attempt, error=error)
        return None
    failed: tuple[BulkJob, ErrorInfo, dict[str, Any]] | None = None  # a check that failed: the job, why, its changes
    planned_at = utcnow()  # this attempt's plan, should it write one (told apart from another attempt's)
    try:
        if late := late_sidecar_error(ports, job):  # a sidecar put after its file: never loaded with the defaults
            failed = (job, late, {})
        elif job.operation is BulkOperation.QUERY:
            job, statement_id = _start_export(ports, job, identity, planned_at=planned_at)
        else:
            job, statement_id = _start_load(ports, job, identity, planned_at=planned_at)
    except _CalledOff as off:
        # Aborted while this executor read the files (an abort asked of a job without a statement), or ended by
        # another copy of the message meanwhile: nothing was started here, and nothing will be.
        logger.info("bulk job %s was aborted or ended while it was being started; nothing started", job.job_id)
        current = off.job if off.job is not None else bulk.jobs.get(job.job_id)  # a refused plan write: read it
        # as any abort of a job without a statement: another copy may have started one, or be starting it now
        if (
            current is not None
            and current.state is BulkState.IN_PROGRESS
            and not current.statement_id
            and not _left_to_its_starter(ports, current, final_attempt=final_attempt)
        ):
            _abort_unrecorded(ports, current)
        return None
    except FileReplaced as exc:
        # The key holds a newer upload (the bucket keeps no versions): loading it here would load it twice and this
        # job's file never. The newer upload's own job loads it, lists its records and marks it processed.
        failed = (
            job.model_copy(update={"files": []}),
            ErrorInfo(code="file_replaced", message=str(exc)),
            {"files": []},
        )
    except BulkInputError as exc:
        failed = (job, ErrorInfo(code=exc.code, message=exc.message), {})
    except StatementRejected as exc:
        failed = (job, ErrorInfo(code="statement_rejected", message=exc.message), {})
    except Throttled as exc:
        error = ErrorInfo(code="warehouse_unavailable", message=f"gave up after repeated tries: {exc.message}")
        _throttled(ports, job, exc, error, final_attempt=final_attempt, message=message)
        return None
    if failed is not None:
        failing, error, changes = failed
        try:
            _fail_unstarted(ports, failing, error, final_attempt=final_attempt, planned_at=planned_at, **changes)
        except Throttled as exc:  # asking for a statement under the job's name: tried again, or failed on the last try
            _throttled(ports, failing, exc, error, final_attempt=final_attempt, **changes)
        return None
    updated = bulk.jobs.update(job.job_id, [BulkState.IN_PROGRESS], statement_id=statement_id, **_unloaded_as(job))
    if updated is None:
        current = bulk.jobs.get(job.job_id)
        if current is not None and current.statement_id == statement_id:
            return None  # a fast statement: its completion got here first
        logger.warning("bulk job %s ended while its statement %s started; cancelling it", job.job_id, statement_id)
        ports.warehouse.cancel(statement_id)
        return None
    if updated.abort_requested_at is not None:
        ports.warehouse.cancel(statement_id)
    return updated


def _throttled(
    ports: Ports,
    job: BulkJob,
    throttled: Throttled,
    error: ErrorInfo,
    *,
    final_attempt: bool,
    message: BulkJobQueuedMessage | None = None,
    **changes: Any,
) -> None:
    """The warehouse throttled a job's start: ``throttled`` raised again for its message to come back, or on the
    queue's last delivery the job fails with ``error`` (as an ending that ran nothing) rather than vanishing into the
    DLQ; unless the warehouse is full, not failing: then the job waits on, as a query job does (spectra.lifecycle),
    its ``message`` sent again after a pause, within the time the reconciler gives a started job."""
    if not final_attempt:
        _back_in_the_index(ports, job)
        raise throttled
    if message is not None and share.waits_for_capacity(
        ports, throttled, job.started_at or job.queued_at or job.created_at
    ):
        _back_in_the_index(ports, job)
        ports.queue.send(message, delay_seconds=share.retry_delay(ports))
        return
    finish_bulk_job(ports, job, BulkState.FAILED, error=error, unstarted=True, **changes)


def _back_in_the_index(ports: Ports, job: BulkJob) -> None:
    """As for query jobs (spectra.lifecycle): back in the pending index, so that the reconciler adds no copy of the
    message while SQS's own retries (or the message sent again) are still coming."""
    try:
        bulk_ports(ports).jobs.mark_checked(job.job_id, BulkState.IN_PROGRESS, utcnow())
    except Exception:
        logger.warning("could not move throttled bulk job %s back in the pending index", job.job_id)


def _fail_unstarted(
    ports: Ports,
    job: BulkJob,
    error: ErrorInfo,
    *,
    final_attempt: bool = False,
    planned_at: datetime | None = None,
    **changes: Any,
) -> None:
    """Fail a job this attempt started nothing for, unless another copy of its message started its statement: two
    copies (an S3 event delivered twice queues the job twice; the reconciler re-queues) check the files side by side,
    and a check that fails for one (the dropped file put again, the table or the tenant changed) may come after the
    other's passed and its load started. A statement recorded meanwhile refuses the ending (``unstarted``); one
    started but not yet recorded is found by the job's name and recorded, so the job ends as it ran. An ending that
    ran nothing writes its result files under an attempt of its own, which only its winning write records
    (:func:`finish_bulk_job`)."""
    if _adopt_unrecorded(ports, job):
        logger.warning("bulk job %s: %s, but its statement had started; it ends as it ran", job.job_id, error.code)
        return
    _end_unstarted(
        ports, job, BulkState.FAILED, final_attempt=final_attempt, planned_at=planned_at, error=error, **changes
    )


#: How often an ending that ran nothing is tried against a plan that keeps changing under it before its message
#: comes back later instead
_UNSTARTED_TRIES = 3


def _end_unstarted(
    ports: Ports,
    job: BulkJob,
    state: BulkState,
    *,
    final_attempt: bool,
    planned_at: datetime | None = None,
    **changes: Any,
) -> None:
    """End ``job`` (``InProgress``, no statement) in ``state`` as an ending that ran nothing, unless another
    attempt may be starting its load (:func:`_left_to_its_starter`; this attempt's own plan, written at
    ``planned_at``, is no such attempt). The write is conditional on the plan as it was read (``plan_seen``): one
    written between the read and the write (another attempt past its checks, about to start the load) refuses it,
    and the job is read again."""
    bulk = bulk_ports(ports)
    for _ in range(_UNSTARTED_TRIES):
        current = bulk.jobs.get(job.job_id)
        if current is None or current.state is not BulkState.IN_PROGRESS or current.statement_id:
            return  # another copy ended it or recorded its statement: nothing of this attempt's to end
        mine = planned_at is not None and current.plan is not None and current.plan.planned_at == planned_at
        if not mine and _left_to_its_starter(ports, current, final_attempt=final_attempt):
            return
        if finish_bulk_job(ports, job, state, unstarted=True, plan_seen=current.plan, **changes) is not None:
            return
    raise StartUnderWay(f"bulk job {job.job_id} kept changing while this attempt ended it; it comes back later")


def _left_to_its_starter(ports: Ports, job: BulkJob, *, final_attempt: bool) -> bool:
    """Whether an ending that ran nothing must leave the job to another attempt that may be starting its load
    (:func:`being_started`): such an ending, written now, would let that load commit behind a job that says it ran
    nothing. That attempt records its statement (and cancels it, for an abort). Should it have died, the job is
    ended later, once its plan is old: by this message's next delivery (:class:`StartUnderWay`; SQS's visibility
    timeout, 180 s, is longer), or, on the message's last delivery, by a copy the reconciler queues (the job is
    moved to the back of its pending index, True; the reconciler waits out the plan too)."""
    if not being_started(job):
        return False
    if not final_attempt:
        raise StartUnderWay(f"bulk job {job.job_id} is being started by another attempt; this one comes back later")
    logger.warning("bulk job %s is being started by another attempt; left to it and the reconciler", job.job_id)
    bulk_ports(ports).jobs.mark_checked(job.job_id, BulkState.IN_PROGRESS, utcnow())
    return True


#: How long after writing its plan an executor may still be starting the load: 2 minutes, well past the executor's 30 s
#: Timeout (template.yaml's Globals), which no executor outlives, as spectra.lifecycle.ORPHANED_AFTER_SECONDS reasons
#: for query jobs.
STARTING_AT_MOST = timedelta(seconds=ORPHANED_AFTER_SECONDS)


def being_started(job: BulkJob, now: datetime | None = None) -> bool:
    """An executor wrote the job's plan a moment ago and may be inside BatchExecuteStatement, its statement not yet
    recorded, nor maybe listed: an ending that ran nothing (an abort, a refusal, the reconciler's give-up), written
    now, would let that load commit behind a job that says it ran nothing."""
    planned = job.plan.planned_at if job.plan is not None else None
    return (
        job.state is BulkState.IN_PROGRESS
        and not job.statement_id
        and planned is not None
        and (now or utcnow()) - planned < STARTING_AT_MOST
    )


def _adopt_unrecorded(ports: Ports, job: BulkJob) -> bool:
    """Record the statement an earlier attempt started for this ``InProgress`` job and died before recording, if the
    warehouse has one under the job's name: its event or the reconciler ends the job as it ended. Looked up before
    the job's files and table are checked again, since those may fail now (the dropped file put again, the header
    changed, the tenant deactivated) and fail a job whose load committed, its tenant sending the rows again; and by
    a check that failed, since another copy of the message may have started it meanwhile (:func:`_fail_unstarted`).
    An abort asked while nobody had the statement to cancel (the job read before it) is carried out here."""
    earlier = ports.warehouse.find(job.job_id)
    if earlier is None:
        return False  # it never reached the warehouse (or is starting right now: ClientToken returns it below)
    logger.warning("bulk job %s: an earlier attempt started statement %s; recording it", job.job_id, earlier)
    recorded = bulk_ports(ports).jobs.update(
        job.job_id, [BulkState.IN_PROGRESS], statement_id=earlier, **_unloaded_as(job)
    )
    if recorded is not None and recorded.abort_requested_at is not None:
        ports.warehouse.cancel(earlier)
    return True


def _unloaded_as(job: BulkJob) -> dict[str, Any]:
    """What a query job's record keeps of how its UNLOAD writes the parts its pages pass on."""
    return {"export_delimiter": job.column_delimiter} if job.operation is BulkOperation.QUERY else {}


def _abort_unrecorded(ports: Ports, job: BulkJob) -> None:
    """Abort a job whose earlier attempt died between starting its statement and recording it, so the abort had no
    statement to cancel. If that statement exists (found by the job's name), it is recorded and cancelled, and the
    job ends as the statement did: Aborted, or JobComplete with its counts when the load committed first (through
    its event, or the reconciler's look at a recorded statement). If it never reached the warehouse, the job ends
    Aborted at once, every record unprocessed."""
    earlier = ports.warehouse.find(job.job_id)
    if earlier is None:
        finish_bulk_job(ports, job, BulkState.ABORTED, unstarted=True)
        return None
    logger.warning("bulk job %s: an earlier attempt started statement %s; cancelling it", job.job_id, earlier)
    recorded = bulk_ports(ports).jobs.update(
        job.job_id, [BulkState.IN_PROGRESS], statement_id=earlier, **_unloaded_as(job)
    )
    if recorded is not None:
        ports.warehouse.cancel(earlier)
    return None


def export_prefix(job: BulkJob) -> str:
    return f"{job_prefix(job.tenant_id, job.job_id)}export/"


def export_statement(settings: Settings, job: BulkJob) -> str:
    """The UNLOAD a query job runs."""
    destination = f"s3://{settings.results_bucket}/{export_prefix(job)}part_"
    # inside UNLOAD's quotes, maybe nested (an outer LIMIT): no ';', a trailing comment ended, as for exports
    # in the job's columnDelimiter, as Bulk 2.0 serves a query job's results (its pages pass the parts' bytes on)
    return unload_statement(
        unloadable(embeddable(job.query or "")),
        destination,
        role=settings.bulk_iam_role,
        delimiter=job.column_delimiter.char,
    )


def _start_export(
    ports: Ports, job: BulkJob, identity: DatabaseIdentity, *, planned_at: datetime
) -> tuple[BulkJob, str]:
    """Start a query job's UNLOAD. Its plan, as a load's, is the last look before the statement (refused once an
    abort is asked) and says when this attempt may be inside ExecuteStatement (:func:`being_started`), so an ending
    that ran nothing waits for it rather than end the job Aborted while the UNLOAD writes its parts. It lists no
    sub-statements: the parts are listed when the statement ends (:func:`_export_files`)."""
    sql = export_statement(ports.settings, job)
    planned = _still_to_start(
        bulk_ports(ports).jobs.record_plan(job.job_id, LoadPlan(columns=[], planned_at=planned_at))
    )
    statement_id = ports.warehouse.execute(
        sql, identity=identity, name=job.job_id, client_token=job.job_id, result_format="CSV"
    )
    return planned, statement_id


def _called(job: BulkJob, index: int) -> str:
    """How a job's error names its file at ``index``: a dropped file by its name (the tenant's own), a batch of the
    API by its place among the job's batches too (in the order they were PUT or their upload URLs issued), since
    its stored name is the service's, which the client never saw."""
    name = job.files[index].key.rsplit("/", 1)[-1]
    return name if job.source is JobSource.S3_DROP else f"batch {index + 1} of {len(job.files)} ({name})"


def _start_load(ports: Ports, job: BulkJob, identity: DatabaseIdentity, *, planned_at: datetime) -> tuple[BulkJob, str]:
    bulk = bulk_ports(ports)
    if not job.files:
        raise BulkInputError("no_data", "the job has no uploaded data")
    delimiter = job.column_delimiter.char
    headers = [read_header(bulk.files, source, delimiter, called=_called(job, n)) for n, source in enumerate(job.files)]
    columns = headers[0].columns
    for n, other in enumerate(headers[1:], 1):
        if other.columns != columns:
            raise BulkInputError(
                "invalid_header",
                f"{_called(job, n)}'s header differs from the first file's: {', '.join(other.columns)}",
            )
    if not any(header.rows for header in headers):
        raise no_rows([_called(job, n) for n in range(len(job.files))])
    schema, table = split_object(job.object)
    described = ports.warehouse.describe_table(schema, table, identity=identity)
    if not described:
        raise BulkInputError(
            "table_not_found", f"table {schema}.{table} does not exist or is not visible to the tenant"
        )
    table_columns = [
        TableColumn(
            name=c["name"],
            required=not c.get("nullable", 1) and c.get("columnDefault") is None,
            owner=owner_column(c["name"], c.get("columnDefault"), ports.settings.bulk_owner_column),
            defaulted=c.get("columnDefault") is not None,
        )
        for c in described
    ]
    check_columns(job, columns, table_columns)
    manifests = [
        Manifest(url=bulk.files.write_manifest(job, "gzip" if gzip else "plain", group), gzip=gzip)
        for gzip in (False, True)
        if (group := [f for f in job.files if f.gzip is gzip])
    ]
    settings = ports.settings
    sqls, plan = load_statements(
        job,
        columns,
        manifests,
        role=settings.bulk_iam_role,
        max_errors=max_errors(settings.bulk_max_errors, serverless=bool(settings.redshift_workgroup)),
        outcome_url=f"s3://{settings.results_bucket}/{outcome_prefix(job)}",
        not_null=[c["name"] for c in described if not c.get("nullable", 1)],
        # DescribeTable lists a table's columns by position (JDBC's getColumns order, which the Data API answers
        # with; the emulator orders by attnum), the order a COPY without a column list loads them in
        table_columns=[c["name"] for c in described],
        identity_columns=[c["name"] for c in described if _is_identity(c)],
    )
    check_statement_sizes(job, columns, sqls, max_bytes=settings.max_sql_bytes)
    key = (job.external_id_field or "").lower()
    column = next((c for c in described if c["name"] == key), {}) if key else {}
    key_length = column.get("length") or column.get("precision") or None
    plan = plan.model_copy(
        update={
            "external_id_type": column.get("typeName"),
            "external_id_length": key_length,
            # a declared scale only: an unconstrained NUMERIC (the emulator's PostgreSQL; Redshift has none) keeps
            # the scale each value was written with, and DescribeTable calls it 0
            "external_id_scale": column.get("scale")
            if column.get("typeName") in ("numeric", "decimal") and column.get("precision")
            else None,
            "header": names_kept(headers[0].columns, headers[0].names),  # none when the columns are as written
            "planned_at": planned_at,
        }
    )
    # The plan is recorded before the statement starts: a fast statement's completion event needs it. The write is
    # also the last look before the load: a job aborted (or ended) meanwhile starts nothing.
    planned = _still_to_start(bulk.jobs.record_plan(job.job_id, plan))
    statement_id = ports.warehouse.execute_batch(sqls, identity=identity, name=job.job_id, client_token=job.job_id)
    return planned, statement_id


#: The default DescribeTable shows for an IDENTITY column: ``"identity"(<oid>, <n>, '<seed>,<step>'::text)``, or
#: ``"default_identity"(...)`` for GENERATED BY DEFAULT AS IDENTITY. A literal default that holds the word
#: (``'identity provider'::character varying``) is not one.
_IDENTITY_DEFAULT = re.compile(r'\s*"?(?:default_)?identity"?\s*\(', re.IGNORECASE)


def _is_identity(column: dict) -> bool:
    """An IDENTITY column, as DescribeTable shows it (:data:`_IDENTITY_DEFAULT`)."""
    return _IDENTITY_DEFAULT.match(str(column.get("columnDefault") or "")) is not None


class _CalledOff(Exception):
    """The job ended, or was asked to abort, while this executor was starting it: start nothing (``job``: the job
    as it is now when it still waits to be aborted, None when it has ended)."""

    def __init__(self, job: BulkJob | None) -> None:
        super().__init__(job.job_id if job else "ended")
        self.job = job


def _still_to_start(job: BulkJob | None) -> BulkJob:
    """``job`` as a conditional write on its being InProgress (and, for a plan, not asked to abort) returned it, if
    it may still be started."""
    if job is None or job.abort_requested_at is not None:
        raise _CalledOff(job)
    return job


# --------------------------------------------------------------------------------------------------------------------
# Complete


def complete_bulk_statement(ports: Ports, change: StatementStatusChange) -> BulkJob | None:
    """Drive a bulk job to its end from its statement's end. Statements of no bulk job are ignored."""
    bulk = bulk_ports(ports)
    job = bulk.jobs.get(change.statementName or "")
    if job is None:
        logger.info("statement %s (%s) belongs to no bulk job; ignoring", change.statementId, change.statementName)
        return None
    logs.bind(tenant_id=job.tenant_id)  # the status event names the job, not its tenant (spectra/logs.py)
    if job.state.is_terminal:
        settle(ports, job)
        return job
    if job.state is not BulkState.IN_PROGRESS or (job.statement_id and job.statement_id != change.statementId):
        logger.warning("bulk job %s (%s) does not run %s; ignoring", job.job_id, job.state.value, change.statementId)
        return None
    statement_id = change.statementId
    if change.state is StatementState.ABORTED:
        if job.abort_requested_at is not None:
            return finish_bulk_job(ports, job, BulkState.ABORTED, statement_id=statement_id)
        error = ErrorInfo(code="statement_aborted", message="the warehouse aborted the statement")
        return finish_bulk_job(ports, job, BulkState.FAILED, error=error, statement_id=statement_id)
    info = ports.warehouse.describe(statement_id)
    if change.state is StatementState.FAILED:
        # the tenant's statement timeout holds for loads and exports as for queries, and is named the same way
        message = without_arns(info.error) if info.error else "the statement failed without a message"  # its role
        error = ErrorInfo(code=share.failure_code(info.error), message=message)
        return finish_bulk_job(ports, job, BulkState.FAILED, error=error, statement_id=statement_id)
    try:
        if job.operation is BulkOperation.QUERY:
            files, columns = _export_files(ports, job)
            counts = BulkCounts(processed=sum(f.rows for f in files))
            return finish_bulk_job(
                ports,
                job,
                BulkState.JOB_COMPLETE,
                statement_id=statement_id,
                counts=counts,
                export_files=files,
                export_columns=columns,
                # the executor writes it with the statement, which a fast statement's event, or an executor that
                # died after ExecuteStatement, leaves unwritten: pages would then have a comma header over TAB
                # or PIPE records. A statement recorded without it ran in commas (which None means): left so
                **({} if job.statement_id else _unloaded_as(job)),
            )
        counts = _load_counts(ports, job, info.sub_statements)
        return finish_bulk_job(ports, job, BulkState.JOB_COMPLETE, statement_id=statement_id, counts=counts)
    except PublishFailed:
        raise  # the bus did not take the event: nothing wrong with the outcome, tried again as it is
    except Exception as exc:
        if passing_trouble(exc):
            raise  # throttled, or a service failing on its side: nothing wrong with the outcome, tried again as it is
        return _failed_attempt(ports, job, statement_id, exc)


def _failed_attempt(ports: Ports, job: BulkJob, statement_id: str, exc: Exception) -> BulkJob | None:
    """Count one failed attempt at recording the statement's outcome, re-raising ``exc`` while attempts are left (the
    status event comes back, or the reconciler calls again); then fail the job with the reason, as query jobs do
    (``spectra.lifecycle``), rather than hold its tenant's slot until the Data API forgets the statement (24 hours)
    and fail it ``statement_lost``. A manifest that will not read, an answer the Data API refuses, a terminal write
    DynamoDB refuses (an export's list of parts past the item size) all count; passing trouble (throttled, a 5xx, no
    answer: :func:`~spectra.errors.passing_trouble`) does not, and is tried again as it is, as for query jobs."""
    counted = bulk_ports(ports).jobs.count_result_attempt(job.job_id)
    if counted is None:
        return None  # no longer InProgress: whoever moved it on owns its end
    if counted.result_attempts < ports.settings.result_max_attempts:
        raise exc
    error = ErrorInfo(
        code="completion_failed",
        message=f"the statement finished, but its outcome could not be recorded after {counted.result_attempts}"
        f" attempts (what a load committed stays in the table): {reason_of(exc)}"[:1000],
    )
    logger.error("bulk job %s: giving up on its outcome", job.job_id, exc_info=exc)
    return finish_bulk_job(ports, counted, BulkState.FAILED, error=error, statement_id=statement_id)


def _load_counts(ports: Ports, job: BulkJob, subs: list) -> BulkCounts:
    """Every input record counted once, from the answers of the batch's sub-statements."""
    plan = job.plan
    if plan is None:
        raise RuntimeError(f"bulk job {job.job_id} finished without a recorded plan")
    if plan.loaded:
        loaded = sum(_count(ports, subs[index].statement_id) for index in plan.loaded)
    else:  # a plan recorded before the counts were asked for
        loaded = sum(subs[copy].result_rows or 0 for copy, _ in plan.copies)
    rejected = sum(subs[errors].result_rows or 0 for _, errors in plan.copies)
    processed = loaded + rejected
    if plan.applied_index is None:  # insert: every loaded row is in the table
        return BulkCounts(processed=processed, failed=rejected, created=loaded)
    applied = _count(ports, subs[plan.applied_index].statement_id)
    created = None
    if plan.updated_index is not None:
        created = applied - _count(ports, subs[plan.updated_index].statement_id)
    elif job.operation is BulkOperation.UPDATE or job.operation is BulkOperation.DELETE:
        created = 0
    return BulkCounts(processed=processed, failed=processed - applied, created=created)


def _count(ports: Ports, statement_id: str) -> int:
    """The one value of a one-row count (``pg_last_copy_count()``, ``count(*)``), past a header line if the Data
    API's CSV carries one (:func:`spectra.bulk.outcomes.result_rows`)."""
    row = next(outcomes.result_rows(ports, statement_id), None)
    return int(row[0]) if row and row[0].strip() else 0


def _export_files(ports: Ports, job: BulkJob) -> tuple[list[ExportFile], list[str]]:
    """The parts an UNLOAD wrote, from its verbose manifest, and the column names from its schema."""
    bulk = bulk_ports(ports)
    manifest = json.loads(bulk.files.read_all(f"{export_prefix(job)}part_manifest"))
    unloaded = read_unload_manifest(manifest, ports.settings.results_bucket, header=True)  # CSV HEADER
    files = [ExportFile(key=key, rows=rows, bytes=size) for key, rows, size in unloaded.files]
    return files, [name for name, _ in unloaded.columns]


# --------------------------------------------------------------------------------------------------------------------
# End


#: How fast result files are written at worst, per byte of input: records of one short field each (16 MiB of
#: two-byte lines took 61 s of CPU on the development machine).
INLINE_RESULTS_BYTES_PER_SECOND = 128 * 1024


def _time_to_write(source_bytes: int) -> bool:
    """Whether the invocation has the time to write the result files of ``source_bytes`` of input itself
    (spectra/deadline.py; an unbounded caller has): a completion or reconciler run that cannot hands them to the
    bulk results function. Cut by its timeout, a run writing them would count nothing, and the job would hold its
    slot until the Data API forgets its statement, then fail statement_lost although its load had committed."""
    left = deadline.left()
    return left is None or left >= source_bytes / INLINE_RESULTS_BYTES_PER_SECOND


def finish_bulk_job(
    ports: Ports,
    job: BulkJob,
    state: BulkState,
    *,
    unstarted: bool = False,
    uploads: BulkJob | None = None,
    plan_seen: LoadPlan | bool | None = False,
    **changes: Any,
) -> BulkJob | None:
    """Move the job from the state it was seen in to a terminal ``state``, then settle what that owes.

    An ingest job's result files are written first when its input is small, so they exist the moment it ends; a
    large one ends as soon as its load commits and its files are written by the bulk results consumer. None when
    the job moved meanwhile (the caller's view is stale; the routes never serve what it wrote).

    The files go under an attempt of this ending's own, which its terminal write records: an ending that loses that
    write (another copy of the statement's event, the reconciler, an abort that saw the job ``UploadComplete`` while
    the executor started the load and completion finished it) leaves its files beside the winner's, unread, to the
    bucket's expiry. ``unstarted``: an ending that ran nothing (aborted, refused or given up before any statement),
    written only while no statement is recorded.
    ``uploads`` (the job as read before its batches were listed): only while the job has counted and withdrawn as
    many batches as then (an Open job ended with the batches listed then: a batch counted after the listing would be
    acknowledged and left out, one withdrawn after it deleted from under the job). ``plan_seen``: only while the
    job's plan is still that one (None: none), for an ending that ran nothing decided on it (:func:`_end_unstarted`).
    """
    bulk = bulk_ports(ports)
    results_ready = job.operation is BulkOperation.QUERY or not job.files
    # Small input gets its files in this call. Gzip input never does: its size says nothing of what it inflates to
    # (deflate reaches 1000:1), and a call that writes gigabytes of result files here outlives its function. An
    # ending that ran nothing is written by a smaller function (the executor, the API, the S3 drop function: 30 s,
    # 512 MB), and the cost is per record, not per byte: 16 MiB of two-byte lines is eight million records.
    limit = ports.settings.bulk_inline_results_max_bytes
    ran = bool(changes.get("statement_id") or job.statement_id)  # else: refused, aborted or given up, not loaded
    inline = (
        not results_ready
        and not any(f.gzip for f in job.files)
        and job.source_bytes <= (limit if ran else min(limit, UNSTARTED_INLINE_MAX_BYTES))
        and _time_to_write(job.source_bytes)
    )
    ended = job.model_copy(update={"state": state, **changes, "results_attempt": new_results_attempt()})
    written = _inline_results(ports, ended, unstarted=unstarted) if inline else None
    if written is not None:
        mismatch = outcomes.results_mismatch(ended, written)
        if mismatch is not None and ended.error is None:  # the job says its files fall short, not a log line only
            changes["error"] = mismatch
        changes["results_attempt"] = ended.results_attempt
        results_ready = True
    finished = bulk.jobs.transition(
        job.job_id,
        state,
        expected={job.state},
        unstarted=unstarted,
        uploads=uploads,
        plan_seen=plan_seen,
        completed_at=utcnow_after(job.created_at, job.started_at),
        results_ready=results_ready,
        **changes,
    )
    if finished is None:
        if written is not None:
            logger.info("bulk job %s ended meanwhile; this ending's result files are not served", job.job_id)
        return None
    # once per job, whichever function ended it, as spectra.lifecycle logs "job completed": without it, a bulk job's
    # trip read from the logs by its job_id (README, Operations) would show it started and fanned out, but never that
    # it ended
    logger.info(
        "bulk job %s", finished.state.value, extra={"error_code": finished.error.code if finished.error else None}
    )
    share.release_slot(ports, finished.tenant_id, finished.job_id)
    settle(ports, finished)
    return finished


def _inline_results(ports: Ports, ended: BulkJob, *, unstarted: bool) -> outcomes.ResultCounts | None:
    """The result files of ``ended`` written now, under its attempt. An ending that ran nothing (an abort, a refusal)
    whose files cannot be written (S3 throttling its reads or uploads) still ends the job, its files left to the bulk
    results function (None): failing, a PATCH Aborted would answer 500 and leave the job queued, for its load to
    start. An ending that ran fails, and its event or the reconciler tries again."""
    try:
        return outcomes.write_results(ports, ended)
    except Exception:
        if not unstarted:
            raise
        logger.warning("bulk job %s: result files left to the bulk results function", ended.job_id, exc_info=True)
        return None


def settle(ports: Ports, job: BulkJob, *, ask_results: bool = True) -> None:
    """What a terminal job still owes: its result files (asked of the results consumer unless ``ask_results`` is
    false: they were asked for a moment ago), its dropped file marked as processed, and its event."""
    bulk = bulk_ports(ports)
    if not job.results_ready and ask_results:
        bulk.results_queue.send(BulkResultsRequested(job_id=job.job_id, tenant_id=job.tenant_id))
    if not job.event_published:
        if job.source is JobSource.S3_DROP:
            for source in job.files:
                bulk.files.tag_processed(source)  # the ingest bucket's lifecycle expires it later
        publish_bulk_event(ports, job)


def write_owed_results(ports: Ports, message: BulkResultsRequested) -> BulkJob | None:
    """The bulk results consumer: write a large job's result files, then record them (and finish what is owed).

    One run at a time writes them: it takes a lease on the job first (:data:`RESULTS_WRITER_LEASE`), and a request
    that finds the lease held is done (the reconciler asks again if that writer is stopped). A run that fails gives
    the lease back, so its message's next receive tries again; a run stopped while holding it leaves it to expire,
    and the run that takes it over counts it. Once :data:`RESULTS_WRITERS_LOST_MAX` runs were stopped, the next
    request gives the files up."""
    bulk = bulk_ports(ports)
    job = bulk.jobs.get(message.job_id)
    if job is None or not job.state.is_terminal or job.results_ready:
        return None
    now = int(utcnow().timestamp())
    if job.results_writer_until is not None and job.results_writer_until > now:
        logger.info("bulk job %s: another run is writing its result files", job.job_id)
        return None
    if job.results_writer_until is not None and job.results_writers_lost + 1 >= RESULTS_WRITERS_LOST_MAX:
        why = f"{RESULTS_WRITERS_LOST_MAX} runs were stopped before they were done (too large to write in one run)"
        return give_up_results(ports, job, why)
    leased = bulk.jobs.lease_results(job, until=now + int(RESULTS_WRITER_LEASE.total_seconds()))
    if leased is None:
        return None  # written meanwhile, or another run took them first
    leased = leased.model_copy(update={"results_attempt": new_results_attempt()})
    try:
        written = outcomes.write_results(ports, leased)
    except NotFound as exc:
        # The load's statement is past the Data API's 24 hours (its rejected rows went with it), or its outcome
        # files are gone: no later attempt can do better, and retried, the job's files would stay owed for ever.
        return give_up_results(ports, leased, f"what the load answered is no longer kept ({exc.message})")
    except Exception:
        bulk.jobs.release_results(leased)
        raise
    mismatch = outcomes.results_mismatch(leased, written)
    return bulk.jobs.mark_results_ready(
        leased.job_id,
        leased.state,
        attempt=leased.results_attempt,
        error=mismatch if leased.error is None else None,
        leased=leased,
    )


def give_up_results(ports: Ports, job: BulkJob, why: str) -> BulkJob | None:
    """Stop owing the job's result files: the routes answer 410 ``results_unavailable`` with ``why`` (also the job's
    ``errorMessage``, unless it failed: that keeps the failure's reason) instead of 409 for ever. The table holds
    what the load committed, and the job's counts are the warehouse's own."""
    reason = f"the result files could not be written: {why}"
    logger.warning("bulk job %s: %s", job.job_id, reason)
    error = ErrorInfo(code=outcomes.RESULTS_UNAVAILABLE, message=reason) if job.error is None else None  # keeps its own
    given_up = bulk_ports(ports).jobs.give_up_results(job, why=reason, error=error)
    if given_up is None:  # written meanwhile, or a writer took them since ``job`` was read: it owes them now
        logger.info("bulk job %s: its result files are being written after all; not given up", job.job_id)
    return given_up


def publish_bulk_event(ports: Ports, job: BulkJob) -> None:
    counts = job.counts or BulkCounts()
    detail = BulkJobEventDetail(
        job_id=job.job_id,
        tenant_id=job.tenant_id,
        tenant_generation=job.tenant_generation,
        object=job.object,
        operation=job.operation.value,
        state=job.state.value,
        source=job.source.value,
        object_key=job.object_key,
        number_records_processed=counts.processed,
        number_records_failed=counts.failed,
        error=job.error,
        created_at=job.created_at,
        completed_at=job.completed_at or utcnow(),
        correlation_id=job.correlation_id,
    )
    ports.events.publish(BULK_EVENT_DETAIL_TYPES[job.state.value], detail, resources=[job.job_id])
    bulk_ports(ports).jobs.mark_published(job.job_id, job.state)
