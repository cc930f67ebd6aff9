"""The reconciler under sustained throttling and backlogs, and racing a late event (found by the reconciler review):
no kind of job keeps another from being looked at, and only the ending that wins is announced."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events import JobQueuedMessage, JobStatus
from spectra.bulk.models import BulkOperation, BulkState
from spectra.jobs import Job, new_job_id, utcnow
from spectra.lifecycle import execute_job
from spectra.reconciliation import reconcile
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import make_ports, make_settings

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


def test_a_failed_last_attempt_racing_a_successful_one_announces_only_the_winner(ports, monkeypatch):
    """The reconciler's last result attempt fails (S3 refused a part, say) while a late copy of the status event
    collects the same result fine. ``_failed_attempt`` ended the job through the *settled* path (publish first, write
    after), though a failed collection is not settled by the statement: the bus got "Job Completed" AND "Job Failed"
    for one job that ended COMPLETED. It writes first now, as bulk's ``contested`` ending does."""
    from botocore.exceptions import ClientError

    from spectra import lifecycle
    from spectra.lifecycle import complete_statement
    from spectra.warehouse import Column

    job = query_job(ports)
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"], rows=1)
    ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], result_attempts=2)  # two attempts failed already

    real_collect, calls = lifecycle.collect_result, []

    def collect(ports_, job_, statement_id, info=None):
        calls.append(info)
        if len(calls) == 1:  # the reconciler's attempt: a transient S3 refusal
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"}}, "PutObject")
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
    re-queued nor given up. Query jobs now take at most half of a run."""
    import itertools

    from spectra import reconciliation

    ports = make_ports(settings=make_settings(tenant_max_running_statements=100))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    for _ in range(30):
        query_job(ports)  # long statements, events lost: each described once a minute
    lost = bulk_queued(ports)
    clock = itertools.count()
    monkeypatch.setattr(reconciliation.time, "monotonic", lambda: next(clock))
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
