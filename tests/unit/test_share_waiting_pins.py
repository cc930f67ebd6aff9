"""Tenant share behaviour no test held before (found by mutation testing spectra/share.py, a second sample): a bulk
load still running keeps its slot when a job at the tenant's cap looks for stale ones (its lease is renewed instead),
and a tenant whose waiting list could not take a job is not remembered as at its cap for the rest of the batch: a
slot freed meanwhile is taken by the batch's next job."""

from __future__ import annotations

import time

import pytest

from events import JobQueuedMessage, JobStatus
from spectra import share
from spectra.bulk.models import BulkState
from spectra.jobs import Job, new_job_id, utcnow
from spectra.lifecycle import execute_job
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import make_ports, make_settings

pytestmark = pytest.mark.unit


def _queued(ports) -> JobQueuedMessage:
    """The message of a new query job of tenant acme, QUEUED in the job store."""
    if ports.tenants.get("acme") is None:
        ports.tenants.create_tenant("acme", db_user="tenant_acme")
    now = utcnow()
    job = Job(
        job_id=new_job_id(), tenant_id="acme", db_user="tenant_acme", sql="select 1", created_at=now, updated_at=now
    )
    ports.jobs.create(job)
    return JobQueuedMessage(job_id=job.job_id, tenant_id="acme")


def test_a_bulk_job_still_running_keeps_its_slot_past_its_lease_and_the_next_job_waits():
    """A bulk load InProgress holds one of the tenant's slots: a query job finding the cap full a lease later looks
    the holder up in the bulk job store, finds it running and re-stamps it; the query job waits on the list. (Looked
    up among query jobs instead, the bulk job is "no such job" and its slot is taken from under it.)"""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=1, slot_lease_seconds=60))
    load = bulk_job(state=BulkState.IN_PROGRESS)
    ports.bulk.jobs.create(load)
    taken = time.time() - 61
    ports.slots.acquire("acme", load.job_id, limit=1, now=taken)
    message = _queued(ports)
    assert execute_job(ports, message) is None
    assert ports.jobs.get(message.job_id).status is JobStatus.QUEUED
    assert list(ports.slots.holders("acme")) == [load.job_id]
    assert ports.slots.holders("acme")[load.job_id] > taken  # verified now: not looked up again for a lease
    assert list(ports.slots.waiting("acme")) == [message.job_id]


def test_reclaiming_frees_nothing_while_the_bulk_job_holding_the_slot_runs():
    """reclaim_slots itself: 0 freed for a running bulk load a lease old, 1 once it has ended."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=1, slot_lease_seconds=60))
    load = bulk_job(state=BulkState.IN_PROGRESS)
    ports.bulk.jobs.create(load)
    ports.slots.acquire("acme", load.job_id, limit=1, now=1000.0)
    assert share.reclaim_slots(ports, "acme", now=1061.0) == 0
    assert ports.slots.holders("acme") == {load.job_id: 1061.0}
    assert ports.bulk.jobs.transition(load.job_id, BulkState.FAILED) is not None
    assert share.reclaim_slots(ports, "acme", now=1122.0) == 1
    assert ports.slots.holders("acme") == {}


def test_in_a_batch_a_job_the_full_waiting_list_sent_back_leaves_the_next_job_free_to_take_a_freed_slot():
    """A tenant's waiting list at its size limit sends a job back to the queue for minutes; that says nothing of the
    cap, so the batch's next job of the tenant still asks for a slot and starts in one freed meanwhile, rather than
    being sent back for minutes too."""
    ports = make_ports(settings=make_settings(tenant_max_running_statements=1, tenant_wait_seconds=4))
    running = _queued(ports)
    assert execute_job(ports, running) is not None
    ports.slots.fail_park = True  # the list is past DynamoDB's item size
    with share.one_batch():
        sent_back = _queued(ports)
        assert execute_job(ports, sent_back) is None
        assert len(ports.queue.messages) == 1
        ports.slots.release("acme", running.job_id)  # the running job's slot is given back meanwhile
        following = _queued(ports)
        started = execute_job(ports, following)
    assert started is not None and started.status is JobStatus.SUBMITTED
    assert list(ports.slots.holders("acme")) == [following.job_id]
    assert [m.job_id for m in ports.queue.messages] == [sent_back.job_id]
