"""Bulk job store behaviour no test held before (found by mutation testing spectra/bulk/store.py): the README's 30
days of a job's record, counted from its create, to its tenant's read and listing; a job with a plan and a statement
recorded ends, gets its result files and its event marked (only a move asked as unstarted waits for no statement, and
only one asked with the plan seen waits for that plan); DynamoDB failures other than a refused condition raised as
themselves when a keyed batch is recorded (also while an old job is given its empty map), not taken for a name
recorded already; result files given up with the job's error; a release by a writer that holds no lease changing
nothing.

Runs on DynamoDB (moto), in a table made from template.yaml's ``BulkJobsTable``; :class:`Faulty` puts a failure in
front of the calls a test picks, as a botocore client raises it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from events import ErrorInfo
from spectra.bulk import store as bulk_store
from spectra.bulk.models import BulkJob, BulkOperation, BulkState, KeyedBatch, LoadPlan, new_bulk_job_id
from spectra.bulk.store import BulkJobStore
from tests.fixtures.aws import Faulty, table_from_template

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BATCH = KeyedBatch(key="acme/b/uploads/1.csv", digest="d1")


def error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


@pytest.fixture
def dynamo(local_aws):
    """(faulty client, bulk job store on it, the table's name)."""
    with table_from_template(local_aws, "BulkJobsTable", "bulk-pins-") as (client, table):
        faulty = Faulty(client)
        yield faulty, BulkJobStore(faulty, table), table


def made(store: BulkJobStore, state: BulkState = BulkState.OPEN) -> BulkJob:
    job = BulkJob(
        job_id=new_bulk_job_id(), tenant_id="acme", db_user="tenant_acme", object="accounts",
        operation=BulkOperation.INSERT, state=BulkState.OPEN, created_at=T0, updated_at=T0,
    )  # fmt: skip
    store.create(job)
    for step in {
        BulkState.OPEN: [],
        BulkState.UPLOAD_COMPLETE: [BulkState.UPLOAD_COMPLETE],
        BulkState.JOB_COMPLETE: [BulkState.UPLOAD_COMPLETE, BulkState.IN_PROGRESS, BulkState.JOB_COMPLETE],
    }[state]:
        assert store.transition(job.job_id, step) is not None
    return store.get(job.job_id)


def test_a_keyed_batch_record_that_dynamodb_throttles_is_raised_not_taken_for_one_recorded(dynamo):
    """A throttled record of a keyed batch after the close is raised: swallowed, the batch the job loads would be
    missing and its repeat answered 409 'not Open'."""
    faulty, store, _ = dynamo
    job = made(store, BulkState.UPLOAD_COMPLETE)

    def throttled(real, kwargs):
        raise error("ThrottlingException", "UpdateItem")

    faulty.faults["update_item"] = throttled
    with pytest.raises(ClientError) as raised:
        store.record_keyed_batch(job.job_id, "k1", BATCH)
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    faulty.faults.clear()
    assert store.get(job.job_id).keyed_batches == {}


def test_an_old_jobs_empty_map_write_that_dynamodb_throttles_is_raised_as_itself(dynamo):
    """A job recorded before keyed batches gets an empty map first; when that write is throttled the throttling is
    raised (not swallowed, only for the batch's own write to fail again as invalid)."""
    faulty, store, table = dynamo
    job = made(store, BulkState.UPLOAD_COMPLETE)
    faulty._client.update_item(
        TableName=table, Key={"job_id": {"S": job.job_id}}, UpdateExpression="REMOVE keyed_batches"
    )
    calls = []

    def second_throttled(real, kwargs):
        calls.append(kwargs["UpdateExpression"])
        if len(calls) == 2:
            raise error("ThrottlingException", "UpdateItem")
        return real(**kwargs)

    faulty.faults["update_item"] = second_throttled
    with pytest.raises(ClientError) as raised:
        store.record_keyed_batch(job.job_id, "k1", BATCH)
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert calls == ["SET #keyed.#name = :batch", "SET #keyed = :empty"]


def test_result_files_given_up_carry_the_error_given(dynamo):
    """``give_up_results`` with an error records it on the job (what the routes and the event say it fell short
    of), beside why the files were given up."""
    _, store, _ = dynamo
    job = made(store, BulkState.JOB_COMPLETE)
    late = ErrorInfo(code="results_unavailable", message="result files could not be written in time")
    given_up = store.give_up_results(job, why="too late", error=late)
    assert (given_up.results_ready, given_up.results_unavailable, given_up.error) == (True, "too late", late)
    assert store.get(job.job_id).error == late


def test_a_release_by_a_writer_holding_no_lease_changes_nothing(dynamo):
    """Releasing result files as read with no lease (a writer that never took one) writes nothing and raises
    nothing: the lease another writer took since stays."""
    _, store, _ = dynamo
    job = made(store, BulkState.JOB_COMPLETE)
    leased = store.lease_results(job, until=1000)
    store.release_results(job)
    assert store.get(job.job_id) == leased
    assert store.get(job.job_id).results_writer_until == 1000


def test_a_job_is_its_tenants_for_30_days_from_its_create_and_then_gone(dynamo, monkeypatch):
    """README: a bulk job's record is kept 30 days. Its tenant reads and lists it 1 s short of 30 days after its
    create, and from 1 s past 30 days it is not found (the pipeline's own read still sees it)."""
    _, store, _ = dynamo
    created = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(bulk_store, "utcnow", lambda: created)
    job = made(store)
    monkeypatch.setattr(bulk_store, "utcnow", lambda: created + timedelta(days=30, seconds=-1))
    assert store.get_for_tenant("acme", job.job_id) == job
    assert [j.job_id for j in store.list_for_tenant("acme", limit=5).jobs] == [job.job_id]
    monkeypatch.setattr(bulk_store, "utcnow", lambda: created + timedelta(days=30, seconds=1))
    assert store.get_for_tenant("acme", job.job_id) is None
    assert store.list_for_tenant("acme", limit=5).jobs == []
    assert store.get(job.job_id) == job


def test_a_job_with_its_statement_recorded_ends_and_is_settled(dynamo):
    """Only a transition asked as ``unstarted`` waits for no statement: the load's own ending of a job whose
    statement is recorded is written, and so are its result files and its event (refused, the job would stay
    InProgress, or pending, until the reconciler gave up on it)."""
    _, store, _ = dynamo
    job = made(store, BulkState.UPLOAD_COMPLETE)
    assert store.transition(job.job_id, BulkState.IN_PROGRESS) is not None
    plan = LoadPlan(columns=["id"], copies=[(0, 1)], planned_at=T0)
    assert store.record_plan(job.job_id, plan).plan == plan
    started = store.update(job.job_id, [BulkState.IN_PROGRESS], statement_id="st-1")
    assert (started.statement_id, started.plan) == ("st-1", plan)
    ended = store.transition(job.job_id, BulkState.JOB_COMPLETE)
    assert (ended.state, ended.statement_id) == (BulkState.JOB_COMPLETE, "st-1")
    ready = store.mark_results_ready(job.job_id, BulkState.JOB_COMPLETE, attempt="20261204T101500-0a1b2c3d4e5f")
    assert (ready.results_ready, ready.results_attempt) == (True, "20261204T101500-0a1b2c3d4e5f")
    published = store.mark_published(job.job_id, BulkState.JOB_COMPLETE)
    assert published.event_published is True
    assert job.job_id not in {entry.job_id for entry in store.pending_before(T0 + timedelta(days=3650), limit=10).jobs}
    assert store.get(job.job_id) == published
