"""How a job moves after it is queued: the executor starts its statement, the completion consumer (fed by the Data
API's status-change events, or by the reconciler when an event never came) finishes it.

Every step is safe to repeat. The executor's QUEUED → SUBMITTED write is conditional and its ExecuteStatement call
carries the job id as ClientToken, so a redelivered message finds the statement it already started. The statement
runs in one of the tenant's Data API sessions, leased with its running slot (spectra/sessions.py). Completion
publishes the project event, then makes the conditional SUBMITTED → terminal write that also records the event as
sent (see :func:`finish_job`), so a retry after a failed publish sends it, and a duplicate status event does nothing.
"""

from __future__ import annotations

import logging
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
from spectra import logs, sessions, share
from spectra.delivery import collect_result, statement_sql
from spectra.errors import IdentityRefused, ResultRefused, ResultUnconvertible, StatementRejected, Throttled
from spectra.identity import identity_for
from spectra.jobs import Job, utcnow
from spectra.ports import Ports
from spectra.slots import PooledSession

logger = logging.getLogger(__name__)


def execute_job(ports: Ports, message: JobQueuedMessage, *, final_attempt: bool = False) -> Job | None:
    """Start the job's statement on the warehouse. Returns the job, or None when there is nothing (more) to do.

    Throttling and passing service trouble propagate as :class:`~spectra.errors.Throttled`, so the message is
    retried later, except on the ``final_attempt`` (the queue's last delivery before its DLQ): then the job fails
    with the service's message rather than waiting, unexplained, for the reconciler. A statement the Data API
    refuses (a bad parameter, an unknown user) fails the job at once with the service's message.
    """
    claim = share.take_slot(ports, message)
    if not claim:
        return None  # its tenant is at its running cap: the job waits QUEUED (spectra/share.py)
    lease = claim.session  # an idle session of the tenant's, leased with the slot (spectra/sessions.py)
    job = ports.jobs.transition(message.job_id, JobStatus.SUBMITTED, submitted_at=utcnow())
    if job is None:
        job = ports.jobs.get(message.job_id)
        if job is None or job.status.is_terminal:  # a late message: the slot just taken is not the job's to keep
            share.release_slot(ports, message.tenant_id, message.job_id, session=sessions.unused(lease))
        if job is None:
            logger.error("job %s from the queue does not exist; dropping the message", message.job_id)
            return None
        if job.status is not JobStatus.SUBMITTED or job.statement_id:
            logger.info("job %s is %s; nothing to execute", job.job_id, job.status.value)
            return None
        # SUBMITTED without a statement: an earlier attempt stopped between the two writes. The ClientToken makes
        # the call below return that attempt's statement if it got as far as the Data API.
        if job.cancel_requested_at is not None:
            finish_job(ports, job, JobStatus.CANCELLED, unstarted=True, session=sessions.unused(lease))
            return None
    try:
        identity = identity_for(ports, job)  # spectra/identity.py: a tenant identity, or the job fails
    except IdentityRefused as exc:
        error = ErrorInfo(code=exc.code, message=exc.message)
        finish_job(ports, job, JobStatus.FAILED, error=error, unstarted=True, session=sessions.unused(lease))
        return None
    lease = sessions.usable_lease(ports, job, lease, identity)  # a session runs as whoever opened it
    try:
        started, session = sessions.start_statement(
            ports,
            job,
            statement_sql(ports.settings, job),  # the job's SQL, or its UNLOAD for delivery export
            identity,
            lease,
            parameters=[p.model_dump() for p in job.parameters],
            result_format="CSV",
        )
    except StatementRejected as exc:
        finish_job(ports, job, JobStatus.FAILED, error=ErrorInfo(code="statement_rejected", message=exc.message))
        return None
    except Throttled as exc:
        if not final_attempt:
            raise  # the job keeps its slot and its session's lease for the retry, which finds both its own
        error = ErrorInfo(code="warehouse_unavailable", message=f"gave up after repeated tries: {exc.message}")
        finish_job(ports, job, JobStatus.FAILED, error=error, unstarted=True, session=sessions.unused(lease))
        return None
    statement_id = started.statement_id
    recorded = {"session_id": session.session_id, "session_identity": session.identity} if session else {}
    updated = ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], statement_id=statement_id, **recorded)
    if updated is None:
        current = ports.jobs.get(job.job_id)
        if session is not None:  # whoever ended the job released its slot without knowing of this session
            sessions.drop(ports, job, session)
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
        if not job.event_published:
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


def _finish_with_result(ports: Ports, job: Job, statement_id: str) -> Job | None:
    info = ports.warehouse.describe(statement_id)
    try:
        result = collect_result(ports, job, info)  # spectra/delivery.py: inline, files or an export's files
    except ResultRefused as exc:  # too big for inline, a Parquet export with duplicate names
        error = ErrorInfo(code=exc.code, message=exc.message)
        return finish_job(ports, job, JobStatus.FAILED, error=error, statement_id=statement_id)
    except ResultUnconvertible as exc:
        # Retried (the status event comes back, or the reconciler calls again) until the attempts run out; then the
        # job fails with the reason rather than stay SUBMITTED for the reconciler to retry for ever.
        attempts = job.result_attempts + 1
        if attempts < ports.settings.result_max_attempts:
            ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], result_attempts=attempts)
            raise
        logger.error("job %s: giving up on its result after %d attempts: %s", job.job_id, attempts, exc.message)
        error = ErrorInfo(code=exc.code, message=exc.message)
        return finish_job(
            ports, job, JobStatus.FAILED, error=error, statement_id=statement_id, result_attempts=attempts
        )
    return finish_job(ports, job, JobStatus.COMPLETED, result=result, statement_id=statement_id)


def finish_job(
    ports: Ports,
    job: Job,
    status: JobStatus,
    *,
    unstarted: bool = False,
    session: PooledSession | None = None,
    **changes: Any,
) -> Job | None:
    """Move the job from the state it was seen in (``job.status``) to a terminal state and announce it.

    None when the job moved meanwhile (another worker finished it, or the executor started it): the caller's view
    is stale and nothing is written. The job's running slot is released and its Data API session (``session``, or
    the one its record names) goes back to the tenant's pool, in one write.

    Once the job's statement has ended, its outcome is settled: every writer that can still finish the job (a
    duplicate status event, the reconciler) writes the same one. Then the event goes out first and the terminal
    write records it as published, one write fewer per job; a failure after the event repeats the event, never
    loses it (events are at least once). Otherwise (giving up on a job that never started, a cancel racing the
    executor) the write comes first, so no event announces an ending that did not happen.
    """
    completed_at = utcnow()
    settled = not unstarted and bool(changes.get("statement_id") or job.statement_id)
    if settled:
        publish_job_event(
            ports, job.model_copy(update={"status": status, "completed_at": completed_at, **changes}), mark=False
        )
    finished = ports.jobs.transition(
        job.job_id,
        status,
        expected={job.status},
        unstarted=unstarted,
        announced=settled,
        completed_at=completed_at,
        **changes,
    )
    if finished is None:
        return None
    logger.info("job %s", status.value.lower(), extra={"error_code": finished.error.code if finished.error else None})
    share.release_slot(
        ports, finished.tenant_id, finished.job_id, session=session or sessions.returned(ports, finished)
    )
    if not settled:
        publish_job_event(ports, finished)
    return finished


def publish_job_event(ports: Ports, job: Job, *, mark: bool = True) -> None:
    """Put the job's terminal event on the bus and (``mark``) record on the job that it is out."""
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
    if mark:
        ports.jobs.mark_published(job.job_id, job.status)
