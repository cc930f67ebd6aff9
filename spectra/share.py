"""A tenant's share of the warehouse: a cap on the statements it runs at once, and the statement timeout.

**The running cap.** Each tenant may have at most ``cap`` jobs running (SUBMITTED) at once: the tenant's own
``max_running_statements``, else ``TENANT_MAX_RUNNING_STATEMENTS`` (0 pauses a tenant). The executor takes a *slot*
before it starts a statement (:func:`take_slot`); a job over the cap is neither failed nor started: it stays QUEUED
on its tenant's *waiting list*, and its message is consumed. When a job gives its slot back (:func:`release_slot`),
the longest-waiting job of that tenant is taken off the list and its message sent again. One tenant flooding the
service therefore holds at most ``cap`` of the warehouse's slots (and of the account's Data API active-statement
quota), its excess costs one write per job and no polling, and the other tenants' jobs start beside it.

The line is the order in which jobs became ready to run: a query job's place is its creation time, a bulk job's
the time it became ``UploadComplete`` (:func:`_in_line_since`). A freed slot is not reserved for the job it wakes: a
newer job that finds it free takes it, which costs less than a turn for every job (measured: bench/README.md),
and the woken job parks again in its place, first in line for the next slot.

Within one batch of the jobs queue (:func:`one_batch`, which the executor opens around each invocation) a tenant
found at its cap, with no stale slot to free, is remembered: its next jobs in the batch go straight to the waiting
list, one write each, instead of a refused claim and then the park. Parking stays conditional on the cap being full
(and on the job holding no slot), so a slot freed meanwhile is still found and taken.

Slots are one item per tenant (:class:`~spectra.slots.RunningSlots`, ``slots#<tenant>`` in the tenants table): a map
of the job ids holding a slot to when each was taken or last verified, and a map of the waiting job ids to their
places in line (the same item keeps the tenant's Data API sessions, :mod:`spectra.sessions`). Taking a slot is one
conditional write (``size(holders) < cap``, or the job already holds one, so a redelivered message takes nothing
twice); joining the waiting list is conditional on the cap still being full, so a slot freed in between is never missed.
Every terminal transition of a query job goes through ``lifecycle.finish_job``, which releases the job's slot. Because a
function can die between a job's end and that release (or between taking a slot and starting the statement), slots are
also *recomputed from the job store*: when a tenant is at its cap, holders not verified for ``SLOT_LEASE_SECONDS`` are
looked up, and those whose job has ended, vanished or is still QUEUED are freed; a running holder is re-stamped, so each
is looked up at most once per lease. What nothing else catches (a wake-up message lost with a dying function, a leaked
slot while no new job arrives) the reconciler does: a QUEUED job quiet for ``REQUEUE_AFTER_SECONDS`` is queued again,
tries for a slot, and frees stale ones. If the waiting list cannot take a job (an item past DynamoDB's 400 KB, about
8,000 waiting jobs), the job's message is sent again after a few minutes instead (:func:`retry_later`).

Bulk jobs share the same cap: a bulk load or export holds a slot while it is ``InProgress`` and waits
``UploadComplete`` on the same waiting list; the message that wakes a waiter is the one its kind of job starts with.

**Request rate and quota** are API Gateway's usage plans, one per tier in template.yaml. Tenant provisioning gives
each tenant an API Gateway API key attached to its tier's plan (:class:`UsagePlans`); the tenant record keeps the tier
and the key's value, which the authorizer returns as ``usageIdentifierKey`` (the API's ``ApiKeySourceType`` is
``AUTHORIZER``, so callers never see or send it). Over the rate or the quota, API Gateway answers 429.

**The statement timeout** is the warehouse's own: ``ALTER USER <tenant user> SET statement_timeout TO <ms>`` when a
tenant is provisioned (``local/demo.py``'s ``add_tenant`` does it; README, "Per-tenant share", for production). The
database cancels a statement that runs longer, and :func:`failure_code` turns its message into the job error code
``statement_timeout``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from events import BulkJobQueuedMessage, JobQueuedMessage, JobStatus
from spectra import sessions
from spectra.bulk.models import BulkState, is_bulk_job_id
from spectra.errors import Throttled
from spectra.jobs import Job, utcnow
from spectra.slots import SLOTS_PREFIX, Claim, PooledSession, RunningSlots
from spectra.tenant_cache import tenant_record

if TYPE_CHECKING:
    from spectra.ports import Ports

__all__ = ["SLOTS_PREFIX", "RunningSlots", "UsagePlans", "one_batch", "release_slot", "running_cap", "take_slot"]

logger = logging.getLogger(__name__)
_DB_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,126}")  # as spectra.tenants.Tenant.db_user

#: What the warehouse says when it cancels a statement for running past ``statement_timeout``: PostgreSQL (and the
#: local emulator) "canceling statement due to statement timeout"; Redshift words it "Query (N) canceled on user's
#: request" (statement_timeout's reference; its CANCEL command's message spells it "cancelled", so both are taken,
#: and an administrator's CANCEL of a tenant's statement reads as a timeout too: the messages are alike). A job
#: cancelled through the API never gets here: the Data API reports those statements ABORTED.
_TIMEOUT_MARKERS = ("statement timeout", "statement_timeout", "on user's request")


# -- the domain ------------------------------------------------------------------------------------------------------


#: SQS's longest message delay.
MAX_QUEUE_DELAY_SECONDS = 900

#: A tenant's own cap is read at most this often per process (per tenants port): a change takes effect within it.
CAP_CACHE_SECONDS = 30.0


def running_cap(ports: Ports, tenant_id: str) -> int:
    """The tenant's cap: its own ``max_running_statements``, else the service default."""
    tenant = tenant_record(ports.tenants, tenant_id, max_age=CAP_CACHE_SECONDS)
    own = tenant.max_running_statements if tenant is not None else None
    return own if own is not None else ports.settings.tenant_max_running_statements


def _message_for(tenant_id: str, job_id: str) -> JobQueuedMessage | BulkJobQueuedMessage:
    """The jobs-queue message that starts this job: bulk jobs (``b_`` ids) share the cap with query jobs."""
    if is_bulk_job_id(job_id):
        return BulkJobQueuedMessage(job_id=job_id, tenant_id=tenant_id)
    return JobQueuedMessage(job_id=job_id, tenant_id=tenant_id)


def _is_running(ports: Ports, job_id: str) -> tuple[bool, str]:
    """Whether the job holding a slot is still running, and its state (for the log)."""
    if is_bulk_job_id(job_id):
        bulk_job = ports.bulk.jobs.get(job_id) if ports.bulk is not None else None
        if bulk_job is None:
            return False, "no such job"
        return bulk_job.state is BulkState.IN_PROGRESS, bulk_job.state.value
    job = ports.jobs.get(job_id)
    return (job is not None and job.status is JobStatus.SUBMITTED), _state(job)


#: The tenants found at their cap in the batch being processed (:func:`one_batch`); None outside a batch.
_AT_CAP: ContextVar[set[str] | None] = ContextVar("tenants_at_cap", default=None)


@contextmanager
def one_batch() -> Iterator[None]:
    """The scope of one batch of job messages: within it, :func:`take_slot` remembers the tenants it found at their
    cap and parks their next jobs without asking for a slot first (see the module's docstring)."""
    token = _AT_CAP.set(set())
    try:
        yield
    finally:
        _AT_CAP.reset(token)


def take_slot(ports: Ports, message: JobQueuedMessage | BulkJobQueuedMessage) -> Claim | None:
    """The claim (truthy): the job holds one of its tenant's running slots, and a query job maybe a session leased
    with it (:func:`spectra.sessions.claim`; bulk jobs run without), and may start. None: the tenant is at its cap;
    the job stays queued on the tenant's waiting list, and the release of a slot sends its message again."""
    tenant_id, job_id = message.tenant_id, message.job_id
    cap = running_cap(ports, tenant_id)
    at_cap = _AT_CAP.get()
    if at_cap is not None and tenant_id in at_cap:
        waiting = _wait_for_slot(ports, message, cap)
        if waiting is _ENDED:
            # Cancelled while it waited, and maybe woken for a freed slot: it asks for the slot all the same, so the
            # executor, finding the job ended, gives it back and that release wakes the next in line. Parked here,
            # the wake-up would die with it, and the next job would wait for the reconciler.
            pass
        elif waiting is not False:
            return None
        else:
            at_cap.discard(tenant_id)  # a slot was freed (or the job holds one already): ask for it
    for _ in range(3):
        if isinstance(message, BulkJobQueuedMessage):
            claim = ports.slots.claim(tenant_id, job_id, limit=cap)
        else:
            claim = sessions.claim(ports, tenant_id, job_id, limit=cap)
        if claim.taken:
            if claim.waiting and len(claim.holders) < cap:
                # room left beside this job while others wait (the cap was raised, or a tenant paused at 0 resumed):
                # wake the next in line too, each woken job waking the next until the cap is full, rather than one
                # per freed slot until the reconciler re-queues the rest
                _wake_next(ports, tenant_id, claim.waiting)
            return claim
        if reclaim_slots(ports, tenant_id, holders=claim.holders, pool=claim.sessions):
            continue
        waiting = _wait_for_slot(ports, message, cap)
        if waiting is not False:
            if waiting and at_cap is not None:
                at_cap.add(tenant_id)
            return None
        # a slot was freed between the refusal and the park: try to take it
    retry_later(ports, message)
    return None


#: :func:`_wait_for_slot`'s answer for a job that ended while it waited (truthy: it does not wait either).
_ENDED = "ended"


def _wait_for_slot(ports: Ports, message: JobQueuedMessage | BulkJobQueuedMessage, cap: int) -> bool | str | None:
    """Put the job on its tenant's waiting list. True: it waits there. False: the tenant is under its cap (or the
    job holds a slot): go and claim it. None: the list could not take the job, whose message is sent again later.
    :data:`_ENDED`: the job ended while it waited, and leaves the line."""
    tenant_id, job_id = message.tenant_id, message.job_id
    # a paused tenant (cap 0) frees no slot to wake and clear a job cancelled before its message came: read it first
    place = _in_line_since(ports, message, read=cap == 0)
    if place is None:  # cancelled or given up while it waited: it leaves the line instead of soaking up wake-ups
        logger.info("job %s of tenant %s has ended; it leaves the waiting list", job_id, tenant_id)
        return _ENDED
    try:
        if not ports.slots.park(tenant_id, job_id, limit=cap, now=place):
            return False
    except ClientError as exc:
        logger.warning("could not put job %s on the waiting list of %s", job_id, tenant_id, exc_info=True)
        # A list past DynamoDB's item size has thousands of jobs ahead: asking again in seconds would only have the
        # excess of a flooding tenant circle through the jobs queue (and the executor every tenant shares)
        full = exc.response.get("Error", {}).get("Code") == "ValidationException"
        retry_later(ports, message, full=full)
        return None
    logger.info("tenant %s is at its running cap (%d); job %s waits for a slot", tenant_id, cap, job_id)
    return True


def _in_line_since(
    ports: Ports, message: JobQueuedMessage | BulkJobQueuedMessage, *, read: bool = False
) -> float | None:
    """A job's place on the waiting list, so that the line is the order in which jobs became ready to run and a woken
    job that loses the freed slot to a newer one parks again in its place, not at the end: a query job's creation
    time (it comes in the job's first message; a woken job's is read, one read, only when it has to wait again), a
    bulk job's ``UploadComplete`` time (read when it has to wait). None for a job read and found ended or gone: a job
    cancelled while it waited, woken and beaten to the slot, does not park again first in line. ``read``: the job
    store's, not the message's (a job cancelled before its first message came parks otherwise)."""
    if isinstance(message, BulkJobQueuedMessage):
        bulk_job = ports.bulk.jobs.get(message.job_id) if ports.bulk is not None else None
        if bulk_job is None or bulk_job.state.is_terminal:
            return None
        return (bulk_job.queued_at or bulk_job.created_at).timestamp()
    created = None if read else (message.job or {}).get("created_at")
    if isinstance(created, str):
        try:
            return datetime.fromisoformat(created).timestamp()
        except ValueError:
            pass  # not the API's job: read it
    job = ports.jobs.get(message.job_id)
    return job.created_at.timestamp() if job is not None and not job.status.is_terminal else None


def release_slot(ports: Ports, tenant_id: str, job_id: str, *, session: PooledSession | None = None) -> None:
    """Give the job's slot back (with ``session``, back to the pool, in the same write) and send the longest-waiting
    job of the tenant (if any) on its way to take it."""
    _wake_next(ports, tenant_id, ports.slots.release(tenant_id, job_id, session=session))


def _wake_next(ports: Ports, tenant_id: str, waiting: Mapping[str, float]) -> None:
    """Take the longest-waiting of ``waiting`` off the list and send its message (the first taken off by us)."""
    for waiter, _since in sorted(waiting.items(), key=lambda entry: entry[1]):
        if ports.slots.unpark(tenant_id, waiter):
            ports.queue.send(_message_for(tenant_id, waiter))
            return


def slot_taken_at(ports: Ports, job: Job) -> float | None:
    """When the job's running slot was taken (or re-stamped), None when it holds none: an executor claims the slot
    before it reads or starts a job, so a queued job holding one is being started (or waits on a throttled start).
    One read of the tenant's slots item."""
    return ports.slots.holders(job.tenant_id).get(job.job_id)


def finish_releasing(
    ports: Ports,
    job: Job,
    status: JobStatus,
    *,
    session: PooledSession | None,
    unstarted: bool = False,
    announced: bool = False,
    **changes: Any,
) -> Job | None:
    """Move the job from the state it was seen in to ``status`` and give its slot back (``session`` to the pool),
    in one write (a transaction over the job and its tenant's slots item) when nobody waits for the slot.

    When a job waits, the write that frees the slot also takes the longest-waiting job off the list (a second try,
    with the waiting list the refused one saw), and that job's message is sent. When the job's slot was reclaimed
    meanwhile (and its lease with it), only the job is written. Anything else (a conflicting transaction, an item
    made before sessions were pooled) writes the two apart, as :func:`release_slot` does. None: the job had moved,
    nothing was written."""
    waiter: str | None = None
    for _ in range(3):
        release = ports.slots.releasing(job.tenant_id, job.job_id, session=session, waiter=waiter)
        done = ports.jobs.finish(job, status, release=release, unstarted=unstarted, announced=announced, **changes)
        if done.job is not None:
            if waiter is not None:
                ports.queue.send(_message_for(job.tenant_id, waiter))
            return done.job
        seen = done.slots
        if seen is None:
            return None  # the job moved: whoever moved it owns its slot
        if not seen.known:
            break
        if not seen.holding:  # reclaimed from us (with its lease), or never taken: nothing to give back
            finished = ports.jobs.transition(
                job.job_id, status, expected={job.status}, unstarted=unstarted, announced=announced, **changes
            )
            if finished is not None and job.job_id in seen.waiting:
                # ended while it waited (cancelled, given up): its place would stay for good on a tenant that frees
                # no slot (paused at cap 0), filling the list until no job could park or claim
                ports.slots.unpark(job.tenant_id, job.job_id)
            return finished
        waiter = min(seen.waiting, key=seen.waiting.__getitem__) if seen.waiting else None
    finished = ports.jobs.transition(
        job.job_id, status, expected={job.status}, unstarted=unstarted, announced=announced, **changes
    )
    if finished is not None:
        release_slot(ports, finished.tenant_id, finished.job_id, session=session)
    return finished


def reclaim_slots(
    ports: Ports,
    tenant_id: str,
    *,
    now: float | None = None,
    holders: dict[str, float] | None = None,
    pool: Mapping[str, PooledSession] | None = None,
) -> int:
    """Free the slots of holders that cannot be running any more, judged by the job store; how many were freed.

    Only holders not verified for ``slot_lease_seconds`` are looked up, and a running one is re-stamped, so a tenant
    at its cap costs one job read per running statement per lease, not per waiting message.
    """
    now = now if now is not None else time.time()
    lease = ports.settings.slot_lease_seconds
    freed = 0
    holders = holders if holders is not None else ports.slots.holders(tenant_id)
    for job_id, stamp in holders.items():
        if now - stamp < lease:
            continue
        running, state = _is_running(ports, job_id)
        if running:
            ports.slots.restamp(tenant_id, job_id, stamp=stamp, now=now)
            continue
        # Ended (its release was lost), gone, or QUEUED a lease after taking the slot (the executor died before
        # starting it: its message returns and takes a slot again).
        leased = next((s.session_id for s in (pool or {}).values() if s.job_id == job_id), None)
        if ports.slots.evict(tenant_id, job_id, stamp=stamp, session_id=leased):
            logger.warning("freed the running slot of job %s of tenant %s (%s)", job_id, tenant_id, state)
            freed += 1
    return freed


class WaitingLines:
    """The reconciler's look at each tenant's line, read once per run (one slots item read per tenant).

    A job on its tenant's waiting list while the tenant is at its cap has lost no message: the release of a slot sends
    it. Re-queued every ``requeue_after_seconds`` anyway, each waiting job would cost a refused claim, a read and a park
    on an item that grows with the list, and a list of thousands would spend every run's budget on them, ahead of other
    tenants' lost events. Slots whose releases were lost are reclaimed first (as the executor does when it finds a
    tenant at its cap), so that a line behind them is sent on rather than left to wait for good."""

    def __init__(self, ports: Ports) -> None:
        self._ports = ports
        self._seen: dict[str, frozenset[str]] = {}  # tenant → the jobs waiting their turn (empty: room, or no line)

    def waits_its_turn(self, tenant_id: str, job_id: str) -> bool:
        if tenant_id not in self._seen:
            self._seen[tenant_id] = self._look(tenant_id)
        return job_id in self._seen[tenant_id]

    def _look(self, tenant_id: str) -> frozenset[str]:
        holders, waiting = self._ports.slots.line(tenant_id)
        if not waiting or len(holders) < running_cap(self._ports, tenant_id):
            return frozenset()
        if reclaim_slots(self._ports, tenant_id, holders=holders):
            return frozenset()  # room now: the waiting jobs' messages are sent, to take it
        return frozenset(waiting)


def _state(job) -> str:
    return job.status.value if job is not None else "no such job"


def retry_later(ports: Ports, message: JobQueuedMessage | BulkJobQueuedMessage, *, full: bool = False) -> None:
    """The fallback when the job cannot be put on the waiting list, or its start met a full warehouse on its message's
    last delivery (:func:`waits_for_capacity`): send its message again after a jittered delay, and move the job to the
    back of the pending index so the reconciler does not queue a second one meanwhile. ``full``: the list is at its size
    limit; the delay is then the longest the reconciler leaves (under ``requeue_after_seconds``, at most SQS's 900 s)
    rather than ``tenant_wait_seconds``. No delay reaches ``requeue_after_seconds``: the reconciler would queue a second
    message while this one is still delayed (``TenantWaitSeconds`` over 199, spread by half again, would pass the
    reconciler's 300 s; the template takes up to 900, and this bound keeps every value under the reconciler's)."""
    if isinstance(message, BulkJobQueuedMessage):
        bulk = ports.bulk
        waiting = bulk.jobs.mark_checked(message.job_id, BulkState.UPLOAD_COMPLETE, utcnow()) if bulk else None
        if waiting is None:
            bulk_job = bulk.jobs.get(message.job_id) if bulk else None
            if bulk_job is None or bulk_job.state.is_terminal or bulk_job.statement_id:
                return  # started, aborted or gone meanwhile: nothing left to start
            # InProgress without its statement: an earlier attempt moved it and stopped before the statement, and
            # this message (its redelivery, refused a place in line) is what starts it
    else:
        waiting = ports.jobs.mark_checked(message.job_id, JobStatus.QUEUED, utcnow())
        if waiting is None:
            job = ports.jobs.get(message.job_id)
            if job is None or job.status.is_terminal:
                return  # cancelled (or gone) while it waited: nothing left to start
    _send_by_ids(ports, message, retry_delay(ports, full=full))


def send_again(ports: Ports, message: JobQueuedMessage | BulkJobQueuedMessage) -> None:
    """Send a job's message again after :func:`retry_delay` (about ``tenant_wait_seconds``), whatever its job's state:
    a message its executor did not get to (too little of the invocation left: ``consumers/executor``). The copy
    decides as any redelivery does, so nothing is read or written here, with the invocation's time running out: a job
    that ended meanwhile gets its copy, which starts nothing, and the job stays where it was in the pending index (a
    job last looked at over ``requeue_after_seconds`` ago may get the reconciler's copy too, as harmless as any)."""
    _send_by_ids(ports, message, retry_delay(ports))


def _send_by_ids(ports: Ports, message: JobQueuedMessage | BulkJobQueuedMessage, delay: int) -> None:
    if isinstance(message, JobQueuedMessage) and message.job is not None:
        # by ids only, as every message but the API's own first one (events.JobQueuedMessage): the job is read when
        # it comes back, so one cancelled while it waited starts nothing
        message = message.model_copy(update={"job": None})
    ports.queue.send(message, delay_seconds=delay)
    logger.info("job %s of tenant %s tries again in %d s", message.job_id, message.tenant_id, delay)


def retry_delay(ports: Ports, *, full: bool = False) -> int:
    """A jittered delay for a message sent again to wait for capacity (:func:`retry_later`): about
    ``tenant_wait_seconds`` (``full``: the longest the reconciler leaves), always under ``requeue_after_seconds``."""
    base = ports.settings.tenant_wait_seconds
    low, high = max(1, base // 2), base + base // 2
    if full:
        high = max(high, min(MAX_QUEUE_DELAY_SECONDS, ports.settings.requeue_after_seconds - 1))
        low = max(low, high // 2)
    high = min(high, MAX_QUEUE_DELAY_SECONDS)  # what SQS takes: tenant_wait_seconds goes up to it, and is spread
    high = min(high, ports.settings.requeue_after_seconds - 1)  # before the reconciler would send a second one
    low = min(low, high)
    return random.randint(low, high)  # spread the retries, or they come back in a herd


#: The Data API's refusals that mean the warehouse is full, not failing: the account's active statements (500 by
#: default, queued ones counted) or sessions are all taken. A job meeting one waits, as it waits at its tenant's cap.
AT_CAPACITY = frozenset({"ActiveStatementsExceededException", "ActiveSessionsExceededException"})


def waits_for_capacity(ports: Ports, throttled: Throttled, waiting_since: datetime) -> bool:
    """Whether a job whose start was ``throttled`` on its message's last delivery should wait on rather than fail:
    the warehouse is full (:data:`AT_CAPACITY`), and the job has waited less than ``pending_max_age_seconds`` since
    ``waiting_since`` (the reconciler's give-up, which bounds the wait). Otherwise a full account would fail the jobs
    that meet it five deliveries running (15 minutes on AWS) as 'warehouse_unavailable'."""
    code = (throttled.details or {}).get("aws_error") if isinstance(throttled.details, dict) else None
    max_age = timedelta(seconds=ports.settings.pending_max_age_seconds)
    return code in AT_CAPACITY and utcnow() - waiting_since < max_age


def statement_timeout_sql(db_user: str, milliseconds: int) -> str:
    """The warehouse statement that gives a tenant's database user its statement timeout (Redshift and PostgreSQL
    alike); run it as an administrator when the tenant is provisioned. 0 means no timeout."""
    if not _DB_USER.fullmatch(db_user) or milliseconds < 0:
        raise ValueError(f"not a database user and timeout: {db_user!r}, {milliseconds!r}")
    return f'ALTER USER "{db_user}" SET statement_timeout TO {int(milliseconds)}'


def failure_code(error: str | None) -> str:
    """The job error code for a statement the warehouse failed: ``statement_timeout`` when the tenant's statement
    timeout cancelled it, ``statement_failed`` otherwise."""
    text = (error or "").lower()
    return "statement_timeout" if any(marker in text for marker in _TIMEOUT_MARKERS) else "statement_failed"


# -- usage plans (tenant provisioning) -------------------------------------------------------------------------------


class UsagePlans:
    """Attaches tenants to their tier's API Gateway usage plan. Provisioning tooling, never called by a function.

    ``plan_ids`` maps each tier to its usage plan id, or to several (a plan per stage): the stack output
    ``UsagePlanIds`` maps each to one id, and is taken as CloudFormation gives it (JSON text) or parsed. ``client`` is
    a boto3 ``apigateway`` client with permission to create API keys and usage plan keys.
    """

    def __init__(self, client, plan_ids: Mapping[str, str | Iterable[str]] | str) -> None:
        self._client = client
        if isinstance(plan_ids, str):  # the output's value as DescribeStacks answers it (README: "the stack output")
            plan_ids = json.loads(plan_ids)
        # one id as the stack output gives it: taken whole (listed, a string is its characters: plans 's', '7', ...)
        self._plans = {tier: [ids] if isinstance(ids, str) else list(ids) for tier, ids in plan_ids.items()}

    @classmethod
    def by_name(cls, client, stack_names: Iterable[str] | None = None) -> UsagePlans:
        """The plans named ``<stack>-<tier>`` (as template.yaml names them) of the given stacks, or of every stack."""
        stacks = set(stack_names) if stack_names is not None else None
        plan_ids: dict[str, list[str]] = {}
        for page in client.get_paginator("get_usage_plans").paginate():
            for plan in page.get("items", []):
                stack, _, tier = plan.get("name", "").rpartition("-")
                if stack and (stacks is None or stack in stacks):
                    plan_ids.setdefault(tier, []).append(plan["id"])
        return cls(client, plan_ids)

    @property
    def tiers(self) -> set[str]:
        return set(self._plans)

    def attach(self, tenant_id: str, tier: str) -> str:
        """Create the tenant's API key in ``tier``'s plans; returns the key's value (the tenant's ``usage_key``). A plan
        that refuses the key (deleted by hand, or the caller may not add keys to it) has the key deleted again: no
        record names it, and nothing would ever find it to delete it."""
        plan_ids = self._plans.get(tier)
        if not plan_ids:
            raise ValueError(f"no usage plan for tier {tier!r}; known tiers: {sorted(self._plans)}")
        value = "spu_" + secrets.token_urlsafe(32)  # an identifier, never shown to the tenant; unique per key
        key = self._client.create_api_key(
            name=_key_name(tenant_id), value=value, enabled=True, tags={"spectra:tenant": tenant_id}
        )
        try:
            for plan_id in plan_ids:
                self._client.create_usage_plan_key(usagePlanId=plan_id, keyId=key["id"], keyType="API_KEY")
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):  # the refusal is what the caller needs to hear
                self._client.delete_api_key(apiKey=key["id"])
            raise
        return value

    def key_id(self, tenant_id: str, usage_key: str) -> str | None:
        """The id of the tenant's API Gateway key whose value is ``usage_key`` (its record's), if it exists: keys are
        found by their name, ``spectra-tenant-<id>``, which a tenant created again under the id shares, so the value
        tells them apart."""
        pages = self._client.get_paginator("get_api_keys").paginate(nameQuery=_key_name(tenant_id), includeValues=True)
        for page in pages:
            for key in page.get("items", []):
                if key.get("name") == _key_name(tenant_id) and key.get("value") == usage_key:
                    return key["id"]
        return None

    def delete_key(self, tenant_id: str, usage_key: str) -> bool:
        """Delete the tenant's API Gateway key (which takes it out of every plan): offboarding, so that the keys of
        deleted tenants do not pile up toward API Gateway's quota of keys per Region. False when there was none."""
        key_id = self.key_id(tenant_id, usage_key)
        if key_id is None:
            return False
        try:
            self._client.delete_api_key(apiKey=key_id)
        except self._client.exceptions.NotFoundException:
            return False
        return True

    def move(self, tenant_id: str, usage_key: str, tier: str) -> bool:
        """Move the tenant's API Gateway key into ``tier``'s plans, out of every other plan of this stack: API Gateway
        takes a key in one plan per API stage, so it leaves the old plans first (its requests are answered 403 until
        it is in the new ones: a moment) and goes back to them if the new tier's refuse it. False when the key does
        not exist (then :meth:`attach` makes the tenant a new one, whose value its record needs)."""
        wanted = self._plans.get(tier)
        if not wanted:
            raise ValueError(f"no usage plan for tier {tier!r}; known tiers: {sorted(self._plans)}")
        key_id = self.key_id(tenant_id, usage_key)
        if key_id is None:
            return False
        ours = {plan_id for ids in self._plans.values() for plan_id in ids}
        current = [
            plan["id"]
            for page in self._client.get_paginator("get_usage_plans").paginate(keyId=key_id)
            for plan in page.get("items", [])
            if plan["id"] in ours
        ]
        leaving = [plan_id for plan_id in current if plan_id not in wanted]
        for plan_id in leaving:
            self._client.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
        added: list[str] = []
        try:
            for plan_id in wanted:
                if plan_id not in current:
                    self._client.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
                    added.append(plan_id)
        except Exception:
            for plan_id in added:  # back where it was, so a refused move leaves the tenant served by its old tier
                with contextlib.suppress(ClientError):
                    self._client.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
            for plan_id in leaving:
                self._client.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")
            raise
        return True


def _key_name(tenant_id: str) -> str:
    return f"spectra-tenant-{tenant_id}"
