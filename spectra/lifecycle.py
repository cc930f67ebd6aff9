"""How a job moves after it is queued: the executor starts its statement, the completion consumer (fed by the Data
API's status-change events, or by the reconciler when an event never came) finishes it.

Every step is safe to repeat. The executor's QUEUED → SUBMITTED write is conditional and its ExecuteStatement call
carries the job id as ClientToken, so a redelivered message finds the statement it already started. Completion is a
conditional SUBMITTED → terminal write followed by the project event; the event is marked as sent on the job, so a
retry after a failed publish sends it, and a duplicate status event does nothing.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from events import (
    JOB_EVENT_DETAIL_TYPES,
    ErrorInfo,
    JobEventDetail,
    JobQueuedMessage,
    JobStatus,
    StatementState,
    StatementStatusChange,
)
from spectra import logs, share
from spectra.errors import IdentityRefused, StatementRejected, Throttled
from spectra.identity import identity_for
from spectra.jobs import Job, utcnow
from spectra.ports import Ports

logger = logging.getLogger(__name__)


def execute_job(ports: Ports, message: JobQueuedMessage, *, final_attempt: bool = False) -> Job | None:
    """Start the job's statement on the warehouse. Returns the job, or None when there is nothing (more) to do.

    Throttling and passing service trouble propagate as :class:`~spectra.errors.Throttled`, so the message is
    retried later, except on the ``final_attempt`` (the queue's last delivery before its DLQ): then the job fails
    with the service's message rather than waiting, unexplained, for the reconciler. A statement the Data API
    refuses (a bad parameter, an unknown user) fails the job at once with the service's message.
    """
    if not share.take_slot(ports, message):
        return None  # its tenant is at its running cap: the job waits QUEUED (spectra/share.py)
    job = ports.jobs.transition(message.job_id, JobStatus.SUBMITTED, submitted_at=utcnow())
    if job is None:
        job = ports.jobs.get(message.job_id)
        if job is None or job.status.is_terminal:  # a late message: the slot just taken is not the job's to keep
            share.release_slot(ports, message.tenant_id, message.job_id)
        if job is None:
            logger.error("job %s from the queue does not exist; dropping the message", message.job_id)
            return None
        if job.status is not JobStatus.SUBMITTED or job.statement_id:
            logger.info("job %s is %s; nothing to execute", job.job_id, job.status.value)
            return None
        # SUBMITTED without a statement: an earlier attempt stopped between the two writes. The ClientToken makes
        # the call below return that attempt's statement if it got as far as the Data API.
        if job.cancel_requested_at is not None:
            finish_job(ports, job, JobStatus.CANCELLED, unstarted=True)
            return None
    try:
        identity = identity_for(ports, job)  # spectra/identity.py: a tenant identity, or the job fails
    except IdentityRefused as exc:
        finish_job(ports, job, JobStatus.FAILED, error=ErrorInfo(code=exc.code, message=exc.message), unstarted=True)
        return None
    try:
        statement_id = ports.warehouse.execute(
            job.sql,
            identity=identity,
            name=job.job_id,
            client_token=job.job_id,
            parameters=[p.model_dump() for p in job.parameters],
            result_format="CSV",
        )
    except StatementRejected as exc:
        finish_job(ports, job, JobStatus.FAILED, error=ErrorInfo(code="statement_rejected", message=exc.message))
        return None
    except Throttled as exc:
        if not final_attempt:
            raise
        error = ErrorInfo(code="warehouse_unavailable", message=f"gave up after repeated tries: {exc.message}")
        finish_job(ports, job, JobStatus.FAILED, error=error, unstarted=True)
        return None
    updated = ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], statement_id=statement_id)
    if updated is None:
        current = ports.jobs.get(job.job_id)
        if current is not None and current.statement_id == statement_id:
            return None  # a fast statement: its completion event got here first and finished the job
        # The job ended while we started its statement (the reconciler gave up on it, say): the statement must not
        # run on behind a terminal job.
        logger.warning("job %s ended while its statement %s started; cancelling it", job.job_id, statement_id)
        ports.warehouse.cancel(statement_id)
        return None
    if updated.cancel_requested_at is not None:
        ports.warehouse.cancel(statement_id)  # DELETE arrived while we were starting the statement
    return updated


def complete_statement(ports: Ports, change: StatementStatusChange) -> Job | None:
    """Drive a job to its terminal state from a statement's terminal state. Unknown statements are not ours."""
    job_id = change.statementName or ""
    job = ports.jobs.get(job_id) if job_id else None
    if job is None:
        logger.info("statement %s (%s) belongs to no job; ignoring", change.statementId, job_id or "no name")
        return None
    logs.bind(tenant_id=job.tenant_id)  # the status event names the job, not its tenant (spectra/logs.py)
    if job.status.is_terminal:
        if not job.event_published and _announcement_overdue(job):
            publish_job_event(ports, job)
        return job
    if job.statement_id and job.statement_id != change.statementId:
        logger.warning("job %s runs %s, not %s; ignoring", job.job_id, job.statement_id, change.statementId)
        return None
    statement_id = change.statementId
    if change.state is StatementState.FINISHED:
        return _finish_with_result(ports, job, statement_id)
    if change.state is StatementState.ABORTED:
        if job.cancel_requested_at is not None:
            return finish_job(ports, job, JobStatus.CANCELLED, statement_id=statement_id)
        # Nobody asked: an administrator or a timeout stopped it. The tenant should see a failure, not a cancel.
        error = ErrorInfo(code="statement_aborted", message="the warehouse aborted the statement")
        return finish_job(ports, job, JobStatus.FAILED, error=error, statement_id=statement_id)
    info = ports.warehouse.describe(statement_id)
    error = ErrorInfo(
        code=share.failure_code(info.error), message=info.error or "the statement failed without a message"
    )
    return finish_job(ports, job, JobStatus.FAILED, error=error, statement_id=statement_id)


#: A later status event (a copy, or the reconciler's) announces a terminal job whose event is not marked sent only
#: once the job has been terminal this long. Before that, the worker that finished it is almost surely announcing it
#: right now, between its terminal write and the mark, and a second publish would be a copy of the event. A publish
#: that failed is retried by its event's redelivery (after the queue's visibility timeout, minutes on AWS) or by the
#: reconciler's sweep, both later than this.
REANNOUNCE_AFTER_SECONDS = 30


def _announcement_overdue(job: Job) -> bool:
    return job.completed_at is None or utcnow() - job.completed_at >= timedelta(seconds=REANNOUNCE_AFTER_SECONDS)


def _finish_with_result(ports: Ports, job: Job, statement_id: str) -> Job | None:
    info = ports.warehouse.describe(statement_id)
    if info.has_result_set:
        columns, pages = ports.warehouse.csv_result(statement_id)
    else:
        columns, pages = [], iter(())
    result = ports.results.write(
        tenant_id=job.tenant_id, job_id=job.job_id, fmt=job.format, columns=columns, csv_pages=pages
    )
    if info.has_result_set and info.result_rows is not None and result.row_count == info.result_rows - 1:
        # The first row equals the column names and was taken for a header line: the count says it was data.
        columns, pages = ports.warehouse.csv_result(statement_id)
        result = ports.results.write(
            tenant_id=job.tenant_id, job_id=job.job_id, fmt=job.format, columns=columns, csv_pages=pages, header=False
        )
    if info.has_result_set and info.result_rows is not None and result.row_count != info.result_rows:
        logger.warning(
            "job %s: %d rows written, the warehouse reported %d", job.job_id, result.row_count, info.result_rows
        )
    if not info.has_result_set and info.result_rows and info.result_rows > 0:
        result = result.model_copy(update={"row_count": info.result_rows})  # rows affected by DML
    return finish_job(ports, job, JobStatus.COMPLETED, result=result, statement_id=statement_id)


def finish_job(ports: Ports, job: Job, status: JobStatus, *, unstarted: bool = False, **changes: Any) -> Job | None:
    """Move the job from the state it was seen in (``job.status``) to a terminal state and announce it.

    None when the job moved meanwhile (another worker finished it, or the executor started it): the caller's view
    is stale and nothing is written.
    """
    finished = ports.jobs.transition(
        job.job_id, status, expected={job.status}, unstarted=unstarted, completed_at=utcnow(), **changes
    )
    if finished is None:
        return None
    logger.info("job %s", status.value.lower(), extra={"error_code": finished.error.code if finished.error else None})
    share.release_slot(ports, finished.tenant_id, finished.job_id)
    publish_job_event(ports, finished)
    return finished


def publish_job_event(ports: Ports, job: Job) -> None:
    detail = JobEventDetail(
        job_id=job.job_id,
        tenant_id=job.tenant_id,
        status=job.status,
        format=job.format,
        row_count=job.result.row_count if job.result else None,
        result_bytes=job.result.bytes if job.result else None,
        result_location=job.result.location if job.result else None,
        error=job.error,
        created_at=job.created_at,
        submitted_at=job.submitted_at,
        completed_at=job.completed_at or utcnow(),
        duration_ms=job.duration_ms,
        correlation_id=job.correlation_id,
    )
    ports.events.publish(JOB_EVENT_DETAIL_TYPES[job.status], detail, resources=[job.job_id])
    ports.jobs.mark_published(job.job_id, job.status)
