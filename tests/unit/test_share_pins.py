"""Tenant share behaviour no test held before (found by mutation testing spectra/share.py): the exact range a job's
message sent again to wait is delayed over (SQS's 900 s, the reconciler's re-queue, a full waiting list's minutes), a
job (query or bulk) ended while it waited sends no message again, a bulk job still waiting is sent its own, a
statement timeout of 0 and a 127-character database user are taken, and a slot held by a bulk job that is gone is
freed for the next job."""

from __future__ import annotations

import random
import time

import pytest

from events import BulkJobQueuedMessage, JobQueuedMessage, JobStatus
from spectra import share
from spectra.bulk.models import BulkState, new_bulk_job_id
from spectra.jobs import new_job_id
from spectra.lifecycle import execute_job
from tests.unit.bulk_helpers import T0, bulk_job
from tests.unit.fakes import make_ports, make_settings, queued_job

pytestmark = pytest.mark.unit


def _delay_range(monkeypatch, *, full: bool = False, **settings) -> tuple[int, int]:
    """The shortest and the longest delay :func:`share.retry_delay` can draw under ``settings``: the draw is taken at
    each end of the range it is drawn from."""
    ports = make_ports(settings=make_settings(**settings))
    drawn = []
    for end in (0, 1):
        monkeypatch.setattr(random, "randint", lambda low, high, end=end: (low, high)[end])
        drawn.append(share.retry_delay(ports, full=full))
    return drawn[0], drawn[1]


@pytest.mark.parametrize(
    ("settings", "full", "expected"),
    [
        ({"tenant_wait_seconds": 4}, False, (2, 6)),  # README: TenantWaitSeconds spread by half either way
        ({"tenant_wait_seconds": 2}, False, (1, 3)),  # never 0 s: the message would come straight back
        ({"tenant_wait_seconds": 900, "requeue_after_seconds": 3000}, False, (450, 900)),  # SQS takes 900 s at most
        ({"tenant_wait_seconds": 900}, False, (299, 299)),  # under the reconciler's 300 s re-queue, whatever the spread
        ({"tenant_wait_seconds": 4}, True, (149, 299)),  # a full list: minutes, up to the reconciler's re-queue
        ({"tenant_wait_seconds": 4, "requeue_after_seconds": 3000}, True, (450, 900)),  # and SQS's 900 s
    ],
)
def test_a_message_sent_again_to_wait_is_delayed_over_its_whole_range_and_no_further(
    monkeypatch, settings, full, expected
):
    """A delay past 900 s is refused by SQS (the send fails, and on the last delivery the job with it), one reaching
    ``requeue_after_seconds`` meets the second message the reconciler sends meanwhile, and one of 0 s is no wait."""
    assert _delay_range(monkeypatch, full=full, **settings) == expected


def _first_message_of_a_cancelled_job(ports) -> JobQueuedMessage:
    """The API's first message of a job (carrying the job as it was made) whose job was cancelled before it came."""
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    job = queued_job(ports)
    message = JobQueuedMessage(job_id=job.job_id, tenant_id="acme", job=job.model_dump(mode="json"))
    assert ports.jobs.transition(job.job_id, JobStatus.CANCELLED, expected={JobStatus.QUEUED}) is not None
    return message


@pytest.mark.parametrize("gone", [False, True])
def test_a_job_ended_or_gone_before_its_retry_sends_no_message_again(gone):
    """A job cancelled (or deleted) while it waited has nothing left to start: its retry puts no message on the jobs
    queue, where it would cost a delivery, a read and a claim for nothing."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=1, tenant_wait_seconds=4))
    message = _first_message_of_a_cancelled_job(ports)
    if gone:
        message = JobQueuedMessage(job_id=new_job_id(), tenant_id="acme")
    share.retry_later(ports, message)
    assert ports.queue.messages == []


def test_a_slot_held_by_a_bulk_job_that_is_gone_is_freed_for_the_next_job():
    """A bulk load whose record vanished while it held the tenant's only slot (its release lost with it) is freed a
    lease later by the next job to ask, which starts, rather than every job of the tenant failing on the look-up."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=1))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    gone = new_bulk_job_id()
    ports.slots.acquire("acme", gone, limit=1, now=time.time() - ports.settings.slot_lease_seconds - 1)
    job = queued_job(ports)
    started = execute_job(ports, JobQueuedMessage(job_id=job.job_id, tenant_id="acme"))
    assert started is not None and started.status is JobStatus.SUBMITTED
    assert set(ports.slots.holders("acme")) == {job.job_id}


def test_a_statement_timeout_of_zero_is_no_timeout():
    """The statement's docstring and PostgreSQL alike: 0 turns the timeout off, a value an operator may give a tenant;
    only a negative one is refused."""
    assert share.statement_timeout_sql("tenant_acme", 0) == 'ALTER USER "tenant_acme" SET statement_timeout TO 0'
    with pytest.raises(ValueError):
        share.statement_timeout_sql("tenant_acme", -1)


def test_a_database_user_is_named_up_to_redshifts_127_characters():
    """A user name the warehouse takes (127 characters at most, a letter or underscore first, then $ too) gets its
    statement; one longer, or starting with a digit, is refused before it reaches the warehouse."""
    longest = "t" + "_$9" * 42
    assert len(longest) == 127
    assert share.statement_timeout_sql(longest, 1000) == f'ALTER USER "{longest}" SET statement_timeout TO 1000'
    for refused in (longest + "x", "9tenant", ""):
        with pytest.raises(ValueError):
            share.statement_timeout_sql(refused, 1000)


def test_a_job_sent_again_for_a_full_warehouse_comes_back_in_about_the_tenants_wait(monkeypatch):
    """A start refused by a full warehouse (or a park refused in passing) is tried again in ``tenant_wait_seconds``
    spread by half, seconds away; only a waiting list at its size limit waits minutes."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=1, tenant_wait_seconds=4))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    for end in (0, 1):
        monkeypatch.setattr(random, "randint", lambda low, high, end=end: (low, high)[end])
        share.retry_later(ports, JobQueuedMessage(job_id=queued_job(ports).job_id, tenant_id="acme"))
    assert ports.queue.delays == [2, 6]


@pytest.mark.parametrize(
    ("state", "statement_id", "sent"),
    [
        (BulkState.UPLOAD_COMPLETE, None, True),
        (BulkState.IN_PROGRESS, None, True),
        (BulkState.IN_PROGRESS, "s-1", False),
        (BulkState.ABORTED, None, False),
        (None, None, False),
    ],
)
def test_a_bulk_job_sent_again_to_wait_comes_back_while_it_waits_and_not_once_it_ended(state, statement_id, sent):
    """Bulk jobs share the cap and its retry: one still waiting (UploadComplete) gets its own message again, delayed,
    and so does one an earlier attempt moved InProgress and left without its statement (the redelivery refused a place
    in line is what starts it: let go, the job waited for the reconciler); one started, aborted meanwhile, or gone,
    gets none."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=1, tenant_wait_seconds=4))
    job = bulk_job(state=state or BulkState.UPLOAD_COMPLETE, queued_at=T0, statement_id=statement_id)
    if state is not None:
        ports.bulk.jobs.create(job)
    share.retry_later(ports, BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme"))
    assert ports.queue.messages == ([BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme")] if sent else [])
    assert all(2 <= delay <= 6 for delay in ports.queue.delays)
