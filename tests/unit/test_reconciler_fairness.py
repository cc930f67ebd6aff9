"""The reconciler under sustained throttling and backlogs, and racing a late event (found by the reconciler review):
no kind of job keeps another from being looked at, and only the ending that wins is announced."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from events import JobQueuedMessage, JobStatus
from spectra import lifecycle
from spectra.bulk.models import BulkOperation, BulkState
from spectra.jobs import Job, new_job_id, utcnow
from spectra.lifecycle import complete_statement, execute_job
from spectra.reconciliation import reconcile
from spectra.warehouse import Column
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import make_ports, make_settings


def ticking(monkeypatch) -> itertools.count:
    """A monotonic clock moving one tick a call, in this thread only. time.monotonic is the process's: threads other
    test files left running in the same xdist worker (a local stack's pollers, any Condition.wait) call it too, and
    moved this clock under a test (a run saw 27 of its 30 looks)."""
    clock, real, here = itertools.count(), time.monotonic, threading.get_ident()
    monkeypatch.setattr(time, "monotonic", lambda: next(clock) if threading.get_ident() == here else real())
    return clock


pytestmark = pytest.mark.unit

BODY = b"id,name,city\n1,Ann,Oslo\n2,Bob,Rome\n"


@pytest.fixture
def ports():
    ports = make_ports(settings=make_settings())
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name", "city"])
    return ports


def query_job(ports) -> Job:
    now = utcnow()
    job = Job(
        job_id=new_job_id(), tenant_id="acme", db_user="tenant_acme", sql="select 1", created_at=now, updated_at=now
    )
    ports.jobs.create(job)
    return execute_job(ports, JobQueuedMessage(job_id=job.job_id, tenant_id="acme"))


def bulk_queued(ports) -> str:
    since = utcnow()
    job = bulk_job(BulkOperation.INSERT, state=BulkState.UPLOAD_COMPLETE, queued_at=since, created_at=since)
    source = ports.bulk.files.put(f"acme/{job.job_id}/uploads/batch.csv", BODY)
    ports.bulk.jobs.create(job.model_copy(update={"files": [source]}))
    return job.job_id


def test_a_throttled_query_sweep_does_not_keep_bulk_jobs_from_being_looked_at(ports):
    """A throttled DescribeStatement in the query sweep skipped the whole bulk sweep: under sustained Data API
    throttling (one throttled describe per run is enough) a bulk job whose queue message was lost was never
    re-queued nor given up, although re-queueing needs no Data API call at all."""
    running = query_job(ports)  # SUBMITTED with a statement; its status event is lost, the statement still runs
    assert running.status is JobStatus.SUBMITTED
    lost = bulk_queued(ports)  # its queue message is lost
    for minute in range(2, 121):  # two hours of runs, the first describe of each throttled
        ports.warehouse.throttle_next("describe")
        reconcile(ports, now=utcnow() + timedelta(minutes=minute))
    assert ports.queue.messages, "the bulk job was never queued again"
    assert ports.bulk.jobs.get(lost).state is not BulkState.UPLOAD_COMPLETE


def finished_after_two_failed_attempts(ports):
    """A job whose statement finished, two attempts at its result failed already: the next failure gives it up."""
    job = query_job(ports)
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"], rows=1)
    ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], result_attempts=2)
    return job, change


def test_a_failed_last_attempt_racing_a_successful_one_announces_only_the_winner(ports, monkeypatch):
    """The reconciler's last result attempt fails (S3 refused a part, say) while a late copy of the status event
    collects the same result fine. ``_failed_attempt`` ended the job through the *settled* path (publish first, write
    after), though a failed collection is not settled by the statement: the bus got "Job Completed" AND "Job Failed"
    for one job that ended COMPLETED. It writes first now, as a bulk job's every ending does."""
    job, change = finished_after_two_failed_attempts(ports)

    real_collect, calls = lifecycle.collect_result, []

    def collect(ports_, job_, statement_id, info=None):
        calls.append(info)
        if len(calls) == 1:  # the reconciler's attempt: S3 refusing a part
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "PutObject")
        return real_collect(ports_, job_, statement_id, info)

    monkeypatch.setattr(lifecycle, "collect_result", collect)
    real_count = ports.jobs.count_result_attempt

    def count_then_late_event(job_id):
        counted = real_count(job_id)
        complete_statement(ports, change)  # the late status event's copy, handled meanwhile by the consumer
        return counted

    monkeypatch.setattr(ports.jobs, "count_result_attempt", count_then_late_event)
    reconcile(ports, now=utcnow() + timedelta(minutes=2))

    assert ports.jobs.get(job.job_id).status is JobStatus.COMPLETED
    assert ports.events.types() == ["Job Completed"], "an ending that did not happen was announced"


def test_a_query_backlog_filling_each_run_leaves_the_bulk_sweep_its_half(monkeypatch):
    """The bulk sweep ran only when the query sweep ended within the budget: while query work filled every run's time
    (here each look costs one tick of a fake clock and a run has 20), a bulk job whose message was lost was never
    re-queued nor given up. Query jobs now take half of a run first, then the bulk sweep runs."""

    ports = make_ports(settings=make_settings(tenant_max_running_statements=100))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    for _ in range(30):
        query_job(ports)  # long statements, events lost: each described once a minute
    lost = bulk_queued(ports)
    clock = ticking(monkeypatch)
    for minute in range(2, 121):
        reconcile(ports, now=utcnow() + timedelta(minutes=minute), deadline=next(clock) + 20)
    assert ports.bulk.jobs.get(lost).state is not BulkState.UPLOAD_COMPLETE, "bulk job never looked at in 2 hours"


def test_a_throttled_head_job_does_not_stop_every_run_on_itself(ports):
    """Throttling stopped the run at the head entry, which was not moved: under sustained throttling every run stopped
    at the same job, and a QUEUED job behind it (lost message: re-queue, then give up, no Data API call needed) was
    never reached. The throttled job now goes to the back first."""
    query_job(ports)  # SUBMITTED with a statement, older: the head of the index
    now = utcnow()
    lost = Job(
        job_id=new_job_id(), tenant_id="acme", db_user="tenant_acme", sql="select 2", created_at=now, updated_at=now
    )
    ports.jobs.create(lost)  # its queue message is lost
    for minute in range(2, 121):
        ports.warehouse.throttle_next("describe")
        reconcile(ports, now=utcnow() + timedelta(minutes=minute))
    assert ports.jobs.get(lost.job_id).status is not JobStatus.QUEUED, "never re-queued nor given up"


def test_a_give_up_that_wins_is_not_followed_by_a_completed_event_from_the_late_copy(ports, monkeypatch):
    """The mirror of test_a_failed_last_attempt_racing_a_successful_one_announces_only_the_winner (diff review): the
    reconciler's failed last attempt wins the write (FAILED), while
    the late copy of the status event, which collected the result fine, ended through the settled path (publish
    first, write after): its write lost, but "Job Completed" was already on the bus. After a failed attempt the
    COMPLETED ending writes first too."""
    job, change = finished_after_two_failed_attempts(ports)

    real_collect, calls = lifecycle.collect_result, []

    def collect(ports_, job_, statement_id, info=None):
        calls.append(info)
        if len(calls) == 1:  # the late event's copy: collects fine, but slowly; the reconciler runs meanwhile
            result = real_collect(ports_, job_, statement_id, info)
            reconcile(ports, now=utcnow() + timedelta(minutes=2))
            return result
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "PutObject")  # the reconciler's

    monkeypatch.setattr(lifecycle, "collect_result", collect)
    complete_statement(ports, change)

    final = ports.jobs.get(job.job_id)
    assert (final.status, ports.events.types()) == (JobStatus.FAILED, ["Job Failed"]), ports.events.types()


def test_without_bulk_work_query_jobs_have_the_whole_run(monkeypatch):
    """The split gave query jobs at most half of a run even when the bulk index was empty: a query backlog that one
    run could look at whole took two, and every run reported out_of_time (ReconcileStoppedEarly, alarmed) though half
    of its time went unused (diff review). The query jobs left after the bulk sweep take what time remains."""

    ports = make_ports(settings=make_settings(tenant_max_running_statements=100))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    for _ in range(30):
        query_job(ports)  # long statements, events lost
    clock = ticking(monkeypatch)
    summary = reconcile(ports, now=utcnow() + timedelta(minutes=2), deadline=next(clock) + 40)
    assert summary.checked == 30 and not summary.out_of_time, summary.as_dict()


def test_a_statement_lost_racing_a_late_completion_announces_only_the_winner(ports, monkeypatch):
    """The reconciler's DescribeStatement finds the statement gone (statement_lost) while a late copy of its event
    completes the job: the give-up announced "Job Failed" before its write, which then lost, so both endings went
    out (reconciler review). It writes first now."""
    from spectra.errors import NotFound

    job = query_job(ports)
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"], rows=1)
    warehouse = type(ports.warehouse)
    describe, asked = warehouse.describe, []

    def late_event_then_gone(wh, statement_id):
        if asked:
            return describe(wh, statement_id)
        asked.append(statement_id)
        complete_statement(ports, change)  # the late event's copy
        raise NotFound(f"statement {statement_id} is gone")

    monkeypatch.setattr(warehouse, "describe", late_event_then_gone)
    reconcile(ports, now=utcnow() + timedelta(minutes=2))
    assert asked and ports.jobs.get(job.job_id).status is JobStatus.COMPLETED
    assert ports.events.types() == ["Job Completed"]
