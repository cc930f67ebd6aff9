"""The backstop for lost messages: jobs that waited too long are looked at again and moved on.

AWS delivers the Data API's "Statement Status Change" event best-effort, and a queue message can be lost between
two writes of a process that died. Nothing may depend on either arriving, so a scheduled sweep reads the pending
index (:mod:`spectra.job_store`: jobs with work left, the longest-quiet first) and decides per job with
:func:`plan`:

* SUBMITTED with a statement: ask DescribeStatement. A terminal statement goes through
  :func:`~spectra.lifecycle.complete_statement`, exactly as if its event had come (one code path for results); a
  running one is left alone and moved to the back of the index; one the Data API no longer knows (statements expire
  after 24 hours) fails the job, since its result can never be collected.
* QUEUED, or SUBMITTED without a statement (written by an executor before the one-write start): the queue message
  is gone, or keeps failing, or the executor stopped between ExecuteStatement and its write. Re-queue it (ids only,
  so the executor reads the job): its ``ClientToken = job id`` returns the statement an earlier attempt may already
  have started, and its conditional QUEUED → SUBMITTED write makes a second message harmless. Re-queueing waits
  ``requeue_after_seconds``, longer than the jobs queue's visibility timeout, so SQS's own retry of a throttled
  message comes first.
* ... unless the job was created more than ``pending_max_age_seconds`` ago: then it fails with a clear reason
  rather than loop forever (a message that keeps landing in the DLQ would otherwise be re-queued every few minutes).
* Terminal but its event never published (PutEvents failed after the terminal write): publish it now.

Throttling by the Data API ends the sweep early; the job it was describing has moved to the back of the index
first, so the next run starts with the jobs behind it, and nothing else the sweep did not reach has moved. The run is
bounded (``reconcile_batch_max`` jobs per index, and an optional deadline: query jobs take half of it first, the bulk
sweep then runs, and the query jobs left take what remains) so a backlog cannot outlast the function's timeout, and
neither kind keeps the other waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from events import ErrorInfo, JobQueuedMessage, JobStatus, StatementState, StatementStatusChange
from spectra import deadline as time_left
from spectra import logs, share
from spectra.dynamo import PendingJob
from spectra.errors import IdentityRefused, NotFound, TenantInactive, Throttled
from spectra.identity import TenantJob, identity_for
from spectra.jobs import Job, utcnow
from spectra.lifecycle import ORPHANED_AFTER_SECONDS, complete_statement, finish_job, publish_job_event
from spectra.ports import Ports
from spectra.settings import Settings
from spectra.share import WaitingLines

logger = logging.getLogger(__name__)

#: Data API statement states (DescribeStatement ``Status``) that end a statement, as the completion event names them.
TERMINAL_STATEMENT_STATES = {state.value: state for state in StatementState}


class Action(StrEnum):
    """What the reconciler does with one pending job."""

    CHECK_STATEMENT = "check_statement"
    REQUEUE = "requeue"
    GIVE_UP = "give_up"
    PUBLISH = "publish"
    WAIT = "wait"  # pending, but not for long enough to re-queue
    NOTHING = "nothing"  # finished and announced: the index had not caught up yet


@dataclass(frozen=True)
class Thresholds:
    """The reconciler's clock, from settings (see :class:`~spectra.settings.Settings` for why each value)."""

    look_after: timedelta
    requeue_after: timedelta
    give_up_after: timedelta
    batch_max: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            look_after=timedelta(seconds=settings.reconcile_after_seconds),
            requeue_after=timedelta(seconds=settings.requeue_after_seconds),
            give_up_after=timedelta(seconds=settings.pending_max_age_seconds),
            batch_max=settings.reconcile_batch_max,
        )


def plan(job: Job, *, quiet_since: datetime, now: datetime, thresholds: Thresholds) -> Action:
    """Decide what to do with a job the pending index says has been quiet since ``quiet_since``.

    Pure, so every rule is unit-tested. The caller only passes jobs quiet for at least ``look_after``.
    """
    moved = max((t for t in (job.submitted_at, job.completed_at) if t is not None), default=None)
    if moved is not None and moved > now - thresholds.look_after:
        # It moved after the index listed it as quiet (the executor started it, its completion ended it): acted on now,
        # the check would race the writer that moved it, both completing it and both announcing it (a job listed
        # QUEUED at its tenant's cap, started meanwhile, its statement checked as its event came: the outage fault
        # test). Its entry moved with it, and a later run looks again once it is quiet. Moved means a change of state:
        # ``updated_at`` also changes with writes that move nothing (a cancel request and its taking back, a result
        # attempt counted), and a client repeating a DELETE would keep a job whose event was lost from ever being
        # checked.
        return Action.WAIT
    if job.status.is_terminal:
        return Action.NOTHING if job.event_published else Action.PUBLISH
    if job.status is JobStatus.SUBMITTED and job.statement_id:
        return Action.CHECK_STATEMENT
    if now - job.created_at >= thresholds.give_up_after:
        return Action.GIVE_UP
    if now - quiet_since >= thresholds.requeue_after:
        return Action.REQUEUE
    return Action.WAIT


class Outcome(StrEnum):
    COMPLETED = "completed"  # reached a terminal state from its statement's state
    REQUEUED = "requeued"
    EXPIRED = "expired"  # failed: never reached the warehouse, or its statement is gone
    PUBLISHED = "published"  # terminal already; its missing event was published
    STILL_RUNNING = "still_running"
    WAITING = "waiting"
    SKIPPED = "skipped"  # another worker moved it meanwhile


@dataclass
class ReconcileSummary:
    """What one run did; the handler returns it and logs it, the metrics are derived from it."""

    checked: int = 0
    completed: int = 0
    requeued: int = 0
    expired: int = 0
    published: int = 0
    still_running: int = 0
    waiting: int = 0
    skipped: int = 0
    errors: int = 0
    throttled: bool = False
    out_of_time: bool = False
    more_pending: bool = False

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome.value, getattr(self, outcome.value) + 1)

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)


def reconcile(ports: Ports, now: datetime | None = None, *, deadline: float | None = None) -> ReconcileSummary:
    """One sweep over the pending jobs quiet for longer than ``reconcile_after_seconds``.

    ``now`` is the sweep's clock (tests move it forward instead of waiting); ``deadline`` is a ``time.monotonic()``
    value after which no further job is started, so the function returns before Lambda's timeout.
    """
    now = now or utcnow()
    thresholds = Thresholds.from_settings(ports.settings)
    summary = ReconcileSummary()
    page = ports.jobs.pending_before(now - thresholds.look_after, limit=thresholds.batch_max)
    lines = WaitingLines(ports)

    def look(entries: list[PendingJob], until: float | None) -> list[PendingJob]:
        return sweep(
            entries,
            ports.jobs.get,
            lambda job, quiet_since: _reconcile_job(ports, job, quiet_since, now, thresholds, lines),
            summary,
            deadline=until,
        )

    # Query jobs first, for half the run; then the bulk sweep, whatever happened to theirs; then the query jobs left,
    # for what time is left. A backlog of query jobs, or a Data API throttling their checks, cannot keep every bulk
    # job from being looked at, and without bulk work the query jobs have the whole run.
    left = look(page.jobs, None if deadline is None else time.monotonic() + (deadline - time.monotonic()) / 2)
    if ports.bulk is not None:
        from spectra.bulk.reconcile import reconcile_bulk  # bulk builds on this module

        reconcile_bulk(ports, now, thresholds, summary, deadline=deadline, lines=lines)
    if left and not summary.throttled:
        left = look(left, deadline)
    summary.out_of_time = summary.out_of_time or bool(left)
    summary.more_pending = summary.more_pending or page.more or summary.throttled or summary.out_of_time
    if summary.more_pending:
        logger.warning("reconciler left overdue jobs for the next run: %s", summary.as_dict())
    return summary


def sweep(
    entries: list[PendingJob],
    load: Callable[[str], Any],
    handle: Callable[[Any, datetime], Outcome],
    summary: ReconcileSummary,
    *,
    deadline: float | None,
) -> list[PendingJob]:
    """Look at each pending entry in turn (query jobs or bulk jobs: ``load`` reads one, ``handle`` decides), counting
    outcomes into ``summary``; the entries ``deadline`` left unreached are returned (none when throttled). Throttling
    ends the sweep (the next run starts again from the longest-quiet entry); any other failure is logged and
    counted. An entry that failed otherwise than in a statement check keeps its place for the next run; a statement
    check has moved its job to the back before asking the Data API, so neither a throttle nor a failure there stops
    later runs on it."""
    for index, entry in enumerate(entries):
        if deadline is not None and time.monotonic() >= deadline:
            return entries[index:]
        with logs.job_keys(job_id=entry.job_id):  # each job's lines carry its id and tenant (spectra/logs.py)
            try:
                job = load(entry.job_id)
                if job is None:
                    continue
                logs.bind(tenant_id=job.tenant_id)
                summary.checked += 1
                outcome = handle(job, entry.pending_since)
            except time_left.OutOfTime as exc:
                # a result's collection ran out of the run's time (spectra/deadline.py): not the Data API throttling,
                # so said as what it is (out_of_time), and the entries after it are left for the next run
                logger.warning("reconciler out of time at job %s; stopping this run: %s", entry.job_id, exc)
                summary.out_of_time = True
                return entries[index + 1 :]
            except Throttled as exc:
                # The Data API wants fewer calls: stop here, the next run starts again from the longest-quiet job.
                logger.warning("reconciler throttled at job %s; stopping this run: %s", entry.job_id, exc)
                summary.throttled = True
                return []
            except Exception as exc:
                # One job that cannot be read or finished (an item no model reads, a bug, a result that will not
                # write) must not block the others: it is retried, loudly (ReconcileErrors), on every run (from its
                # place, or from the back when its statement check moved it there), while the jobs behind it are
                # handled.
                logger.error(
                    "reconciler could not move job %s (%s)",
                    entry.job_id,
                    type(exc).__name__,
                    exc_info=logs.traceback_of(exc),
                )
                summary.errors += 1
                continue
            summary.count(outcome)
    return []


def _being_started(ports: Ports, job: Job, now: datetime) -> bool:
    """Whether the QUEUED job holds a running slot taken (or re-stamped) within :data:`ORPHANED_AFTER_SECONDS`: an
    executor is starting it (no executor runs longer than its 30 s Timeout), as the bulk side's ``being_started``
    reads its plan. One read of the tenant's slots item, for a job about to be given up only."""
    stamp = share.slot_taken_at(ports, job)
    return stamp is not None and now.timestamp() - stamp < ORPHANED_AFTER_SECONDS


def _reconcile_job(
    ports: Ports, job: Job, quiet_since: datetime, now: datetime, thresholds: Thresholds, lines: WaitingLines
) -> Outcome:
    action = plan(job, quiet_since=quiet_since, now=now, thresholds=thresholds)
    logger.info("reconciling job %s (%s): %s", job.job_id, job.status.value, action.value)
    if action is Action.CHECK_STATEMENT:
        return _check_statement(ports, job, now)
    if action is Action.REQUEUE and lines.waits_its_turn(job.tenant_id, job.job_id):
        if job.cancel_requested_at is not None and share.slot_taken_at(ports, job) is None:
            # asked to stop while an executor held its slot (202), then parked in line when that slot was
            # reclaimed: nothing of its started, and it is to end CANCELLED, not wait for a slot to be woken into
            # (nor fail not_started at the hour). Holding a slot, it was woken since the run saw the line, and an
            # executor may be starting it: that one ends it
            ended = finish_job(ports, job, JobStatus.CANCELLED, unstarted=True)
            return Outcome.EXPIRED if ended else Outcome.SKIPPED
        if (refused := tenant_refusal(ports, job)) is not None:
            ended = finish_job(ports, job, JobStatus.FAILED, error=refused, unstarted=True)
            return Outcome.EXPIRED if ended else Outcome.SKIPPED
        ports.jobs.mark_checked(job.job_id, job.status, now)  # in line at its tenant's cap: a release sends it
        return Outcome.WAITING
    if action is Action.REQUEUE:
        ports.queue.send(
            JobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id, correlation_id=job.correlation_id)
        )
        # Moving the job to the back of the index also spaces the next re-queue by ``requeue_after``.
        ports.jobs.mark_checked(job.job_id, job.status, now)
        return Outcome.REQUEUED
    if action is Action.GIVE_UP and _being_started(ports, job, now):
        # an executor took its slot moments ago to start it, and may be inside ExecuteStatement: given up now, a
        # write that commits at once (an INSERT) would be done while the job says "it was not run". The executor
        # records the statement or gives the slot back; one that died leaves the stamp to age
        ports.jobs.mark_checked(job.job_id, job.status, now)
        return Outcome.STILL_RUNNING
    if action is Action.GIVE_UP and job.cancel_requested_at is not None:
        ended = finish_job(ports, job, JobStatus.CANCELLED, unstarted=True)  # as asked (202 cancel_requested)
        return Outcome.EXPIRED if ended else Outcome.SKIPPED
    if action is Action.GIVE_UP:
        age = int(thresholds.give_up_after.total_seconds())
        error = ErrorInfo(
            code="not_started",
            message=f"the job did not reach the warehouse within {age} seconds of its creation; it was not run",
        )
        expired = finish_job(ports, job, JobStatus.FAILED, error=error, unstarted=True)
        return Outcome.EXPIRED if expired else Outcome.SKIPPED
    if action is Action.PUBLISH:
        publish_job_event(ports, job)
        return Outcome.PUBLISHED
    return Outcome.WAITING if action is Action.WAIT else Outcome.SKIPPED


def tenant_refusal(ports: Ports, job: TenantJob) -> ErrorInfo | None:
    """Why a job waiting its turn at its tenant's cap will never run (``tenant_inactive``: its tenant deactivated or
    deleted since), or None. Left in line, such a job on a tenant paused at cap 0, which frees no slot to wake it, would
    wait for the one-hour give-up and fail ``not_started``. Other refusals of the tenant's identity are the executor's
    to tell, when the job's turn comes."""
    try:
        identity_for(ports, job)
    except TenantInactive as exc:
        return ErrorInfo(code=exc.code, message=exc.message)
    except IdentityRefused:
        pass
    return None


def _check_statement(ports: Ports, job: Job, now: datetime) -> Outcome:
    statement_id = job.statement_id or ""
    # To the back of the index first, as the bulk sweep does: a DescribeStatement throttled (which ends the run), or
    # a collection that outlives this run (killed at the function's timeout, no attempt counted), would otherwise
    # keep the job first in line, and every later run would stop on it before reaching the jobs behind.
    ports.jobs.mark_checked(job.job_id, JobStatus.SUBMITTED, now)
    try:
        info = ports.warehouse.describe(statement_id)
    except NotFound:
        error = ErrorInfo(
            code="statement_lost",
            message=f"the warehouse no longer knows statement {statement_id}; its result cannot be collected",
        )
        # not settled by a statement: a late event may have collected its result just before the Data API forgot it
        lost = finish_job(ports, job, JobStatus.FAILED, error=error, settled=False)
        return Outcome.EXPIRED if lost else Outcome.SKIPPED
    state = TERMINAL_STATEMENT_STATES.get(info.status)
    if state is None:
        return Outcome.STILL_RUNNING
    change = StatementStatusChange(
        statementId=info.statement_id, statementName=job.job_id, state=state, rows=info.result_rows
    )
    finished = complete_statement(ports, change, info=info)  # described already: not again
    return Outcome.COMPLETED if finished is not None and finished.status.is_terminal else Outcome.SKIPPED
