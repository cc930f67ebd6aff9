"""How a job moves after it is queued: the executor starts its statement, the completion consumer (fed by the Data
API's status-change events, or by the reconciler when an event never came) finishes it.

Every step is safe to repeat. The executor calls ExecuteStatement with the job id as ClientToken, then makes the
job's one conditional QUEUED → SUBMITTED write with the statement it got, so a second message for the job gets the
same statement back and finds the write made. The statement runs in one of the tenant's Data API sessions, leased
with its running slot (spectra/sessions.py). Completion publishes the project event, then makes the conditional
SUBMITTED → terminal write that also records the event as sent and gives the slot and the session back, in one
transaction (see :func:`finish_job`), so a retry after a failed publish sends it, and a duplicate status event that
comes after the write does nothing. Two that handle the job at once (a late event and the reconciler, say) may both
publish: events are at least once, the job's ending once (README, decisions).

Calls per small job (the bench counts them): the API's PutItem and SendMessage (the job in the message); the
executor's slot claim, ExecuteStatement and SUBMITTED write; completion's GetItem, GetStatementResultV2 (no
DescribeStatement: the first result page carries the row count), PutEvents and the terminal transaction. Nine.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from events import (
    JOB_EVENT_DETAIL_TYPES,
    Delivery,
    ErrorInfo,
    JobEventDetail,
    JobQueuedMessage,
    JobStatus,
    StatementState,
    StatementStatusChange,
)
from spectra import deadline, logs, sessions, share
from spectra.delivery import collect_result, statement_sql
from spectra.errors import (
    IdentityRefused,
    ResultRefused,
    ResultUnconvertible,
    StartNotRecorded,
    StatementRejected,
    Throttled,
    passing_trouble,
    reason_of,
    without_arns,
)
from spectra.identity import check_write_grant, identity_for
from spectra.job_queue import sendable
from spectra.jobs import Job, utcnow, utcnow_after
from spectra.ports import Ports
from spectra.publisher import PublishFailed
from spectra.slots import PooledSession
from spectra.warehouse import StatementInfo

logger = logging.getLogger(__name__)

#: A job's error code when its result could not be collected, for another reason than a page that cannot be
#: converted, after ``result_max_attempts`` tries (a result file S3 refused, a page the Data API refused to give).
RESULT_FAILED = "result_failed"


#: The job rides in its queue message up to this size (its SQL and parameters as JSON); SQS takes 256 KiB a message.
JOB_IN_MESSAGE_MAX_BYTES = 200 * 1024
#: The job in a message is trusted only in a message sent this soon after the job was created (the API sends it at
#: once): a copy moved back from the dead-letter queue is a new message, received for the first time, but its job
#: may have ended long since.
JOB_IN_MESSAGE_TRUST_SECONDS = 60.0
#: How long completion waits for the executor to record a statement whose status event came first (the executor
#: writes the job once, after ExecuteStatement; a statement can end before that write lands).
START_RECORD_WAIT_SECONDS = 2.0
#: A statement made this long ago whose job is still QUEUED was started by an executor that died before recording
#: it: no executor runs longer than its 30 s Timeout (template.yaml's Globals), so none can still be about to write
#: it. Completion then records it on the job itself (:func:`_wait_for_start_record`).
ORPHANED_AFTER_SECONDS = 120.0
#: A result collected in longer than this is written before its event is published, as after a failed attempt:
#: meanwhile other handlers of the same statement (the reconciler, each minute; copies of its event) may have failed
#: theirs, the last one giving the result up (FAILED, announced), and an event published first would then announce a
#: second, contradicting ending. A quick collection leaves them no such time and saves the write.
SETTLED_COLLECTION_SECONDS = 5.0


def queued_message(job: Job) -> JobQueuedMessage:
    """The message that starts a job the API just recorded, with the job in it when it fits, so the executor's
    first delivery needs no read of the job store."""
    body = sendable(job.model_dump_json(exclude_none=True))  # as it travels: U+FFFF takes 6 bytes, not 3
    carried = job.model_dump(mode="json", exclude_none=True) if len(body.encode()) <= JOB_IN_MESSAGE_MAX_BYTES else None
    return JobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id, correlation_id=job.correlation_id, job=carried)


def _job_to_start(
    ports: Ports, message: JobQueuedMessage, *, first_delivery: bool, sent_at: datetime | None = None
) -> Job | None:
    """The job as the message carries it on its first delivery (the API wrote it a moment ago), else as the job
    store has it now. A redelivered message is stale by definition: the job may have started or ended since; so is
    one sent (``sent_at``) long after the job was created, such as a copy moved back from the dead-letter queue. A
    job that may write (submitted with the write flag) is always read: it may have been cancelled meanwhile."""
    if first_delivery and message.job is not None:
        job = Job.model_validate(message.job)
        fresh = _sent_soon_after(job.created_at, sent_at)
        if job.job_id == message.job_id and job.tenant_id == message.tenant_id and job.status is JobStatus.QUEUED:
            if fresh and job.write_grant is None:
                return job
            # A job that may write is read first: it may have been cancelled while its message waited in the queue,
            # and a write started before the refused QUEUED -> SUBMITTED write sends its cancel can commit. A read
            # started so is cancelled at once and changes nothing, so it keeps the read saved.
            logger.info("job %s: the message may be stale for this job; reading the job store", job.job_id)
        else:
            logger.warning("job %s: the message carries another job or state; reading the job store", message.job_id)
    return ports.jobs.get(message.job_id)


def _maybe_tried(message: JobQueuedMessage, *, first_delivery: bool, sent_at: datetime | None) -> bool:
    """Whether an earlier attempt may have started the job's statement and died before recording it. Only the API's
    own message (the job in it), on its first delivery, sent soon after the job was made, rules that out. Any other
    may follow such an attempt: a redelivery, or a message sent anew and received a first time (a re-queue by the
    reconciler, which re-queues a job precisely because its attempt may have died so; a wake-up; a job too large to
    carry; a copy moved back from the dead-letter queue). A job such a message ends unstarted has that statement
    looked up by name and stopped (one call more)."""
    if not first_delivery or message.job is None:
        return True
    if sent_at is None:
        return False
    try:
        return not _sent_soon_after(datetime.fromisoformat(str(message.job["created_at"])), sent_at)
    except (KeyError, TypeError, ValueError):
        return True


def _sent_soon_after(created_at: datetime, sent_at: datetime | None) -> bool:
    """The message was sent (``sent_at``; None: not known) within JOB_IN_MESSAGE_TRUST_SECONDS of the job's making."""
    return sent_at is None or (sent_at - created_at).total_seconds() <= JOB_IN_MESSAGE_TRUST_SECONDS


def execute_job(
    ports: Ports,
    message: JobQueuedMessage,
    *,
    final_attempt: bool = False,
    first_delivery: bool = False,
    sent_at: datetime | None = None,
) -> Job | None:
    """Start the job's statement on the warehouse. Returns the job, or None when there is nothing (more) to do.

    The job is written once, after ExecuteStatement: QUEUED → SUBMITTED with its statement and session, conditional
    on QUEUED. A job cancelled (or given up) meanwhile refuses that write, and the statement just started is
    cancelled; a second message for the same job gets the same statement back (``ClientToken`` = job id) and finds
    the write done. On the message's ``first_delivery`` the job comes in the message, if the message was sent
    (``sent_at``) soon after the job was made; otherwise it is read first, so a redelivered message (or one moved
    back from the dead-letter queue) for a job that has ended starts nothing.

    Throttling and passing service trouble propagate as :class:`~spectra.errors.Throttled`, so the message is
    retried later, except on the ``final_attempt`` (the queue's last delivery before its DLQ): then the job fails
    with the service's message rather than waiting, unexplained, for the reconciler. A statement the Data API
    refuses (a bad parameter, an unknown user) fails the job at once with the service's message.
    """
    maybe_tried = _maybe_tried(message, first_delivery=first_delivery, sent_at=sent_at)
    claim = share.take_slot(ports, message)
    if not claim:  # its tenant is at its running cap: the job waits QUEUED (spectra/share.py)
        if not first_delivery:
            _record_orphan(ports, message)
        return None
    lease = claim.session  # an idle session of the tenant's, leased with the slot (spectra/sessions.py)
    job = _job_to_start(ports, message, first_delivery=first_delivery, sent_at=sent_at)
    if job is None or job.status.is_terminal:  # a late message: the slot just taken is not the job's to keep
        # The lease goes back on its own: the job's ending may have freed the slot since the claim (a DELETE, the
        # reconciler's give-up), knowing nothing of the lease, and a release refused for the slot refuses it too.
        sessions.give_back_unused(ports, message.tenant_id, message.job_id, lease)
        share.release_slot(ports, message.tenant_id, message.job_id)
        if job is None:
            logger.error("job %s from the queue does not exist; dropping the message", message.job_id)
        else:
            logger.info("job %s is %s; nothing to execute", job.job_id, job.status.value)
            if maybe_tried and not job.statement_id:
                _stop_unrecorded(ports, job)
        return None
    if job.statement_id:
        logger.info("job %s is %s with its statement; nothing to execute", job.job_id, job.status.value)
        sessions.give_back(ports, job, lease, running_in=job.session_id)
        if job.cancel_requested_at is not None:
            # asked to stop while it started, and the attempt that recorded the statement failed to cancel it (a
            # throttled CancelStatement fails its record, and this is its redelivery): asked again
            ports.warehouse.cancel(job.statement_id)
        return None
    # QUEUED, or SUBMITTED without a statement (an executor before this one stopped between its two writes: the
    # ClientToken makes the call below return that attempt's statement if it got as far as the Data API)
    if job.cancel_requested_at is not None:
        _end_unstarted(ports, job, JobStatus.CANCELLED, lease, maybe_tried=maybe_tried)
        return None
    try:
        identity = identity_for(ports, job)  # spectra/identity.py: a tenant identity, or the job fails
        check_write_grant(ports, job)  # ... and a write the tenant may still make
    except IdentityRefused as exc:
        error = ErrorInfo(code=exc.code, message=exc.message)
        _end_unstarted(ports, job, JobStatus.FAILED, lease, maybe_tried=maybe_tried, error=error)
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
        error = ErrorInfo(code="statement_rejected", message=exc.message)
        if finish_job(ports, job, JobStatus.FAILED, error=error) is None:
            _give_back_claim(ports, job, lease)
        return None
    except Throttled as exc:
        if (exc.details or {}).get(sessions.LEASE_DROPPED):
            lease = None  # refused by the Data API and dropped: not the job's to give back
        if not final_attempt:
            # The job keeps its slot and its session's lease for the retry, which finds both its own. SQS redelivers
            # the message; the job goes to the back of the pending index so that the reconciler, counting from
            # now, does not add messages of its own while SQS's retries (up to maxReceiveCount) are still coming.
            try:
                ports.jobs.mark_checked(job.job_id, job.status, utcnow())
            except Exception:  # the message's redelivery is what matters; the reconciler only adds a copy
                logger.warning("could not move throttled job %s back in the pending index", job.job_id, exc_info=True)
            raise
        if share.waits_for_capacity(ports, exc, job.created_at):
            # the warehouse is full, not failing: the job waits on, a message of its own after a pause (a fresh count
            # of deliveries), keeping its slot and lease as a throttled retry does, until the reconciler's give-up
            share.retry_later(ports, message)
            return None
        error = ErrorInfo(code="warehouse_unavailable", message=f"gave up after repeated tries: {exc.message}")
        # the Data API failing, asking it for an earlier attempt's statement first would keep the job from its end
        _end_unstarted(ports, job, JobStatus.FAILED, lease, maybe_tried=maybe_tried, error=error, look_first=False)
        return None
    lease = lease if session is lease else None  # dropped, or given back by start_statement: no longer the job's
    statement_id = started.statement_id
    updated = _record_statement(ports, job, statement_id, **_session_fields(session))
    if updated is None:
        _start_write_refused(ports, job, statement_id, session, lease)
        return None
    if updated.cancel_requested_at is not None:
        ports.warehouse.cancel(statement_id)  # DELETE arrived while we were starting the statement
    return updated


def _session_fields(session: PooledSession | None) -> dict[str, Any]:
    """What the job records of the session its statement runs in (nothing when it runs in none)."""
    fields = {"session_id": session.session_id, "session_identity": session.identity} if session else {}
    if session is not None and session.opened is not None:
        fields["session_opened_at"] = int(session.opened)  # DynamoDB takes no float; floored is on the early side
    return fields


def _start_write_refused(
    ports: Ports, job: Job, statement_id: str, session: PooledSession | None, lease: PooledSession | None
) -> None:
    """The job refused the write recording the statement just started: another copy recorded it, or the job ended
    meanwhile. What this delivery took goes back, and a statement started behind an ended job is stopped."""
    current = ports.jobs.get(job.job_id)
    if current is not None and current.statement_id == statement_id and current.status.is_terminal:
        # a second copy of the job's first message, come after the job ended: the slot and the session it just
        # took are not the job's to keep (its ending released its own)
        share.release_slot(ports, job.tenant_id, job.job_id, session=sessions.unused(lease))
        return
    if current is not None and current.statement_id == statement_id:
        # a second message for the job: the first recorded this very statement, and the session it runs in. That
        # copy may have recorded none (its lease, another session, went back), where this copy's lease is the one
        # the statement runs in: kept leased, never idle while it is busy
        sessions.give_back(ports, current, lease, running_in=session.session_id if session else current.session_id)
        return
    # The job ended while we started its statement (cancelled while QUEUED, the reconciler gave up on it): the
    # statement must not run on behind a terminal job.
    logger.warning("job %s ended while its statement %s started; cancelling it", job.job_id, statement_id)
    if not ports.warehouse.cancel(statement_id):
        # A short statement ran to its end before the cancel: the job says otherwise, so the operator hears of
        # it, as _stop_unrecorded tells it; an error for one that may write (a committed INSERT, say)
        ended = current.status.value if current is not None else "gone"
        log = logger.error if job.write_grant is not None else logger.warning
        log("job %s is %s, yet its statement %s ran to its end", job.job_id, ended, statement_id)
    # The session goes back to the pool, idle: whoever ended the job knew nothing of it, and dropped, it would stay
    # open at the Data API for its keep-alive, one per job cancelled in time (a loop of submit and cancel fills the
    # account's sessions). Put back apart from the slot, since a DELETE served while ExecuteStatement ran has freed
    # the slot already. Should the Data API still find it busy, the next lease is refused and drops it.
    if session is not None:
        ports.slots.return_session(job.tenant_id, sessions.idle_again(ports, session), job_id=job.job_id)
    # Nor keep its slot: a job that ended before this first delivery took it (the job in the message was still
    # QUEUED) had nothing to release then. A slot the ending already freed is not held: nothing happens.
    share.release_slot(ports, job.tenant_id, job.job_id)


def _record_orphan(ports: Ports, message: JobQueuedMessage) -> None:
    """A redelivered message that found its tenant at the cap: its earlier attempt may have died between
    ExecuteStatement and recording the statement, and had its slot reclaimed since (a slot held, it would have
    been claimed again, and the statement recorded through its ClientToken). Such a statement runs, or has run,
    without the job knowing, and its status event waits for the record (:func:`_wait_for_start_record`): it is looked
    up by the job's name and recorded here, and the job leaves the line, since that event, retried while the job
    waits, can be dead-lettered. One ListStatements per redelivery that waits. The slot's eviction forgot the session
    it leased, so none is recorded."""
    statement_id = ports.warehouse.find(message.job_id)
    if statement_id is None:
        return
    job = ports.jobs.get(message.job_id)
    if job is not None and job.statement_id == statement_id and not job.status.is_terminal and job.cancel_requested_at:
        # recorded by an earlier redelivery whose CancelStatement was throttled: asked again
        ports.warehouse.cancel(statement_id)
        return
    if job is None or job.status is not JobStatus.QUEUED or job.statement_id:
        return
    recorded = _record_statement(ports, job, statement_id)
    if recorded is not None:
        logger.warning("job %s: an earlier attempt started statement %s and died; recorded", job.job_id, statement_id)
        ports.slots.unpark(job.tenant_id, job.job_id)
        if recorded.cancel_requested_at is not None:  # asked to stop while it waited (queries.cancel_job)
            ports.warehouse.cancel(statement_id)


def _record_statement(ports: Ports, job: Job, statement_id: str, **recorded: Any) -> Job | None:
    """Record the statement (and the session it runs in) on a job seen with none: QUEUED → SUBMITTED, or on a job
    seen SUBMITTED without one (an executor before this one stopped between its two writes), kept SUBMITTED. None
    when the job is no longer in the state it was seen in."""
    if job.status is JobStatus.QUEUED:
        return ports.jobs.transition(
            job.job_id,
            JobStatus.SUBMITTED,
            expected={JobStatus.QUEUED},
            submitted_at=utcnow_after(job.created_at),
            statement_id=statement_id,
            **recorded,
        )
    return ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], statement_id=statement_id, **recorded)


def _end_unstarted(
    ports: Ports,
    job: Job,
    status: JobStatus,
    lease: PooledSession | None,
    *,
    maybe_tried: bool,
    error: ErrorInfo | None = None,
    look_first: bool = True,
) -> None:
    """End a job with no statement recorded (cancelled, refused, given up); its slot and ``lease`` go back.

    When ``maybe_tried``, an earlier attempt may have started the statement and died before recording it. With
    ``look_first`` it is looked up before the ending: still running, it is cancelled; already ended, it is recorded and
    the job ends with its own outcome (:func:`_ran_to_its_end`), as a job asked to stop while its executor held its
    slot does (README, "Cancelling"), rather than CANCELLED (or FAILED, its tenant deactivated since) beside an INSERT
    that committed. Without ``look_first`` (the Data API is what failed), or when the look fails (throttled on the
    queue's last delivery, say), the ending is written first, so the job does not wait QUEUED with its slot for the
    reconciler, and the statement is stopped after it (:func:`_stop_unrecorded`), since no message may be left to come
    back and find it."""
    looked = False  # for an earlier attempt's statement, and none runs on
    if maybe_tried and look_first:
        try:
            if _ran_to_its_end(ports, job, lease):
                return
            looked = True
        except Exception:  # the Data API throttling or failing: the job still ends, and is looked for after it
            logger.warning("job %s: could not look for an earlier attempt's statement first", job.job_id, exc_info=True)
    ended = finish_job(ports, job, status, error=error, unstarted=True, session=sessions.unused(lease))
    if ended is None:  # refused: another copy started and recorded it meanwhile, or ended it
        _give_back_claim(ports, job, lease)
        return
    if maybe_tried and not looked:
        _stop_unrecorded(ports, ended)


def _ran_to_its_end(ports: Ports, job: Job, lease: PooledSession | None) -> bool:
    """Whether an earlier attempt's statement, started under the job's name and never recorded, ran to its end: found
    (one ListStatements) and refused a cancel, it is recorded as the job's, which ends with its outcome through its
    status event or the reconciler (a cancel asked meanwhile finds it ended). The slot this delivery claimed is the
    job's, as when a statement starts; the lease goes back (the earlier attempt's session, if any, is not known). A
    statement still running is stopped here (False: the job ends as its caller asked)."""
    earlier = ports.warehouse.find(job.job_id)
    if earlier is None:
        return False
    if ports.warehouse.cancel(earlier):
        logger.warning("job %s: cancelled statement %s an earlier attempt started", job.job_id, earlier)
        return False
    recorded = _record_statement(ports, job, earlier)
    if recorded is None:  # another copy recorded a statement, or the job ended, meanwhile
        _give_back_claim(ports, job, lease)
        return True
    logger.warning("job %s: statement %s an earlier attempt started ran to its end; recorded", job.job_id, earlier)
    sessions.give_back(ports, recorded, lease, running_in=None)
    return True


def _give_back_claim(ports: Ports, job: Job, lease: PooledSession | None) -> None:
    """Give back what this delivery's claim took when its write (an ending, or the record of an earlier attempt's
    statement) was refused because the job had moved on.

    - Running (another copy recorded its statement): the slot is that copy's; only a lease it does not run in goes
      back.
    - Ended or gone: the ending that won may have come before this delivery's claim (a first delivery carries the job
      QUEUED, as it was when the message was sent, so a DELETE while it waited is news to it), and then freed nothing
      of this claim's. Lease and slot go back here, as the path of a statement started behind an ended job gives them
      back; kept, the slot would stay taken by an ended job until a claim at the tenant's cap reclaims it. Releasing
      a slot the winning ending already freed finds nothing (slots are keyed by job id)."""
    current = ports.jobs.get(job.job_id)
    if current is not None and not current.status.is_terminal:
        sessions.give_back(ports, current, lease, running_in=current.session_id)
        return
    sessions.give_back_unused(ports, job.tenant_id, job.job_id, lease)
    share.release_slot(ports, job.tenant_id, job.job_id)


def _stop_unrecorded(ports: Ports, job: Job) -> None:
    """A job that ended with no statement recorded (cancelled while QUEUED, given up) whose message came back: an
    earlier attempt may have died between ExecuteStatement and recording it, and that statement must not run on
    behind the ended job. It is found by the job's name and cancelled; one that already ran to its end is logged."""
    earlier = ports.warehouse.find(job.job_id)
    if earlier is None:
        return
    if ports.warehouse.cancel(earlier):
        logger.warning(
            "job %s is %s; cancelled statement %s an earlier attempt started", job.job_id, job.status.value, earlier
        )
    else:
        logger.error(
            "job %s is %s, yet statement %s an earlier attempt started ran to its end",
            job.job_id,
            job.status.value,
            earlier,
        )


def complete_statement(
    ports: Ports, change: StatementStatusChange, *, info: StatementInfo | None = None, ended_at: float | None = None
) -> Job | None:
    """Drive a job to its terminal state from a statement's terminal state. Unknown statements are not ours.

    ``info``: the statement as DescribeStatement told a caller that asked already (the reconciler). Otherwise a
    FINISHED statement is not described: its result's first page says how many rows it has. ``ended_at``: when the
    statement ended (epoch seconds; its status event's time), from which its session's keep-alive counts."""
    handled_at = time.time()
    job_id = change.statementName or ""
    job = ports.jobs.get(job_id) if job_id else None
    if job is not None and job.status is JobStatus.QUEUED:
        job = _wait_for_start_record(ports, job, change.statementId)
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
    # The job's session goes back to the pool idle until its keep-alive ends, which the Data API counts from the
    # statement's end: counted from this ending instead (after a result's collection, an event's retries, or the
    # reconciler's run minutes on), the pool would call alive a session closed since.
    session = sessions.returned(ports, job, ended_at=_statement_end(info, ended_at, handled_at))
    if change.state is StatementState.FINISHED:
        return _finish_with_result(ports, job, statement_id, info, session)
    if change.state is StatementState.ABORTED:
        # Cancelled or failed depends on cancel_requested_at, which a DELETE may set between two handlers' reads: not
        # settled by the statement alone, so the write comes first and only its winner announces the ending.
        if job.cancel_requested_at is not None:
            return finish_job(
                ports, job, JobStatus.CANCELLED, statement_id=statement_id, settled=False, session=session
            )
        # Nobody asked: an administrator or a timeout stopped it. The tenant should see a failure, not a cancel.
        error = ErrorInfo(code="statement_aborted", message="the warehouse aborted the statement")
        return finish_job(
            ports, job, JobStatus.FAILED, error=error, statement_id=statement_id, settled=False, session=session
        )
    info = info or ports.warehouse.describe(statement_id)  # the event does not carry the database's message
    message = without_arns(info.error) if info.error else "the statement failed without a message"
    error = ErrorInfo(code=share.failure_code(info.error), message=message)  # an export's UNLOAD names the role
    return finish_job(ports, job, JobStatus.FAILED, error=error, statement_id=statement_id, session=session)


def _statement_end(info: StatementInfo | None, ended_at: float | None, handled_at: float) -> float:
    """When the statement ended, as well as it is known: DescribeStatement's ``UpdatedAt`` (the reconciler's), else
    its status event's time, else this handling's start; 0 when described without one (its session is then pooled
    as closed)."""
    if info is not None:
        updated = info.raw.get("UpdatedAt")
        return updated.timestamp() if isinstance(updated, datetime) else 0.0
    return min(ended_at, handled_at) if ended_at is not None else handled_at


def _wait_for_start_record(ports: Ports, job: Job, statement_id: str) -> Job | None:
    """The job once the executor has recorded the statement whose status event just came: the executor writes the
    job after ExecuteStatement, and a short statement can end first. Read again for a moment. If the job is still
    QUEUED, the executor may have died between the call and the write. Its message comes back, gets the same
    statement through its ClientToken and records it, unless the tenant is at its cap by then (the dead attempt's
    slot reclaimed): the message then waits in line, maybe past the reconciler's give-up, which would call the job
    "not run" while its statement ran. So a statement made longer ago than any executor runs
    (:data:`ORPHANED_AFTER_SECONDS`) is recorded here, on the job still QUEUED, and the job ends with its outcome;
    a younger one's event is retried later (the consumer reports it failed)."""
    until = time.monotonic() + START_RECORD_WAIT_SECONDS
    delay = 0.02
    while time.monotonic() < until:
        time.sleep(delay)
        delay = min(delay * 2, 0.4)
        current = ports.jobs.get(job.job_id)
        if current is None or current.status is not JobStatus.QUEUED:
            return current
    made = ports.warehouse.describe(statement_id).created_at
    if made is not None and (utcnow() - made).total_seconds() > ORPHANED_AFTER_SECONDS:
        logger.warning(
            "job %s is QUEUED, yet its statement %s was made %s: the executor that started it died before recording"
            " it; recorded now",
            job.job_id,
            statement_id,
            made.isoformat(),
        )
        adopted = _record_statement(ports, job, statement_id)
        return adopted if adopted is not None else ports.jobs.get(job.job_id)
    raise StartNotRecorded(
        f"statement {statement_id} of job {job.job_id} ended before the job recorded its start; trying again later"
    )


def _finish_with_result(
    ports: Ports, job: Job, statement_id: str, info: StatementInfo | None, session: PooledSession | None
) -> Job | None:
    started, left_at_start = time.monotonic(), deadline.left()
    try:
        result = collect_result(ports, job, statement_id, info)  # spectra/delivery.py: inline, files or an export's
    except deadline.OutOfTime as exc:
        # cut off before the function's own timeout (which nothing counts): counted when the collection had a fair
        # share of a run, so a result too large to collect in one ends result_failed; else tried again uncounted
        if not deadline.fair(left_at_start):
            raise
        return _failed_attempt(ports, job, statement_id, exc, session)
    except ResultRefused as exc:  # too big for inline, a Parquet export with duplicate names
        # Written first, always: other handlers may have given the result up meanwhile (FAILED for their reason,
        # announced), or completed it, for whether rows fit inline is measured against the job item as each handler
        # read it (a cancel request stamped between two reads makes it longer). Refusals are rare; the write is cheap.
        error = ErrorInfo(code=exc.code, message=exc.message)
        return finish_job(
            ports, job, JobStatus.FAILED, error=error, statement_id=statement_id, settled=False, session=session
        )
    except Exception as exc:
        if passing_trouble(exc):
            raise  # throttled, or a service failing on its side: nothing wrong with the result, tried again as it is
        return _failed_attempt(ports, job, statement_id, exc, session)
    try:
        # After a failed attempt, a copy that fails its last one may give the result up (FAILED, written first) while
        # this one collected it fine: this ending then writes first too, so only the winner is announced. Before any
        # failure, and for a collection quick enough that no other handler had time to fail all the attempts left,
        # nothing else can end the job, and the event goes first (one write fewer).
        settled = _settled(job, started)
        return finish_job(
            ports, job, JobStatus.COMPLETED, result=result, statement_id=statement_id, settled=settled, session=session
        )
    except PublishFailed:
        raise  # the bus did not take the event: nothing wrong with the result, tried again as it is
    except Exception as exc:
        if passing_trouble(exc):
            raise  # DynamoDB or the bus throttled or failing (the event may be out): tried again, not counted
        # The terminal write itself refused (say, a record past DynamoDB's item size): counted like a result that
        # failed, so the job ends instead of its event going out again on every retry for a day.
        return _failed_attempt(ports, job, statement_id, exc, session)


def _settled(job: Job, started: float) -> bool:
    """Whether the ending of a collection begun at ``started`` (``time.monotonic()``) is the statement's alone: no
    attempt had failed when the job was read, it was quick enough that no other handler failed all the attempts left
    and gave the result up meanwhile (SETTLED_COLLECTION_SECONDS), and no other handler can refuse the same rows: an
    ``inline`` job's can be refused as too large by a handler that read the job longer (a cancel request stamped
    between the two reads), which writes FAILED first, so its completions write first too."""
    if job.delivery is Delivery.INLINE:
        return False
    return job.result_attempts == 0 and time.monotonic() - started < SETTLED_COLLECTION_SECONDS


def _failed_attempt(
    ports: Ports, job: Job, statement_id: str, exc: Exception, session: PooledSession | None = None
) -> Job | None:
    """Count one failed attempt at the job's result, re-raising ``exc`` while attempts are left.

    Retried (the status event comes back, or the reconciler calls again) until the attempts run out; then the job
    fails with the reason rather than stay SUBMITTED, holding its tenant's running slot, until the Data API forgets
    the statement (24 hours) while the reconciler retries it every minute. A refusal counts: a page that cannot be
    converted, a result file S3 refuses, a page the Data API refuses to give, a terminal write refused. Passing
    trouble (:func:`~spectra.errors.passing_trouble`: throttled, a 5xx, no answer) does not: counted, an outage of a
    few minutes would fail jobs whose results are fine, and a job whose "Job Completed" had gone out would then
    announce "Job Failed" as well. Trouble that never passes keeps the job SUBMITTED, holding its slot, until the Data
    API forgets the statement (24 hours) and the reconciler ends it ``statement_lost``: counting it from when the
    statement started would fail long statements on minutes of an outage, and counting it from when the trouble
    started needs a write of its own on every job that meets it.
    """
    counted = ports.jobs.count_result_attempt(job.job_id)
    if counted is None:
        return None  # no longer SUBMITTED: whoever moved it on owns its end
    attempts = counted.result_attempts
    if attempts < ports.settings.result_max_attempts:
        raise exc
    if isinstance(exc, ResultUnconvertible):
        error = ErrorInfo(code=exc.code, message=exc.message)
    else:
        error = ErrorInfo(code=RESULT_FAILED, message=f"the result could not be collected: {reason_of(exc)}"[:1000])
    logger.error(
        "job %s: giving up on its result after %d attempts (%s)",
        job.job_id,
        attempts,
        type(exc).__name__,
        exc_info=logs.traceback_of(exc),
    )
    # Not settled by the statement: another handler (a late copy of the event, the reconciler) may collect the same
    # result fine meanwhile. The write comes first, so only the ending that wins is announced.
    return finish_job(
        ports,
        job,
        JobStatus.FAILED,
        error=error,
        statement_id=statement_id,
        result_attempts=attempts,
        settled=False,
        session=session,
    )


def finish_job(
    ports: Ports,
    job: Job,
    status: JobStatus,
    *,
    unstarted: bool = False,
    session: PooledSession | None = None,
    settled: bool = True,
    **changes: Any,
) -> Job | None:
    """Move the job from the state it was seen in (``job.status``) to a terminal state and announce it.

    None when the job moved meanwhile (another worker finished it, or the executor started it): the caller's view
    is stale and nothing is written. The job's running slot is released and its Data API session (``session``, or
    the one the job names) goes back to the tenant's pool in the same write (:func:`spectra.share.finish_releasing`).

    Once the job's statement has ended, its outcome is settled: every writer that can still finish the job (a
    duplicate status event, the reconciler) writes the same one. Then the event goes out first and the terminal
    write records it as published, one write fewer per job; a failure after the event repeats the event, never
    loses it (events are at least once). Otherwise (giving up on a job that never started, a cancel racing the
    executor, an aborted statement whose ending depends on a cancel request, a result given up after failed attempts
    or collected after one or slowly, a result refused, a statement the Data API no longer knows: ``settled=False``) the
    write comes first, so no event announces an ending that did not happen.
    """
    completed_at = utcnow_after(job.created_at, job.submitted_at)
    settled = settled and not unstarted and bool(changes.get("statement_id") or job.statement_id)
    if settled:
        publish_job_event(
            ports, job.model_copy(update={"status": status, "completed_at": completed_at, **changes}), mark=False
        )
    finished = share.finish_releasing(
        ports,
        job,
        status,
        session=session or sessions.returned(ports, job),
        unstarted=unstarted,
        announced=settled,
        completed_at=completed_at,
        **changes,
    )
    if finished is None:
        return None
    logger.info("job %s", status.value.lower(), extra={"error_code": finished.error.code if finished.error else None})
    if not settled:
        publish_job_event(ports, finished)
    return finished


def publish_job_event(ports: Ports, job: Job, *, mark: bool = True) -> None:
    """Put the job's terminal event on the bus and (``mark``) record on the job that it is out."""
    detail = JobEventDetail(
        job_id=job.job_id,
        tenant_id=job.tenant_id,
        tenant_generation=job.tenant_generation,
        status=job.status,
        format=job.format,
        row_count=job.result.row_count if job.result else None,
        truncated=job.result.truncated if job.result else False,
        total_row_count=job.result.total_row_count if job.result else None,
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
