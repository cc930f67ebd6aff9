"""Query jobs as the API sees them: submit (and, for a one-call query, wait and answer), look up, list, cancel,
fetch results.

Submitting never touches the warehouse: it validates, records the job and queues one message, so the API answers in
milliseconds whatever the statement costs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from events import Delivery, ErrorInfo, JobStatus, ResultFormat
from spectra import logs, share, waits
from spectra.delivery import check_unload_size, request_problem, results_body, statement_sql, unload_problem
from spectra.errors import (
    Conflict,
    Gone,
    InvalidRequest,
    JobNotFinished,
    NotFound,
    StatementRejected,
    Throttled,
    TooManyWaits,
)
from spectra.job_store import ListPosition, request_fingerprint
from spectra.jobs import Job, new_job_id, utcnow
from spectra.lifecycle import finish_job, queued_message
from spectra.notify.models import Subscription
from spectra.notify.service import Callback, check_callback, discard_callback, job_callback, register_callback
from spectra.parameters import TypedParameter, bind, check_bound_size
from spectra.ports import Ports
from spectra.sql_guard import check_sql, one_parse_budget, parse_checked
from spectra.tenants import Caller, same_generation

logger = logging.getLogger(__name__)


def submit_query(
    ports: Ports,
    caller: Caller,
    *,
    sql: str,
    parameters: list[TypedParameter],
    fmt: ResultFormat,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    callback: Callback | None = None,
    delivery: Delivery = Delivery.AUTO,
    row_limit: int | None = None,
) -> tuple[Job, bool]:
    """Record and queue a query job. Returns the job and whether it was created now (False: an idempotent repeat).

    A ``callback`` is recorded before the job, so the job's end cannot outrun it; its URL is checked then. An
    idempotent repeat is answered its job without either (the first request's callback stands, its URL checked by
    the first request: a receiver's name that stopped resolving meanwhile does not turn the repeat into a 400 that
    hides the job and its secret).

    ``parameters`` are bound to the statement's placeholders here (:mod:`spectra.parameters`): the job records the
    statement and the string parameters the Data API will receive."""
    job, fingerprint = _requested_job(
        ports,
        caller,
        sql=sql,
        parameters=parameters,
        fmt=fmt,
        idempotency_key=idempotency_key,
        correlation_id=correlation_id,
        callback=callback,
        delivery=delivery,
        row_limit=row_limit,
    )
    if callback is not None:
        repeated = ports.jobs.repeat_of(job, fingerprint=fingerprint)
        if repeated is not None:
            logs.bind(job_id=repeated.job_id)
            return repeated, False
        check_callback(ports, callback)
        register_callback(ports, callback, caller=caller, job_id=job.job_id)
    drawn_id = job.job_id
    try:
        job, created = ports.jobs.create(job, fingerprint=fingerprint)
    except Conflict:  # the key was used for another request: no job, so no callback either
        if callback is not None:
            discard_callback(ports, tenant_id=caller.tenant_id, job_id=drawn_id)
        raise
    except Exception:
        if not job.idempotency_key:
            # The error (503/500) tells the client to retry, which makes another job: one an earlier attempt wrote
            # must not also run by the reconciler. With a key the retry gets that job back instead.
            _withdraw(ports, job.job_id)
        raise
    logs.bind(job_id=job.job_id)  # the request's later lines are about this job (spectra/logs.py)
    if callback is not None and not created:
        discard_callback(ports, tenant_id=caller.tenant_id, job_id=drawn_id)
    if created:
        try:
            ports.queue.send(queued_message(job))  # the job rides along: the executor need not read it
        except Exception as exc:
            if job.idempotency_key:
                # The client's retry with its key gets this job back, and the reconciler queues a QUEUED job whose
                # message never came (within REQUEUE_AFTER_SECONDS): the 500 is safe to retry and loses nothing.
                logger.warning("job %s could not be queued; the reconciler will queue it", job.job_id, exc_info=True)
                raise
            return _unqueued(ports, job, exc), created
    return job, created


def _requested_job(
    ports: Ports,
    caller: Caller,
    *,
    sql: str,
    parameters: list[TypedParameter],
    fmt: ResultFormat,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    callback: Callback | None = None,
    delivery: Delivery = Delivery.AUTO,
    row_limit: int | None = None,
) -> tuple[Job, str]:
    """The request checked (fields, SQL guard, parameters, sizes) and made the job it would create, with the
    fingerprint an idempotent repeat is matched on."""
    if problem := request_problem(fmt, delivery, row_limit, bool(parameters)):
        field, message = problem
        raise InvalidRequest(message, details=[{"loc": ["body", field], "msg": message}])
    guard = {
        "max_bytes": ports.settings.max_sql_bytes,
        "allow_writes": caller.allow_writes,
        "owned_schemas": caller.owned_schemas,
    }
    with one_parse_budget():  # the statement as sent and as bound: one budget for both
        statement, tree = parse_checked(sql, **guard)
        bound, rewritten = bind(statement, tree, parameters, max_total_bytes=ports.settings.max_parameter_bytes)
        if rewritten:
            check_bound_size(bound.sql, ports.settings.max_sql_bytes)
            check_sql(bound.sql, **guard)  # what runs is what the guard accepts, rewrite included
    if delivery is Delivery.EXPORT and (problem := unload_problem(bound.sql, export=True)):
        raise InvalidRequest(problem, details=[{"loc": ["body", "sql"], "msg": problem}])
    now = utcnow()
    job = Job(
        job_id=new_job_id(),
        tenant_id=caller.tenant_id,
        db_user=caller.db_user or "",
        sql=bound.sql,
        parameters=bound.parameters,
        format=fmt,
        delivery=delivery,
        row_limit=row_limit,
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
        correlation_id=correlation_id,
        tenant_generation=caller.generation,
        write_grant=sorted(caller.owned_schemas) if caller.allow_writes else None,
    )
    if delivery is Delivery.EXPORT:  # what the executor will send (less any renaming), as the Data API measures it
        check_unload_size(statement_sql(ports.settings, job, renamed=False), ports.settings.max_sql_bytes)
    fingerprint = request_fingerprint(
        statement,
        [p.model_dump() for p in parameters],
        fmt.value,
        *delivery_fingerprint(delivery, row_limit),
        # another callback URL is another request (its repeat would get the first URL's secret); none adds nothing
        *([["callback_url", callback.url]] if callback is not None else []),
    )
    return job, fingerprint


def earlier_job(ports: Ports, caller: Caller, ask: QueryAsk) -> Job | None:
    """The job an earlier request with ``ask``'s ``idempotency_key`` made (a Conflict when that was another request),
    or None: writing nothing, so a request refused before it may make a job (a one-call query past its tenant's
    waits) can still answer a repeat with the job its client already has. ``ask`` is checked and fingerprinted as
    :func:`submit_query` checks it, with or without a key: a request that can never pass is its 4xx, not the 429
    "send it again" of a one-call query past its tenant's waits, which a client retrying 429s would send again for
    ever."""
    job, fingerprint = _requested_job(
        ports,
        caller,
        sql=ask.sql,
        parameters=ask.parameters,
        fmt=ask.fmt,
        idempotency_key=ask.idempotency_key,
        correlation_id=None,
        callback=ask.callback,
        delivery=ask.delivery,
        row_limit=ask.row_limit,
    )
    earlier = ports.jobs.repeat_of(job, fingerprint=fingerprint) if ask.idempotency_key else None
    if earlier is None and ask.callback is not None:
        check_callback(ports, ask.callback)  # as a request that makes its job would
    if earlier is not None:
        logs.bind(job_id=earlier.job_id)  # the request's later lines are about this job, as a repeat's are
    return earlier


def _withdraw(ports: Ports, job_id: str) -> None:
    try:
        ports.jobs.withdraw(job_id)
    except Exception:  # the create's error is the answer; a job left behind is queued by the reconciler
        logger.warning("job %s: its create failed and it could not be withdrawn", job_id, exc_info=True)


def _unqueued(ports: Ports, job: Job, exc: Exception) -> Job:
    """A keyless job whose message's send failed. Whether SQS took the message cannot be told from the error: the
    client retries an attempt whose request went out and raises only the last attempt's error. Failing the job
    (``enqueue_failed``, so the client's retry, another job, is the only run) would race an executor that had the
    message: on its first delivery it starts the statement from the message, then finds its write refused, and a short
    INSERT committed before its cancel would run twice. So the job stays QUEUED and is answered (202): it runs once,
    through its message or the reconciler (which queues a QUEUED job whose message never came within
    REQUEUE_AFTER_SECONDS)."""
    logger.error("job %s: its message's send failed (%s); it runs by the reconciler", job.job_id, type(exc).__name__)
    try:
        return ports.jobs.get(job.job_id) or job
    except Exception:
        return job


def get_job(ports: Ports, caller: Caller, job_id: str) -> Job:
    job = ports.jobs.get_for_tenant(caller.tenant_id, job_id)
    # a predecessor's job (the tenant id deleted and created again) is not the caller's
    if job is None or not same_generation(caller.generation, job.tenant_generation):
        raise NotFound(f"job {job_id} not found")
    return job


@dataclass(frozen=True)
class JobListing:
    jobs: list[Job]
    next_token: str | None


def list_jobs(
    ports: Ports, caller: Caller, *, status: JobStatus | None, limit: int, next_token: str | None
) -> JobListing:
    """One page of the caller's jobs. ``next_token`` is signed for this tenant, filter and page size: any other token
    (forged, altered, another tenant's, another listing's) is refused before the store is asked anything."""
    limit = min(limit, ports.settings.api_page_max)
    listing = {
        "listing": "jobs",
        "tenant": caller.tenant_id,
        "status": status.value if status else None,
        "limit": limit,
    }
    after = ListPosition.from_token(ports.page_tokens, next_token, listing)
    page = ports.jobs.list_for_tenant(caller.tenant_id, limit=limit, status=status, after=after)
    token = page.resume_after.token(ports.page_tokens, listing) if page.resume_after else None
    # a predecessor's jobs (the tenant id deleted and created again) are left out: a short page, as a filter makes
    jobs = [j for j in page.jobs if same_generation(caller.generation, j.tenant_generation)]
    return JobListing(jobs=jobs, next_token=token)


def cancel_job(ports: Ports, caller: Caller, job_id: str, *, quick: bool = False) -> Job:
    """Cancel a queued job at once, or ask the warehouse to stop a running one (the job ends CANCELLED when the
    Data API reports the statement ABORTED). A finished job cannot be cancelled: 409. ``quick``: the warehouse is
    asked once, with short timeouts (the request has seconds left).

    A queued job that may write, and whose slot an executor has taken to start it, is asked to stop as a running one
    is (``cancel_requested``): the executor ends it CANCELLED if it has not started the statement, or cancels the
    statement it records, and the job ends with the statement's own outcome. Ended CANCELLED at once, its INSERT
    could start all the same and commit, and the job (and a one-call query's answer) would say CANCELLED (in 3 of 26
    tries near the boundary). What remains is the time between the slots read and the ending's write."""
    job = get_job(ports, caller, job_id)
    if job.status is JobStatus.QUEUED and job.write_grant is not None and share.slot_taken_at(ports, job) is not None:
        asked = ports.jobs.update(job.job_id, [JobStatus.QUEUED], cancel_requested_at=utcnow())
        if asked is not None:
            return asked
        job = get_job(ports, caller, job_id)  # the executor recorded its statement meanwhile, or the job ended
    if job.status is JobStatus.QUEUED:
        cancelled = _cancel_queued(ports, job)
        if cancelled is not None:
            return cancelled
        job = get_job(ports, caller, job_id)  # the executor picked it up meanwhile
    if job.status is JobStatus.SUBMITTED:
        marked = ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], cancel_requested_at=utcnow())
        if marked is None:  # it ended between our read and the write
            current = get_job(ports, caller, job_id)
            raise Conflict(f"job {job_id} already ended {current.status.value}", details={"status": current.status})
        # A refused call (throttled, denied, unreachable) raises: the request stays on the job, as asked for; the
        # statement runs on unless the DELETE is repeated (a 429 says to). Taking it back would race other cancels.
        stopping = not marked.statement_id or ports.warehouse.cancel(marked.statement_id, quick=quick)
        if not stopping:
            current = get_job(ports, caller, job_id)
            if current.status.is_terminal:
                raise Conflict(f"job {job_id} already ended {current.status.value}", details={"status": current.status})
            if quick:
                # The one-call query's cancel after its wait has no time left to ask how the statement ended: it ended
                # on its own (the job ends with that outcome) or another client's cancel stopped it (CANCELLED). The
                # request stays, and the answer says the cancel came too late to tell (await_job).
                raise CancelTooLate(
                    f"job {job_id}'s statement had ended before the cancel reached it; GET the job for its outcome",
                    details={"status": current.status},
                )
            if _ended_on_its_own(ports, marked.statement_id):
                # It finished or failed before any cancel reached it: the job ends with that outcome once its event
                # comes, not CANCELLED. Answered as an ended job, not 202 "cancel requested" (which a client would take
                # for "my write will not happen" while it has committed), and the request is taken back from the job (a
                # GET would say it still stands). Safe whoever else asked: no cancel stops a finished statement.
                ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], cancel_requested_at=None)
                raise Conflict(
                    f"job {job_id}'s statement already ended; the job ends with its outcome",
                    details={"status": current.status},
                )
            # ABORTED: another cancel stopped it (a repeat whose answer was lost, a second client, the one-call query's
            # cancel after its wait), and the job ends CANCELLED; answered as it stands, as that one was.
        try:
            return get_job(ports, caller, job_id)
        except Exception:  # the cancel is sent: a failed read must not say otherwise (an error invites a repeat)
            logger.warning("job %s: cancelled; answering it as marked", job_id, exc_info=True)
            return marked
    raise Conflict(f"job {job_id} already ended {job.status.value}", details={"status": job.status})


class CancelTooLate(Conflict):
    """The one-call query's cancel after its wait found the statement ended, with no time left to ask how."""


def _ended_on_its_own(ports: Ports, statement_id: str) -> bool:
    """After the Data API refused to cancel the statement: whether it FINISHED or FAILED (rather than ABORTED by a
    cancel), as DescribeStatement tells it; one it no longer keeps ended long ago. A failure to ask propagates (a
    429 when throttled): the request stays on the job, and a repeat asks again. Answering without knowing would
    tell a client either "cancel requested" for a job that then completes, or "ended" for one a cancel had stopped."""
    try:
        return ports.warehouse.describe(statement_id).status in ("FINISHED", "FAILED")
    except NotFound:
        return True


def _cancel_queued(ports: Ports, job: Job) -> Job | None:
    """The queued job ended CANCELLED (None: it moved meanwhile). A failure after the write (its event's PutEvents)
    leaves the job cancelled and its event owed, which the reconciler publishes: the answer is the cancelled job, not
    a 500 inviting a retry that would find the job ended (409)."""
    try:
        return finish_job(ports, job, JobStatus.CANCELLED)
    except Exception:
        current = ports.jobs.get(job.job_id)
        if current is None or current.status is not JobStatus.CANCELLED:
            raise
        logger.warning("job %s cancelled; its event is owed to the reconciler", job.job_id, exc_info=True)
        return current


def job_results(ports: Ports, caller: Caller, job_id: str) -> dict[str, Any]:
    """The rows of a small result, or presigned links to its files and manifest (spectra/delivery.py); 410 once the
    result is past its retention."""
    job = get_job(ports, caller, job_id)
    if not job.status.is_terminal:
        raise JobNotFinished(
            f"job {job_id} is {job.status.value}; ask again later",
            retry_after=retry_after(job),
            details={"status": job.status},
        )
    if job.status is not JobStatus.COMPLETED or job.result is None:
        raise Conflict(
            f"job {job_id} is {job.status.value}; results exist only for COMPLETED jobs",
            details={"status": job.status},
        )
    return results_body(ports, job)


def waited_results(ports: Ports, job: Job) -> dict[str, Any] | None:
    """The results of a job a one-call query saw COMPLETED, from the job as the wait read it (no second read). None,
    logged, when they cannot be given now: the answer is then the job alone (its results are a GET away), never an
    error that would send a client without an Idempotency-Key to run the statement again."""
    if job.result is None:
        return None
    try:
        return results_body(ports, job)
    except (Gone, Conflict):
        raise  # what a GET of them answers too (410 past their retention): not a passing failure
    except Exception:
        logger.warning(
            "job %s: its results could not be read after the wait; answering the job", job.job_id, exc_info=True
        )
        return None


def delivery_fingerprint(delivery: Delivery, row_limit: int | None) -> tuple:
    """What delivery adds to an idempotent request's fingerprint: nothing at the defaults, so keys recorded before
    deliveries existed still match their repeats."""
    if delivery is Delivery.AUTO and row_limit is None:
        return ()
    return (delivery.value, row_limit)


# -- waiting for a job (POST /v1/queries with wait_timeout) ---------------------------------------------------------

#: The first look at the job comes this long after it was queued; each wait after that is longer by ``WAIT_BACKOFF``,
#: up to ``WAIT_MAX_DELAY``: a query is answered within a third of its run time after its end (50 ms at least), and
#: a 25-second wait costs about 35 reads.
WAIT_FIRST_DELAY = 0.05
WAIT_BACKOFF = 1.3
WAIT_MAX_DELAY = 1.0


class WaitTimeoutAction(StrEnum):
    """What happens to a job still running when its ``wait_timeout`` ends."""

    CONTINUE = "CONTINUE"
    CANCEL = "CANCEL"


def wait_for_job(
    ports: Ports,
    job: Job,
    *,
    seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Job, bool, float]:
    """The job once it has ended, or as it is after ``seconds``, or as last seen when a read fails; whether the wait
    went its course (the job ended, or its time was up) rather than being cut short by a failed read; and how long
    its slowest look took.

    Reads the job store only (consistent reads, with backoff): waiting holds no running slot and never calls the
    warehouse, so a thousand waiting callers cost the Data API nothing. The job goes on whatever happens to the
    wait (the caller may hang up): it was queued before the wait began.

    No look is slept into with less time left than the slowest look so far took: a read the SDK retries against a
    throttled table can take seconds, and one begun at the end of the wait would carry the request past the
    function's time (a 5xx for a job that exists). A sleep that ends at the deadline is always followed by its look,
    so a job that ended just in time is answered ended."""
    deadline = clock() + seconds
    delay = WAIT_FIRST_DELAY
    slowest = 0.0
    while not job.status.is_terminal:
        remaining = deadline - clock()
        if remaining <= 0 or remaining < slowest:
            break
        sleep(min(delay, remaining))
        started = clock()
        try:
            job = ports.jobs.get(job.job_id) or job
        except Exception:
            # The job exists and its id is in no answer yet: an error would send a client without an
            # Idempotency-Key to submit it again. The wait ends (a read that fails can take many seconds; another
            # could carry the request past the function's time) and the job is answered as last seen.
            logger.warning(
                "job %s: a read during the wait failed; answering it as last seen", job.job_id, exc_info=True
            )
            return job, False, max(slowest, clock() - started)
        slowest = max(slowest, clock() - started)
        delay = min(delay * WAIT_BACKOFF, WAIT_MAX_DELAY)
    return job, True, slowest


#: A wait whose looks took longer than this (the job store answering slowly) cancels nothing on its timeout: the
#: cancel reads and writes the job store three times more, within the 3 s the wait leaves the request.
SLOW_LOOK_SECONDS = 0.5


@dataclass(frozen=True)
class Waited:
    """What a one-call query's wait came to: the job as it stands, and, when the cancel ``on_wait_timeout`` asked
    for did not surely reach the warehouse, why (``cancel_failed``: not sent; ``cancel_unconfirmed``: unknown)."""

    job: Job
    cancel_error: ErrorInfo | None = None


def await_job(
    ports: Ports,
    caller: Caller,
    job: Job,
    *,
    seconds: float,
    on_timeout: WaitTimeoutAction,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Waited:
    """:func:`wait_for_job`, then, if the job is still running when the time is up and ``on_timeout`` is CANCEL,
    cancel it: a queued job ends CANCELLED at once, a running one is asked to stop (``cancel_requested``). A wait
    cut short by a failed read cancels nothing (its time was not up)."""
    job, went_its_course, slowest = wait_for_job(ports, job, seconds=seconds, clock=clock, sleep=sleep)
    if job.status.is_terminal or on_timeout is WaitTimeoutAction.CONTINUE or not went_its_course:
        return Waited(job)
    if slowest > SLOW_LOOK_SECONDS:
        logger.warning("job %s: the job store answers slowly (%.1f s); not cancelling it", job.job_id, slowest)
        return Waited(job, _cancel_not_sent(job, "the job store answered too slowly to cancel it in time"))
    try:
        return Waited(cancel_job(ports, caller, job.job_id, quick=True))  # within the seconds the wait left
    except CancelTooLate as exc:  # the statement had ended: on its own, or stopped by another client's cancel
        cancel_error = ErrorInfo(code="statement_ended", message=exc.message)
    except Conflict:  # it ended between the last look and the cancel
        cancel_error = None
    except (Throttled, StatementRejected) as exc:
        # The job exists and its id is in no answer yet: an error here would send the client to retry, which
        # without an Idempotency-Key makes a second job. It is answered as it stands, with why the cancel was not
        # sent: the statement runs on unless DELETE /v1/jobs/{job_id} asks again.
        logger.warning("job %s: the cancel after its wait was refused; answering the job", job.job_id, exc_info=True)
        cancel_error = _cancel_not_sent(job, exc.message)
    except Exception:
        # A timeout or a dropped connection after CancelStatement went out (it may have stopped the job), or a job
        # store failure before it (it was not sent): the outcome is unknown.
        logger.warning("job %s: the cancel after its wait is unconfirmed; answering the job", job.job_id, exc_info=True)
        cancel_error = ErrorInfo(
            code="cancel_unconfirmed",
            message=f"the cancel's outcome is unknown (it may not have been sent); DELETE /v1/jobs/{job.job_id} "
            "to be sure",
        )
    try:
        return Waited(ports.jobs.get(job.job_id) or job, cancel_error)
    except Exception:
        return Waited(job, cancel_error)  # as the wait last saw it


def unwaited_cancel(job: Job, on_timeout: WaitTimeoutAction) -> ErrorInfo | None:
    """Why a CANCEL asked of a wait that could not be waited (a repeat answered past its tenant's waits) was not
    sent, when the job still runs; None when nothing was asked or there is nothing left to cancel. Silence would read
    as "no cancel was needed" while the statement ran on."""
    if on_timeout is not WaitTimeoutAction.CANCEL or job.status.is_terminal or job.cancel_requested_at is not None:
        return None  # nothing asked, nothing to cancel, or a cancel asked already (the first request's, say)
    return _cancel_not_sent(job, "this repeat was not waited: the tenant's one-call queries hold every wait")


def _cancel_not_sent(job: Job, reason: str) -> ErrorInfo:
    return ErrorInfo(
        code="cancel_failed",
        message=f"the job was not cancelled ({reason}); DELETE /v1/jobs/{job.job_id} to ask again",
    )


# -- a one-call query (POST /v1/queries): submit, wait, answer ------------------------------------------------------


@dataclass(frozen=True)
class QueryAsk:
    """What ``POST /v1/queries`` asks: the query as :func:`submit_query` takes it, and how long to wait for it.
    ``wait_timeout`` 0 answers at once."""

    sql: str
    parameters: list[TypedParameter]
    fmt: ResultFormat
    delivery: Delivery = Delivery.AUTO
    row_limit: int | None = None
    idempotency_key: str | None = None
    callback: Callback | None = None
    wait_timeout: int = 0
    on_wait_timeout: WaitTimeoutAction = WaitTimeoutAction.CONTINUE


@dataclass(frozen=True)
class Answered:
    """What a one-call query came to: the job as it stands, whether this request created it, why a cancel
    ``on_wait_timeout`` asked for did not surely reach the warehouse, the results of a job that completed within a
    wait (None: not waited for, or not readable now), and the callback to show (the one stored with the job for a
    repeat; None when none was asked or none is stored)."""

    job: Job
    created: bool
    cancel_error: ErrorInfo | None = None
    results: dict[str, Any] | None = None
    callback: Callback | Subscription | None = None


def answer_query(
    ports: Ports,
    caller: Caller,
    ask: QueryAsk,
    *,
    correlation_id: str | None,
    seconds_left: Callable[[int], float],
    wait_seconds: Callable[[int], float],
    on_job: Callable[[bool], None],
) -> Answered:
    """Submit ``ask``'s query and, with a ``wait_timeout``, wait for its job to end and read its results.

    ``seconds_left(wait_timeout)``: how long the request can still run, which the wait lease lasts.
    ``wait_seconds(wait_timeout)``: how long to wait, asked once the job is queued, so queueing it counts against the
    wait. ``on_job(created)`` is called as soon as the job is made or found, before any wait: what the caller counts
    of it stands whatever the wait or the results read then raise (a 410 for results past their retention)."""
    with contextlib.ExitStack() as held:
        earlier, wait, cancel_error = None, ask.wait_timeout, None
        if wait:
            # a wait holds this environment: it takes one of the tenant's wait leases first, or is refused 429 before
            # any job is made (spectra/waits.py); the lease lasts as long as the request can
            try:
                held.enter_context(waits.waiting_room(ports, caller.tenant_id, seconds=seconds_left(wait)))
            except TooManyWaits:
                # ... but a repeat of a request whose job exists makes none: it is answered that job as it stands,
                # without waiting ("a repeated key answers 200"), rather than told to send it again for an answer
                # it may hold already (a client retrying a lost answer while its tenant's waits are taken)
                earlier = earlier_job(ports, caller, ask)
                if earlier is None:
                    raise
                wait, cancel_error = 0, unwaited_cancel(earlier, ask.on_wait_timeout)
        if earlier is not None:
            job, created = earlier, False
        else:
            job, created = submit_query(
                ports,
                caller,
                correlation_id=correlation_id,
                sql=ask.sql,
                parameters=ask.parameters,
                fmt=ask.fmt,
                delivery=ask.delivery,
                row_limit=ask.row_limit,
                idempotency_key=ask.idempotency_key,
                callback=ask.callback,
            )
        on_job(created)
        if wait:
            waited = await_job(
                ports, caller, job, seconds=wait_seconds(ask.wait_timeout), on_timeout=ask.on_wait_timeout
            )
            job, cancel_error = waited.job, waited.cancel_error
        results = None
        if job.status is JobStatus.COMPLETED and ask.wait_timeout:
            results = waited_results(ports, job)
    stored = None
    if ask.callback is not None:
        # a repeat (the same Idempotency-Key and request) answers the first request's callback, secret included: a
        # client whose first answer was lost has no other way to learn it
        stored = ask.callback if created else job_callback(ports, tenant_id=job.tenant_id, job_id=job.job_id)
    return Answered(job=job, created=created, cancel_error=cancel_error, results=results, callback=stored)


def retry_after(job: Job) -> int:
    """Seconds before asking about an unfinished job again: 1 for a young job, then a tenth of its age, at most 30."""
    age = (utcnow() - job.created_at).total_seconds()
    return max(1, min(30, int(age / 10)))
