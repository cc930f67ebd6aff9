"""The reconciler's sweep over bulk jobs: the same backstop as for queries (:mod:`spectra.reconciliation`), on the
bulk table's pending index.

* ``InProgress`` with a statement: DescribeStatement; an ended statement goes through
  :func:`~spectra.bulk.lifecycle.complete_bulk_statement`, as if its event had come.
* ``UploadComplete``, or ``InProgress`` without a statement: its queue message is lost or keeps failing; queue it
  again after ``requeue_after_seconds`` (the conditional start and the ClientToken make that safe), and fail it with
  ``not_started`` once it has waited ``pending_max_age_seconds`` since it was queued (since it was started, once
  ``InProgress``: a job that waited its hour under its tenant's cap has its time again to run). An executor that
  died between starting the statement and recording it is covered by the queueing again: the next executor starts
  the load with the same ClientToken, gets the same statement back (running, failed or committed) and records it.
  The reconciler cannot look for that statement itself: ListStatements shows only the statements of the caller's
  own IAM role, and the executor's is not the reconciler's.
* Ended, but its event or its result files are still owed: settle them; result files still owed
  ``RESULTS_GIVEN_UP_AFTER`` (20 hours) after the job ended are given up (the result routes answer 410).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from events import BulkJobQueuedMessage, ErrorInfo, StatementStatusChange
from spectra import share
from spectra.bulk.lifecycle import (
    RESULTS_WRITER_LEASE,
    being_started,
    bulk_ports,
    complete_bulk_statement,
    finish_bulk_job,
    give_up_results,
    settle,
)
from spectra.bulk.models import BulkJob, BulkState
from spectra.errors import NotFound
from spectra.ports import Ports
from spectra.reconciliation import (
    TERMINAL_STATEMENT_STATES,
    Outcome,
    ReconcileSummary,
    Thresholds,
    sweep,
    tenant_refusal,
)
from spectra.share import WaitingLines

logger = logging.getLogger(__name__)


def reconcile_bulk(
    ports: Ports,
    now: datetime,
    thresholds: Thresholds,
    summary: ReconcileSummary,
    *,
    deadline: float | None = None,
    lines: WaitingLines | None = None,
) -> None:
    bulk = bulk_ports(ports)
    page = bulk.jobs.pending_before(now - thresholds.look_after, limit=thresholds.batch_max)
    lines = lines or WaitingLines(ports)
    left = sweep(
        page.jobs,
        bulk.jobs.get,
        lambda job, quiet_since: _reconcile(ports, job, quiet_since, now, thresholds, lines),
        summary,
        deadline=deadline,
    )
    summary.out_of_time = summary.out_of_time or bool(left)
    summary.more_pending = summary.more_pending or page.more or summary.throttled or summary.out_of_time


#: A finished job whose result files are owed is asked for them again only after this long quiet: its writer's lease
#: (longer than the bulk results function may run), which would keep a second writer out anyway.
RESULTS_ASKED_AGAIN_AFTER = RESULTS_WRITER_LEASE
#: A job whose result files are still owed this long after it ended gets none (see give_up_results): its input is
#: too large to write them within the function's 15 minutes, or every attempt failed; the Data API keeps what the
#: load answered (its rejected rows) for 24 hours, so no attempt after that could write them anyway.
RESULTS_GIVEN_UP_AFTER = timedelta(hours=20)


def _reconcile(
    ports: Ports, job: BulkJob, quiet_since: datetime, now: datetime, thresholds: Thresholds, lines: WaitingLines
) -> Outcome:
    bulk = bulk_ports(ports)
    if job.state.is_terminal:
        return _reconcile_ended(ports, job, quiet_since, now)
    if job.state is BulkState.IN_PROGRESS and job.statement_id:
        return _check_statement(ports, job, now)
    if job.state is BulkState.IN_PROGRESS and job.started_at and now - job.started_at < thresholds.requeue_after:
        # An executor is starting it (reading its files, writing its manifests): its statement is about to be
        # recorded. Giving up (or queueing it again) now would fail a load that is about to run, and commit.
        return Outcome.WAITING
    if being_started(job, now):
        # The same for a later attempt (a copy re-queued after the first one's starts were throttled, whose
        # started_at stays the first's): it wrote its plan a moment ago
        return Outcome.WAITING
    # A job that was started waited its turn already (up to pending_max_age under its tenant's cap): it has the same
    # time again from its start, so that its statement, maybe started and committed by an executor that died before
    # recording it, is found by the next executor's ClientToken rather than the job failed "not_started" (its tenant
    # would send the rows again).
    since = job.started_at if job.state is BulkState.IN_PROGRESS and job.started_at else job.queued_at
    asked_to_stop = job.abort_requested_at is not None  # while an executor held its slot (202), since reclaimed
    if asked_to_stop and (now - (since or job.created_at) >= thresholds.give_up_after or _in_line(ports, job, lines)):
        # as asked, not left in line for a slot to be woken into nor failed not_started at the hour (as on the query
        # side): none of its statements was recorded, and it holds no slot
        return _end_never_started(ports, job, BulkState.ABORTED)
    if now - (since or job.created_at) >= thresholds.give_up_after:
        waited = int(thresholds.give_up_after.total_seconds())
        error = ErrorInfo(code="not_started", message=f"the job did not reach the warehouse within {waited} seconds")
        return _end_never_started(ports, job, BulkState.FAILED, error=error)
    if now - quiet_since >= thresholds.requeue_after and lines.waits_its_turn(job.tenant_id, job.job_id):
        if (refused := tenant_refusal(ports, job)) is not None:
            return _end_never_started(ports, job, BulkState.FAILED, error=refused)
        bulk.jobs.mark_checked(job.job_id, job.state, now)  # in line at its tenant's cap: a release sends it
        return Outcome.WAITING
    if now - quiet_since >= thresholds.requeue_after:
        ports.queue.send(
            BulkJobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id, correlation_id=job.correlation_id)
        )
        bulk.jobs.mark_checked(job.job_id, job.state, now)
        return Outcome.REQUEUED
    return Outcome.WAITING


def _reconcile_ended(ports: Ports, job: BulkJob, quiet_since: datetime, now: datetime) -> Outcome:
    """An ended job still indexed: its event or its result files are owed, or it is settled and only still indexed."""
    owed_since = job.completed_at or job.updated_at
    owed = job.event_published and not job.results_ready  # its event out, its result files not written yet
    if owed and (job.results_writer_until or 0) > now.timestamp():
        return Outcome.WAITING  # a run is writing its result files (giving them up under it would 410 them)
    if owed and now - owed_since >= RESULTS_GIVEN_UP_AFTER:
        hours = int(RESULTS_GIVEN_UP_AFTER.total_seconds() // 3600)
        why = f"not done within {hours} hours of the job's end (too large to write in one run, or every run failed)"
        return Outcome.EXPIRED if give_up_results(ports, job, why) else Outcome.SKIPPED
    if owed and now - quiet_since < RESULTS_ASKED_AGAIN_AFTER:
        return Outcome.WAITING  # its result files are being written (or were asked for a moment ago)
    bulk = bulk_ports(ports)
    if job.event_published and job.results_ready:
        # Settled yet still indexed (the index lagged, or a check re-entered it as it settled): take it out, else
        # every later run reads it again, oldest first, ahead of the jobs that need it.
        bulk.jobs.mark_published(job.job_id, job.state)
        return Outcome.SKIPPED
    # Checked before settling: the settling writes are the ones that take the job out of the index. While its
    # event is owed (each run tries it), its result files are asked for again only once per
    # RESULTS_ASKED_AGAIN_AFTER since the job ended, so one writer is never joined by another.
    bulk.jobs.mark_checked(job.job_id, job.state, now)
    settle(ports, job, ask_results=_periods(now - owed_since) > _periods(quiet_since - owed_since))
    return Outcome.PUBLISHED


def _end_never_started(ports: Ports, job: BulkJob, state: BulkState, **changes: Any) -> Outcome:
    """End a job none of whose statements was recorded (``unstarted``), conditional on its plan as read: an attempt
    that wrote one since is starting the load (:func:`~spectra.bulk.lifecycle.being_started`). ``changes`` (an error)
    go to :func:`~spectra.bulk.lifecycle.finish_bulk_job` as they are."""
    plan_seen = job.plan if job.state is BulkState.IN_PROGRESS else False
    ended = finish_bulk_job(ports, job, state, unstarted=True, plan_seen=plan_seen, **changes)
    return Outcome.EXPIRED if ended else Outcome.SKIPPED


def _in_line(ports: Ports, job: BulkJob, lines: WaitingLines) -> bool:
    """Whether the job waits in its tenant's line holding no running slot: the run's view of the line may be minutes
    old, and a job woken since holds a slot while its executor starts it (that one ends it)."""
    return lines.waits_its_turn(job.tenant_id, job.job_id) and share.slot_taken_at(ports, job) is None


def _periods(elapsed: timedelta) -> int:
    return int(elapsed / RESULTS_ASKED_AGAIN_AFTER)


def _check_statement(ports: Ports, job: BulkJob, now: datetime) -> Outcome:
    statement_id = job.statement_id or ""
    # Moved to the back of the index first: a job whose check is throttled (which ends the sweep) or whose ending
    # kills this invocation must not head every later run.
    bulk_ports(ports).jobs.mark_checked(job.job_id, job.state, now)
    try:
        info = ports.warehouse.describe(statement_id)
    except NotFound:
        error = ErrorInfo(code="statement_lost", message=f"the warehouse no longer knows statement {statement_id}")
        lost = finish_bulk_job(ports, job, BulkState.FAILED, error=error)  # a late event may win
        return Outcome.EXPIRED if lost else Outcome.SKIPPED
    state = TERMINAL_STATEMENT_STATES.get(info.status)
    if state is None:
        return Outcome.STILL_RUNNING
    change = StatementStatusChange(statementId=statement_id, statementName=job.job_id, state=state)
    finished = complete_bulk_statement(ports, change)
    return Outcome.COMPLETED if finished is not None and finished.state.is_terminal else Outcome.SKIPPED
