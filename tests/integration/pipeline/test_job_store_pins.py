"""Job store behaviour no test held before (found by mutation testing spectra/job_store.py): the README's 30 days of
a job's record and 24 hours of a query's idempotency key, counted from the request; a key whose record or job is
gone answered with a 409 to retry, not a crash or a job of None; DynamoDB failures other than a refused condition
raised as themselves, not taken for a held key, a withdrawn job or a refused slot release; a finish with no legal
source, refused for a conflict, or refused as invalid, writing nothing; a fingerprint that does not depend on the
order of a parameter's keys.

Runs on DynamoDB (moto), in a table made from template.yaml's ``JobsTable``; :class:`Faulty` puts a failure in
front of the calls a test picks, as a botocore client raises it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from events import JobStatus, ResultFormat
from spectra import job_store
from spectra.errors import Conflict
from spectra.job_store import JobStore, request_fingerprint
from spectra.jobs import Job, new_job_id, utcnow
from spectra.slots import RunningSlots, SlotsSeen
from tests.fixtures.aws import Faulty, table_from_template

pytestmark = pytest.mark.integration


def error(code: str, operation: str, **response) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, **response}, operation)


def raising(exc: ClientError):
    def fault(real, kwargs):
        raise exc

    return fault


@pytest.fixture
def dynamo(local_aws):
    """(faulty client, job store on it, running slots on it, the jobs table's name)."""
    with (
        table_from_template(local_aws, "JobsTable", "jobs-pins-") as (client, jobs_table),
        table_from_template(local_aws, "TenantsTable", "tenants-pins-") as (_, tenants_table),
    ):
        faulty = Faulty(client)
        yield faulty, JobStore(faulty, jobs_table), RunningSlots(faulty, tenants_table), jobs_table


def make_job(*, key: str | None = None, at=None, sql: str = "select 1") -> Job:
    at = at or utcnow()
    return Job(
        job_id=new_job_id(), tenant_id="acme", db_user="tenant_acme", sql=sql, format=ResultFormat.CSV,
        created_at=at, updated_at=at, idempotency_key=key,
    )  # fmt: skip


def created_ago(store: JobStore, monkeypatch, ago: timedelta, **fields) -> Job:
    """A job created ``ago`` before now (the store's clock turned back for its write)."""
    then = utcnow() - ago
    monkeypatch.setattr(job_store, "utcnow", lambda: then)
    job, created = store.create(make_job(at=then, **fields), fingerprint=fields.get("sql", "select 1"))
    monkeypatch.undo()
    assert created
    return job


def running(store: JobStore, slots: RunningSlots) -> Job:
    """A SUBMITTED job with a statement, holding a slot of tenant acme."""
    job = make_job()
    store.create(job)
    assert slots.claim("acme", job.job_id, limit=5).taken
    return store.transition(job.job_id, JobStatus.SUBMITTED, expected={JobStatus.QUEUED}, statement_id="st-1")


# -- the README's lifetimes -------------------------------------------------------------------------------------------


def test_a_job_is_its_tenants_for_30_days_from_its_creation_and_then_gone(dynamo, monkeypatch):
    """README: a job stays visible until its record expires, 30 days after the job was made."""
    _, store, _, _ = dynamo
    young = created_ago(store, monkeypatch, timedelta(days=30) - timedelta(hours=1))
    old = created_ago(store, monkeypatch, timedelta(days=30) + timedelta(hours=1))
    assert store.get_for_tenant("acme", young.job_id) == young
    assert store.get_for_tenant("acme", old.job_id) is None
    assert [job.job_id for job in store.list_for_tenant("acme", limit=10).jobs] == [young.job_id]


def test_a_querys_idempotency_key_is_kept_24_hours_and_is_free_after(dynamo, monkeypatch):
    """README: a query's Idempotency-Key is kept 24 hours: its repeat within them is answered the first job, one
    after them makes a new job."""
    _, store, _, _ = dynamo
    kept = created_ago(store, monkeypatch, timedelta(hours=23, minutes=30), key="kept")
    assert store.create(make_job(key="kept"), fingerprint="select 1") == (kept, False)
    assert store.repeat_of(make_job(key="kept"), fingerprint="select 1") == kept
    freed = created_ago(store, monkeypatch, timedelta(hours=24, minutes=30), key="freed")
    assert store.repeat_of(make_job(key="freed"), fingerprint="select 1") is None
    again, created = store.create(make_job(key="freed"), fingerprint="select 1")
    assert created and again.job_id != freed.job_id


# -- idempotency keys whose record or job is gone ---------------------------------------------------------------------


def test_a_key_whose_record_expires_between_the_refused_write_and_its_read_is_a_conflict_to_retry(dynamo):
    """The key is another request's when the write is refused, and its record gone (expired, deleted by the TTL)
    when it is read: a 409 asking for a retry, and the retry makes the job."""
    faulty, store, _, table = dynamo
    store.create(make_job(key="k1"), fingerprint="f1")

    def refused_then_expired(real, kwargs):
        try:
            return real(**kwargs)
        finally:
            record = kwargs["TransactItems"][0]["Put"]["Item"]["job_id"]
            faulty._client.delete_item(TableName=table, Key={"job_id": record})

    faulty.faults["transact_write_items"] = refused_then_expired
    with pytest.raises(Conflict, match="retry"):
        store.create(make_job(key="k1"), fingerprint="f1")
    faulty.faults.clear()
    job = make_job(key="k1")
    assert store.create(job, fingerprint="f1") == (job, True)


def test_a_key_used_for_another_request_is_a_conflict_naming_the_key_and_its_job(dynamo):
    _, store, _, _ = dynamo
    first, _ = store.create(make_job(key="k1"), fingerprint="f1")
    with pytest.raises(Conflict, match="Idempotency-Key was already used for a different request") as raised:
        store.create(make_job(key="k1", sql="select 2"), fingerprint="f2")
    assert raised.value.details == {"idempotency_key": "k1", "job_id": first.job_id}


def test_a_key_whose_job_is_gone_is_a_conflict_not_a_job_of_none(dynamo):
    """A record whose job was deleted (the job's TTL) answers its repeat with a 409, from create and repeat_of."""
    faulty, store, _, table = dynamo
    first, _ = store.create(make_job(key="k1"), fingerprint="f1")
    faulty.delete_item(TableName=table, Key={"job_id": {"S": first.job_id}})
    with pytest.raises(Conflict, match="no longer exists"):
        store.create(make_job(key="k1"), fingerprint="f1")
    with pytest.raises(Conflict, match="no longer exists"):
        store.repeat_of(make_job(key="k1"), fingerprint="f1")


def test_reads_just_after_a_write_see_it_where_replicas_lag(dynamo):
    """DynamoDB's eventually consistent reads may miss an item written a moment ago (:class:`Faulty` answers every
    read that does not ask for consistency from a replica the write has not reached): a job just created is read
    back, and a repeat of its key is answered that job, not a 409."""
    faulty, store, _, _ = dynamo

    def lagging(real, kwargs):
        return real(**kwargs) if kwargs.get("ConsistentRead") else {}

    faulty.faults["get_item"] = lagging
    first, _ = store.create(make_job(key="k1"), fingerprint="f1")
    assert store.get(first.job_id) == first
    assert store.get_for_tenant("acme", first.job_id) == first
    assert store.create(make_job(key="k1"), fingerprint="f1") == (first, False)


# -- DynamoDB's failures raised as themselves ------------------------------------------------------------------------


def test_a_keyed_create_that_dynamodb_fails_raises_that_failure_not_a_key_conflict(dynamo):
    faulty, store, _, _ = dynamo
    faulty.faults["transact_write_items"] = raising(error("InternalServerError", "TransactWriteItems"))
    job = make_job(key="k1")
    with pytest.raises(ClientError) as raised:
        store.create(job, fingerprint="f1")
    assert raised.value.response["Error"]["Code"] == "InternalServerError"
    assert store.get(job.job_id) is None


def test_a_withdraw_that_dynamodb_fails_raises_that_failure(dynamo):
    """The caller logs a job it could not withdraw (a query that may run twice): the failure must reach it."""
    faulty, store, _, _ = dynamo
    job = make_job()
    store.create(job)
    faulty.faults["delete_item"] = raising(error("InternalServerError", "DeleteItem"))
    with pytest.raises(ClientError):
        store.withdraw(job.job_id)
    faulty.faults.clear()
    store.withdraw(job.job_id)
    assert store.get(job.job_id) is None


def test_a_finish_that_dynamodb_fails_raises_that_failure_not_a_refused_release(dynamo):
    faulty, store, slots, _ = dynamo
    job = running(store, slots)
    faulty.faults["transact_write_items"] = raising(error("InternalServerError", "TransactWriteItems"))
    with pytest.raises(ClientError):
        store.finish(job, JobStatus.COMPLETED, release=slots.releasing("acme", job.job_id))


# -- transitions and listings ----------------------------------------------------------------------------------------


def test_an_announced_transition_takes_the_job_out_of_the_pending_index(dynamo):
    """A terminal write whose event is already out owes nothing: the reconciler no longer finds the job."""
    _, store, _, _ = dynamo
    job = make_job()
    store.create(job)
    later = utcnow() + timedelta(hours=1)
    assert [p.job_id for p in store.pending_before(later, limit=10).jobs] == [job.job_id]
    ended = store.transition(job.job_id, JobStatus.FAILED, expected={JobStatus.QUEUED}, announced=True)
    assert ended.status is JobStatus.FAILED and ended.event_published
    assert store.pending_before(later, limit=10).jobs == []


def test_a_status_filtered_page_looks_past_dozens_of_jobs_that_do_not_match(dynamo):
    """One request of a filtered listing finds the one FAILED job behind 40 newer QUEUED ones (it reads the index
    in pages of many jobs, not of the page's size)."""
    _, store, _, _ = dynamo
    start = utcnow() - timedelta(hours=1)
    failed = make_job(at=start)
    store.create(failed)
    store.transition(failed.job_id, JobStatus.FAILED, expected={JobStatus.QUEUED})
    for n in range(40):
        store.create(make_job(at=start + timedelta(seconds=n + 1)))
    page = store.list_for_tenant("acme", limit=1, status=JobStatus.FAILED)
    assert [job.job_id for job in page.jobs] == [failed.job_id]


def test_a_finish_whose_event_is_not_yet_out_leaves_the_job_pending(dynamo):
    """Its event still owed (a failed PutEvents after the write is found by the reconciler), the finished job stays
    in the pending index, unpublished, until the event is marked out."""
    _, store, slots, _ = dynamo
    job = running(store, slots)
    finished = store.finish(job, JobStatus.COMPLETED, release=slots.releasing("acme", job.job_id))
    assert finished.job.status is JobStatus.COMPLETED and not finished.job.event_published
    later = utcnow() + timedelta(hours=1)
    assert [p.job_id for p in store.pending_before(later, limit=10).jobs] == [job.job_id]
    store.mark_published(job.job_id, JobStatus.COMPLETED)
    assert store.pending_before(later, limit=10).jobs == []


# -- finishes that write nothing -------------------------------------------------------------------------------------


def test_a_finish_from_a_state_that_cannot_reach_its_end_writes_nothing(dynamo):
    """A job seen COMPLETED cannot end FAILED: nothing to do, the job as it was and its slot still held."""
    _, store, slots, _ = dynamo
    job = running(store, slots)
    done = store.transition(job.job_id, JobStatus.COMPLETED, expected={JobStatus.SUBMITTED})
    finished = store.finish(done, JobStatus.FAILED, release=slots.releasing("acme", job.job_id))
    assert finished == job_store.Finished(None)
    assert store.get(job.job_id) == done
    assert job.job_id in slots.holders("acme")


@pytest.mark.parametrize(
    "refusal",
    [
        error(
            "TransactionCanceledException",
            "TransactWriteItems",
            CancellationReasons=[{"Code": "None"}, {"Code": "TransactionConflict"}],
        ),
        error("TransactionCanceledException", "TransactWriteItems"),
        error("ValidationException", "TransactWriteItems"),
    ],
    ids=["conflict", "no-reasons", "slots-item-without-sessions"],
)
def test_a_finish_refused_for_a_reason_it_cannot_tell_says_so_and_writes_nothing(dynamo, refusal):
    """A transaction conflict, a cancellation without reasons, or a slots item made before sessions were pooled:
    the slots seen are unknown (the caller writes the two apart), and the job is not written."""
    faulty, store, slots, _ = dynamo
    job = running(store, slots)
    faulty.faults["transact_write_items"] = raising(refusal)
    finished = store.finish(job, JobStatus.COMPLETED, release=slots.releasing("acme", job.job_id))
    assert finished == job_store.Finished(None, slots=SlotsSeen(known=False))
    faulty.faults.clear()
    assert store.get(job.job_id) == job
    assert job.job_id in slots.holders("acme")


# -- fingerprints ---------------------------------------------------------------------------------------------------


def test_a_fingerprint_does_not_depend_on_the_order_of_a_parameters_keys():
    """A repeat whose parameters list the same fields in another order is the same request (no 409)."""
    assert request_fingerprint("select :a", [{"name": "a", "value": "1"}], "csv") == request_fingerprint(
        "select :a", [{"value": "1", "name": "a"}], "csv"
    )
    assert request_fingerprint("select :a", [{"name": "a", "value": "1"}], "csv") != request_fingerprint(
        "select :a", [{"name": "a", "value": "2"}], "csv"
    )
