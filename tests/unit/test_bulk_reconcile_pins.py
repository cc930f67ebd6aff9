"""Bulk reconciler behaviour no test held before (found by mutation testing spectra/bulk/reconcile.py): the moments,
to the microsecond, at which a lost queue message is sent again, a job in its tenant's line keeps its place, a job
started without its statement is queued again, and result files still owed are given up; that a message sent
again keeps its correlation id; and that giving up a job never ends one whose plan an executor wrote after the
reconciler read it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events import BulkJobQueuedMessage
from spectra.bulk.lifecycle import complete_bulk_statement, start_bulk_job
from spectra.bulk.models import BulkState, LoadPlan
from spectra.bulk.reconcile import reconcile_bulk
from spectra.jobs import utcnow
from spectra.reconciliation import ReconcileSummary, Thresholds
from tests.unit.test_bulk_reconcile import bulk_ports, job_of, queued, started

pytestmark = pytest.mark.unit

US = timedelta(microseconds=1)


@pytest.fixture
def ports():
    return bulk_ports()


def sweep_at(ports, now) -> ReconcileSummary:
    summary = ReconcileSummary()
    reconcile_bulk(ports, now, Thresholds.from_settings(ports.settings), summary)
    return summary


def test_a_lost_queue_message_is_sent_again_once_the_job_was_quiet_exactly_300_seconds(ports):
    """requeue_after_seconds (300) quiet is enough: 1 us short the job waits, at 300 s its message goes again."""
    message = queued(ports)
    quiet = utcnow()
    ports.bulk.jobs.mark_checked(message.job_id, BulkState.UPLOAD_COMPLETE, quiet)
    assert sweep_at(ports, quiet + timedelta(seconds=300) - US).waiting == 1
    assert ports.queue.messages == []
    summary = sweep_at(ports, quiet + timedelta(seconds=300))
    assert summary.requeued == 1
    assert ports.queue.messages == [message]
    assert ports.bulk.jobs.pending_since(message.job_id) == quiet + timedelta(seconds=300)


def test_a_message_sent_again_carries_the_jobs_correlation_id(ports):
    """The copy queued again is the message UploadComplete queued, the request's correlation id included (as the
    jobs queue's contract, events.BulkJobQueuedMessage, carries it), not one that lost it."""
    message = queued(ports)
    ports.bulk.jobs.update(message.job_id, [BulkState.UPLOAD_COMPLETE], correlation_id="req-7f3a")
    assert sweep_at(ports, utcnow() + timedelta(seconds=301)).requeued == 1
    assert ports.queue.messages == [
        BulkJobQueuedMessage(job_id=message.job_id, tenant_id="acme", correlation_id="req-7f3a")
    ]


def test_a_job_in_its_tenants_line_quiet_exactly_300_seconds_keeps_its_place_and_is_not_sent_again():
    """At its tenant's cap a job has lost no message: at 300 s quiet it is moved to the back of the index and left in
    line, not queued again (a second copy would only be parked again)."""
    ports = bulk_ports(tenant_max_running_statements=1)
    started(ports)
    message = queued(ports)
    assert start_bulk_job(ports, message) is None
    ports.queue.messages.clear()
    quiet = utcnow()
    ports.bulk.jobs.mark_checked(message.job_id, job_of(ports, message).state, quiet)
    at = quiet + timedelta(seconds=300)
    summary = sweep_at(ports, at)
    assert summary.requeued == 0
    assert ports.queue.messages == []
    assert ports.bulk.jobs.pending_since(message.job_id) == at
    assert message.job_id in ports.slots.waiting("acme")


def test_a_job_started_exactly_300_seconds_ago_without_its_statement_is_queued_again(ports):
    """An executor is taken to be starting the load for less than 300 s after started_at: at 300 s, its statement
    still unrecorded and no plan written, it died, and the job's message is sent again."""
    message = queued(ports)
    start = utcnow()
    ports.bulk.jobs.transition(
        message.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE}, started_at=start
    )
    ports.bulk.jobs.mark_checked(message.job_id, BulkState.IN_PROGRESS, start)
    assert sweep_at(ports, start + timedelta(seconds=300) - US).waiting == 1
    summary = sweep_at(ports, start + timedelta(seconds=300))
    assert summary.requeued == 1
    assert ports.queue.messages == [message]
    assert job_of(ports, message).state is BulkState.IN_PROGRESS


def test_result_files_owed_exactly_20_hours_after_the_job_ended_are_given_up():
    """1 us short of 20 hours after the job ended its result files are asked for again; at 20 hours they are given
    up (the routes answer 410) and nothing more is asked."""
    ports = bulk_ports(bulk_inline_results_max_bytes=1)
    job = started(ports)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []}))
    ports.bulk.results_queue.messages.clear()
    ended_at = job_of(ports, job).completed_at
    summary = sweep_at(ports, ended_at + timedelta(hours=20) - US)
    assert (summary.published, summary.expired) == (1, 0)
    assert len(ports.bulk.results_queue.messages) == 1
    assert not job_of(ports, job).results_ready

    ports.bulk.results_queue.messages.clear()
    ports.bulk.jobs.mark_checked(job.job_id, BulkState.JOB_COMPLETE, ended_at)
    summary = sweep_at(ports, ended_at + timedelta(hours=20))
    assert (summary.published, summary.expired) == (0, 1)
    ended = job_of(ports, job)
    assert ended.results_ready and ended.error.code == "results_unavailable" and "20 hours" in ended.error.message
    assert ports.bulk.results_queue.messages == []
    assert ports.bulk.jobs.pending_since(job.job_id) is None


@pytest.mark.parametrize("planned_before", [None, timedelta(hours=2)], ids=["no_plan", "old_plan"])
def test_a_job_whose_plan_is_written_after_the_reconciler_read_it_is_not_given_up(ports, monkeypatch, planned_before):
    """An hour after its start, its statement unrecorded, the job is given up "not_started" unless an executor (a
    copy of its message) wrote a plan since the reconciler read it: that executor is starting the load, which may
    commit, so the job is left InProgress to it, not failed under it."""
    message = queued(ports)
    start = utcnow()
    ports.bulk.jobs.transition(
        message.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE}, started_at=start
    )
    if planned_before is not None:
        ports.bulk.jobs.record_plan(message.job_id, LoadPlan(columns=["id"], planned_at=start - planned_before))
    at = start + timedelta(hours=1)
    get = ports.bulk.jobs.get

    def read_then_planned(job_id):
        job = get(job_id)
        ports.bulk.jobs.record_plan(job_id, LoadPlan(columns=["id", "name", "city"], planned_at=at))
        return job

    monkeypatch.setattr(ports.bulk.jobs, "get", read_then_planned)
    summary = sweep_at(ports, at)
    monkeypatch.undo()
    assert (summary.expired, summary.skipped) == (0, 1)
    job = job_of(ports, message)
    assert (job.state, job.error, job.statement_id) == (BulkState.IN_PROGRESS, None, None)
    assert job.plan.planned_at == at
    assert ports.events.types() == []


def test_a_sweep_out_of_time_before_its_jobs_says_so_and_that_more_are_pending(ports):
    """A run whose deadline has passed before it reached its jobs handles none of them, and says it ran out of time
    with jobs still pending, so they are taken up by the next run rather than reported as done."""
    first, second = queued(ports), queued(ports)
    summary = ReconcileSummary()
    reconcile_bulk(
        ports, utcnow() + timedelta(seconds=301), Thresholds.from_settings(ports.settings), summary, deadline=0.0
    )
    assert (summary.checked, summary.requeued) == (0, 0)
    assert (summary.out_of_time, summary.more_pending) == (True, True)
    assert ports.queue.messages == []
    assert ports.bulk.jobs.pending_since(first.job_id) is not None
    assert ports.bulk.jobs.pending_since(second.job_id) is not None


def test_a_job_never_started_is_given_up_exactly_3600_seconds_after_it_was_queued(ports):
    """pending_max_age_seconds (3600) after UploadComplete queued it, a job that never reached the warehouse fails
    not_started; 1 us earlier its message is sent again instead."""
    message = queued(ports)
    queued_at = job_of(ports, message).queued_at
    assert sweep_at(ports, queued_at + timedelta(seconds=3600) - US).requeued == 1
    assert job_of(ports, message).state is BulkState.UPLOAD_COMPLETE
    ports.bulk.jobs.mark_checked(message.job_id, BulkState.UPLOAD_COMPLETE, queued_at)
    assert sweep_at(ports, queued_at + timedelta(seconds=3600)).expired == 1
    failed = job_of(ports, message)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "not_started")
    assert ports.events.types() == ["Bulk Job Failed"]


def test_a_job_whose_statement_is_recorded_after_the_reconciler_read_it_is_not_given_up(ports, monkeypatch):
    """An hour after its start the job is given up "not_started" only while no statement is recorded: one an
    executor recorded since the reconciler read the job runs the load, and the job is left InProgress for it."""
    message = queued(ports)
    start = utcnow()
    ports.bulk.jobs.transition(
        message.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE}, started_at=start
    )
    get = ports.bulk.jobs.get

    def read_then_recorded(job_id):
        job = get(job_id)
        ports.bulk.jobs.update(job_id, [BulkState.IN_PROGRESS], statement_id="stmt-1")
        return job

    monkeypatch.setattr(ports.bulk.jobs, "get", read_then_recorded)
    summary = sweep_at(ports, start + timedelta(hours=1))
    monkeypatch.undo()
    assert (summary.expired, summary.skipped) == (0, 1)
    job = job_of(ports, message)
    assert (job.state, job.error, job.statement_id) == (BulkState.IN_PROGRESS, None, "stmt-1")
    assert ports.events.types() == []
