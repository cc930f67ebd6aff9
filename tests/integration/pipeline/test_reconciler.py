"""The reconciler on the session stack: the pending index it reads, and what it does with each kind of stale job.

Each test moves the sweep's clock forward (``reconcile(ports, now=later)``) instead of waiting, so the stack's own
scheduled sweep (real clock, one-minute threshold) never reaches these fresh jobs and cannot race the test.
Other tests' jobs may be pending too; assertions are about this test's jobs only.
"""

from dataclasses import replace
from datetime import timedelta

import pytest

from events import JobQueuedMessage, JobStatus
from spectra.job_store import PENDING_INDEX, index_time, pending_shard
from spectra.jobs import Job, utcnow
from spectra.lifecycle import execute_job, finish_job
from spectra.ports import Ports, get_ports
from spectra.reconciliation import reconcile
from spectra.warehouse import DatabaseIdentity
from tests.fixtures.redshift import wait_for_statement
from tests.fixtures.stack import record_job, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def ports(spectra_stack) -> Ports:
    """The stack's ports with a batch large enough that other tests' leftovers cannot crowd this test's jobs out."""
    ports = get_ports()
    return replace(ports, settings=ports.settings.model_copy(update={"reconcile_batch_max": 10_000}))


@pytest.fixture
def raw_item(spectra_stack, local_aws):
    dynamodb, table = local_aws.client("dynamodb"), spectra_stack.physical_id("JobsTable")

    def get(job_id: str) -> dict:
        return dynamodb.get_item(TableName=table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)["Item"]

    return get


def wait_terminal(ports: Ports, job_id: str, timeout: float = 30) -> Job:
    return wait_until(lambda: (j := ports.jobs.get(job_id)).status.is_terminal and j, timeout, f"{job_id} to end")


def later(**delta) -> object:
    return utcnow() + timedelta(**delta)


# -- the pending index --------------------------------------------------------------------------------------------


def test_a_job_is_pending_from_creation_until_its_event_is_published(ports, raw_item, job_tenant):
    job = record_job(ports, job_tenant)
    created = raw_item(job.job_id)
    assert created["pending_shard"] == {"S": pending_shard(job.job_id)}
    assert created["pending_since"] == {"S": index_time(job.created_at)}

    submitted = ports.jobs.transition(job.job_id, JobStatus.SUBMITTED, submitted_at=utcnow())
    assert raw_item(job.job_id)["pending_since"]["S"] > created["pending_since"]["S"]

    finished = finish_job(ports, submitted, JobStatus.CANCELLED)
    assert finished is not None
    item = raw_item(job.job_id)
    assert item["event_published"] == {"BOOL": True}
    assert "pending_shard" not in item and "pending_since" not in item


def test_the_index_is_queried_oldest_first_and_bounded(ports, job_tenant):
    jobs = [record_job(ports, job_tenant) for _ in range(3)]
    page = ports.jobs.pending_before(later(minutes=5), limit=2)
    assert len(page.jobs) == 2
    assert page.more is True
    assert [e.pending_since for e in page.jobs] == sorted(e.pending_since for e in page.jobs)

    everything = ports.jobs.pending_before(later(minutes=5), limit=10_000)
    assert {j.job_id for j in jobs} <= {e.job_id for e in everything.jobs}
    before_them = ports.jobs.pending_before(jobs[0].created_at, limit=10_000)
    assert not {j.job_id for j in jobs} & {e.job_id for e in before_them.jobs}


def test_the_index_is_keys_only_and_sparse(spectra_stack, local_aws):
    table = local_aws.client("dynamodb").describe_table(TableName=spectra_stack.physical_id("JobsTable"))["Table"]
    (index,) = [i for i in table["GlobalSecondaryIndexes"] if i["IndexName"] == PENDING_INDEX]
    assert index["Projection"]["ProjectionType"] == "KEYS_ONLY"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["pending_shard", "pending_since"]


def submitted_without_event(ports: Ports, redshift_data, job: Job) -> str:
    """``job`` SUBMITTED with its statement run to its end and no completion event (the lost event): the statement's
    id."""
    ports.jobs.transition(job.job_id, JobStatus.SUBMITTED, submitted_at=utcnow())
    statement_id = ports.warehouse.execute(
        job.sql,
        identity=DatabaseIdentity(db_user=job.db_user),
        name=job.job_id,
        client_token=job.job_id,
        with_event=False,
    )
    ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], statement_id=statement_id)
    wait_for_statement(redshift_data, statement_id)
    return statement_id


# -- what the sweep does --------------------------------------------------------------------------------------------


def test_a_finished_statement_whose_event_never_came_completes_the_job(ports, job_events, redshift_data, job_tenant):
    job = record_job(ports, job_tenant, "select 7 as lucky union all select 8")
    submitted_without_event(ports, redshift_data, job)

    reconcile(ports, now=utcnow())
    assert ports.jobs.get(job.job_id).status is JobStatus.SUBMITTED, "looked at before reconcile_after_seconds"
    summary = reconcile(ports, now=later(minutes=2))
    assert summary.completed >= 1
    done = ports.jobs.get(job.job_id)
    assert done.status is JobStatus.COMPLETED
    assert done.result.row_count == 2
    assert done.event_published
    event = job_events(job.job_id, "Job Completed")
    assert event["detail"]["row_count"] == 2


def test_a_running_statement_is_left_alone_and_moved_back(ports, raw_item, redshift_data, job_tenant):
    job = record_job(ports, job_tenant, "select pg_sleep(30)")
    execute_job(ports, JobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id))
    running = ports.jobs.get(job.job_id)
    assert running.status is JobStatus.SUBMITTED and running.statement_id
    wait_for_statement(redshift_data, running.statement_id, states={"STARTED"})
    try:
        now = later(minutes=2)
        summary = reconcile(ports, now=now)
        assert summary.still_running >= 1
        item = raw_item(job.job_id)
        assert item["status"] == {"S": "SUBMITTED"}
        assert item["pending_since"] == {"S": index_time(now)}
        assert "last_checked_at" in item
        # moved to the back: a sweep a moment later does not look at it again
        assert job.job_id not in {e.job_id for e in ports.jobs.pending_before(now, limit=10_000).jobs}
    finally:
        ports.warehouse.cancel(running.statement_id)
    # its ABORTED event still arrives; nobody asked the API to cancel, so the job fails rather than being cancelled
    ended = wait_terminal(ports, job.job_id)
    assert (ended.status, ended.error.code) == (JobStatus.FAILED, "statement_aborted")


def test_a_queued_job_whose_message_was_lost_is_queued_again_and_runs(ports, raw_item, job_tenant):
    job = record_job(ports, job_tenant)
    reconcile(ports, now=later(minutes=2))
    untouched = raw_item(job.job_id)  # a re-queue would have moved it back in the index
    assert untouched["pending_since"] == {"S": index_time(job.created_at)}, "re-queued before requeue_after_seconds"
    assert untouched["status"] == {"S": "QUEUED"}

    summary = reconcile(ports, now=later(minutes=10))
    assert summary.requeued >= 1
    done = wait_terminal(ports, job.job_id)
    assert done.status is JobStatus.COMPLETED, done
    assert done.result.row_count == 1


def test_a_job_submitted_without_a_statement_is_queued_again_and_runs(ports, redshift_data, job_tenant):
    job = record_job(ports, job_tenant)
    ports.jobs.transition(job.job_id, JobStatus.SUBMITTED, submitted_at=utcnow())  # the executor died here

    reconcile(ports, now=later(minutes=10))
    done = wait_terminal(ports, job.job_id)
    assert done.status is JobStatus.COMPLETED, done
    statements = redshift_data.list_statements(StatementName=job.job_id, RoleLevel=False, Status="ALL")["Statements"]
    assert [s["Id"] for s in statements] == [done.statement_id]


def test_a_job_that_never_reached_the_warehouse_fails_after_the_max_age(ports, job_events, raw_item, job_tenant):
    job = record_job(ports, job_tenant)
    reconcile(ports, now=later(hours=2))
    failed = ports.jobs.get(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error.code == "not_started"
    assert "did not reach the warehouse" in failed.error.message
    assert job_events(job.job_id, "Job Failed")["detail"]["error"]["code"] == "not_started"
    assert "pending_since" not in raw_item(job.job_id)


def test_a_terminal_job_whose_event_was_never_published_is_announced(ports, job_events, job_tenant):
    job = record_job(ports, job_tenant)
    # the API's enqueue-failed path: a terminal write without the event
    ports.jobs.transition(job.job_id, JobStatus.FAILED, error={"code": "enqueue_failed", "message": "lost"})
    assert not ports.jobs.get(job.job_id).event_published

    reconcile(ports, now=later(minutes=2))
    assert ports.jobs.get(job.job_id).event_published
    assert job_events(job.job_id, "Job Failed")["detail"]["error"]["code"] == "enqueue_failed"


def test_a_statement_the_warehouse_forgot_fails_the_job(ports, job_tenant):
    job = record_job(ports, job_tenant)
    ports.jobs.transition(job.job_id, JobStatus.SUBMITTED, submitted_at=utcnow())
    ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], statement_id="00000000-0000-4000-8000-000000000000")

    reconcile(ports, now=later(minutes=2))
    failed = ports.jobs.get(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error.code == "statement_lost"


def test_a_statement_past_the_data_apis_retention_fails_the_job(ports, redshift_data, redshift_emulator, job_tenant):
    """The Data API answers ValidationException ("... has expired after ...") for a statement past its 24 hours, not
    ResourceNotFoundException: the job fails as lost instead of erring on every sweep for ever."""
    job = record_job(ports, job_tenant)
    statement_id = submitted_without_event(ports, redshift_data, job)
    assert redshift_emulator.expire_statement(statement_id)

    reconcile(ports, now=later(minutes=2))
    failed = ports.jobs.get(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error.code == "statement_lost"


def test_the_scheduled_function_returns_its_summary(spectra_stack):
    summary = spectra_stack.invoke("ReconcilerFunction", {"detail-type": "Scheduled Event", "detail": {}})
    assert set(summary) >= {"checked", "completed", "requeued", "still_running", "throttled", "more_pending"}
    assert summary["errors"] == 0
