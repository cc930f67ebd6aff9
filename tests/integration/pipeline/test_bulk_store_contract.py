"""One scenario suite, two bulk job stores: the in-memory fake the unit tier uses and the real BulkJobStore on
DynamoDB (moto), on a table built from template.yaml's own ``BulkJobsTable``.

The pending index matters most here: the reconciler reads it, and a job that leaves it too early is never finished
while one that never leaves it is read again on every run. So the scenarios pin, step by step, when a job is in it.

Where DynamoDB may differ from moto (a page that stops exactly at the last item may still carry a token), the
scenarios only assert what holds on both: walking the pages yields every matching job once, newest first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from events import ErrorInfo
from spectra.bulk.models import (
    BULK_TRANSITIONS,
    BulkCounts,
    BulkJob,
    BulkOperation,
    BulkState,
    ExportFile,
    JobSource,
    KeyedBatch,
    LoadPlan,
    SourceFile,
    new_bulk_job_id,
)
from spectra.bulk.store import BulkJobStore, position_of
from spectra.dynamo import ListPosition
from spectra.jobs import utcnow
from tests.fixtures.aws import table_from_template
from tests.unit.fakes import FakeBulkJobStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["fake", "dynamodb"])
def store(request):
    if request.param == "fake":
        yield FakeBulkJobStore()
        return
    aws = request.getfixturevalue("local_aws")
    with table_from_template(aws, "BulkJobsTable", "bulk-contract-") as (client, table):  # the index is its own
        yield BulkJobStore(client, table)


def make_job(
    tenant: str = "acme",
    *,
    at: datetime = T0,
    operation: BulkOperation = BulkOperation.INSERT,
    state: BulkState = BulkState.OPEN,
    **fields,
) -> BulkJob:
    return BulkJob(
        job_id=new_bulk_job_id(),
        tenant_id=tenant,
        db_user="tenant_acme",
        object="accounts",
        operation=operation,
        external_id_field="id" if operation.needs_external_id else None,
        state=state,
        created_at=at,
        updated_at=at,
        **fields,
    )


PATHS = {
    BulkState.OPEN: [],
    BulkState.UPLOAD_COMPLETE: [BulkState.UPLOAD_COMPLETE],
    BulkState.IN_PROGRESS: [BulkState.UPLOAD_COMPLETE, BulkState.IN_PROGRESS],
    BulkState.JOB_COMPLETE: [BulkState.UPLOAD_COMPLETE, BulkState.IN_PROGRESS, BulkState.JOB_COMPLETE],
    BulkState.FAILED: [BulkState.FAILED],
    BulkState.ABORTED: [BulkState.ABORTED],
}


def in_state(store, state: BulkState, **fields) -> BulkJob:
    """A job brought from Open to ``state`` through legal transitions only."""
    job = make_job(**fields)
    store.create(job)
    for step in PATHS[state]:
        assert store.transition(job.job_id, step) is not None
    return store.get(job.job_id)


def pending(store, cutoff: datetime | None = None, *, limit: int = 100) -> dict[str, datetime]:
    page = store.pending_before(cutoff or utcnow() + timedelta(days=1), limit=limit)
    return {entry.job_id: entry.pending_since for entry in page.jobs}


# -- create and read ------------------------------------------------------------------------------------------------


def test_a_created_job_reads_back_equal(store):
    job = make_job(
        source=JobSource.S3_DROP,
        object_key="acme/accounts/a b.csv",
        state=BulkState.UPLOAD_COMPLETE,
        files=[SourceFile(bucket="ingest", key="acme/accounts/a b.csv", size=12, gzip=False)],
        queued_at=T0,
    )
    assert store.create(job) == (job, True)
    assert store.get(job.job_id) == job
    assert store.get_for_tenant("acme", job.job_id) == job


def test_another_tenants_job_and_unknown_ids_are_not_found(store):
    job = make_job("acme")
    store.create(job)
    assert store.get_for_tenant("globex", job.job_id) is None
    assert store.get("b_does_not_exist") is None
    assert store.get_for_tenant("acme", "b_does_not_exist") is None


def test_create_is_idempotent_on_the_id_and_never_overwrites(store):
    # a repeated S3 event derives the same job id: the second create must find the first job, changed or not
    job = make_job(state=BulkState.UPLOAD_COMPLETE)
    store.create(job)
    started = store.transition(job.job_id, BulkState.IN_PROGRESS, statement_id="s1")
    existing, created = store.create(job.model_copy(update={"object": "other"}))
    assert created is False
    assert existing == started == store.get(job.job_id)


def _made_long_ago(monkeypatch, store, job: BulkJob) -> BulkJob:
    """``job`` created a day past its record's life (``JOB_TTL``) ago: expired, and not deleted yet (DynamoDB's TTL
    deletes within days; moto never does)."""
    from spectra.bulk import store as bulk_store
    from tests.unit import fakes

    long_ago = utcnow() - bulk_store.JOB_TTL - timedelta(days=1)
    for module in (bulk_store, fakes):
        monkeypatch.setattr(module, "utcnow", lambda: long_ago)
    made, _ = store.create(job.model_copy(update={"created_at": long_ago, "updated_at": long_ago}))
    monkeypatch.undo()
    return made


def test_a_job_past_its_records_life_is_gone_to_its_tenant_before_the_ttl_deletes_it(store, monkeypatch):
    """The README keeps a bulk job's record 30 days; its tenant's GET and listing answered it until DynamoDB's TTL
    deleted it, days later. The pipeline's own reads (``get``: the reconciler, the completion consumer) still see it."""
    old = _made_long_ago(monkeypatch, store, make_job(state=BulkState.FAILED))
    new = make_job(at=utcnow())
    store.create(new)
    assert store.get_for_tenant("acme", old.job_id) is None
    assert store.get_for_tenant("acme", new.job_id) == new
    assert flat(walk(store, "acme", limit=1)) == [new.job_id]
    assert flat(walk(store, "acme", limit=5, state=BulkState.OPEN)) == [new.job_id]
    assert store.get(old.job_id) == old


def test_an_id_past_its_records_life_makes_a_new_job(store, monkeypatch):
    """An Idempotency-Key names its bulk job's id (``Caller.keyed_id``) for as long as the record lives (30 days). The
    create of a month later found the expired record, not yet deleted, and answered it: a nightly load reusing its
    key got last month's job back (JobComplete, as a repeat of its own request) and was never made."""
    old = _made_long_ago(monkeypatch, store, make_job(state=BulkState.UPLOAD_COMPLETE))
    store.transition(old.job_id, BulkState.FAILED, error=ErrorInfo(code="x", message="last month's"))
    again = make_job(at=utcnow()).model_copy(update={"job_id": old.job_id})
    assert store.create(again) == (again, True)
    assert store.get(old.job_id) == store.get_for_tenant("acme", old.job_id) == again
    assert store.create(again.model_copy(update={"object": "other"})) == (again, False)  # alive: never overwritten


# -- transitions ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", list(BulkState))
@pytest.mark.parametrize("target", list(BulkState))
def test_transitions_follow_the_table(store, source, target):
    job = in_state(store, source)
    moved = store.transition(job.job_id, target)
    if target in BULK_TRANSITIONS[source]:
        assert moved is not None and moved.state is target
        assert store.get(job.job_id) == moved
    else:
        assert moved is None
        assert store.get(job.job_id) == job  # a refused move changes nothing


def test_transition_can_be_narrowed_to_the_state_the_caller_saw(store):
    job = in_state(store, BulkState.IN_PROGRESS)
    assert store.transition(job.job_id, BulkState.FAILED, expected={BulkState.UPLOAD_COMPLETE}) is None
    assert store.get(job.job_id).state is BulkState.IN_PROGRESS
    assert store.transition(job.job_id, BulkState.FAILED, expected={BulkState.IN_PROGRESS}).state is BulkState.FAILED
    assert store.transition("b_missing", BulkState.FAILED) is None


def test_an_unstarted_transition_is_refused_once_a_statement_is_recorded(store):
    job = in_state(store, BulkState.IN_PROGRESS)
    store.update(job.job_id, [BulkState.IN_PROGRESS], statement_id="stmt-1")
    assert store.transition(job.job_id, BulkState.FAILED, unstarted=True) is None
    assert store.get(job.job_id).state is BulkState.IN_PROGRESS
    other = in_state(store, BulkState.IN_PROGRESS)
    assert store.transition(other.job_id, BulkState.FAILED, unstarted=True).state is BulkState.FAILED


def test_a_plan_is_recorded_only_while_no_abort_is_asked_and_no_statement_recorded(store):
    """The executor's last look before the load: an abort never overwrites another attempt's plan (its
    ``planned_at`` tells an ending that ran nothing to wait: spectra.bulk.lifecycle.being_started)."""
    plan = LoadPlan(columns=["id"], copies=[(0, 1)], planned_at=T0)
    job = in_state(store, BulkState.IN_PROGRESS)
    assert store.record_plan(job.job_id, plan).plan == plan == store.get(job.job_id).plan
    aborted = in_state(store, BulkState.IN_PROGRESS)
    store.update(aborted.job_id, [BulkState.IN_PROGRESS], abort_requested_at=T0)
    recorded = in_state(store, BulkState.IN_PROGRESS)
    store.update(recorded.job_id, [BulkState.IN_PROGRESS], statement_id="stmt-1")
    closed = in_state(store, BulkState.UPLOAD_COMPLETE)
    for refused in (aborted, recorded, closed):
        assert store.record_plan(refused.job_id, plan) is None
        assert store.get(refused.job_id).plan is None


def test_an_ending_can_be_conditional_on_the_plan_it_saw(store):
    """An ending that ran nothing is written only while the job's plan is the one it decided on (none included):
    another attempt's plan written since refuses it (spectra.bulk.lifecycle._end_unstarted)."""
    plan = LoadPlan(columns=["id"], copies=[(0, 1)], planned_at=T0)
    unplanned = in_state(store, BulkState.IN_PROGRESS)
    store.record_plan(unplanned.job_id, plan)
    assert store.transition(unplanned.job_id, BulkState.FAILED, unstarted=True, plan_seen=None) is None
    other = plan.model_copy(update={"planned_at": T0 + timedelta(seconds=1)})
    assert store.transition(unplanned.job_id, BulkState.FAILED, unstarted=True, plan_seen=other) is None
    assert store.get(unplanned.job_id).state is BulkState.IN_PROGRESS
    assert store.transition(unplanned.job_id, BulkState.FAILED, unstarted=True, plan_seen=plan).state is (
        BulkState.FAILED
    )
    never_planned = in_state(store, BulkState.IN_PROGRESS)
    assert store.transition(never_planned.job_id, BulkState.FAILED, plan_seen=None).state is BulkState.FAILED


def test_uploads_are_counted_only_while_the_job_is_open(store):
    job = in_state(store, BulkState.OPEN)
    assert job.uploads == 0
    assert store.count_upload(job.job_id).uploads == 1
    assert store.count_upload(job.job_id).uploads == 2
    assert store.get(job.job_id).uploads == 2
    store.transition(job.job_id, BulkState.UPLOAD_COMPLETE)
    assert store.count_upload(job.job_id) is None
    assert store.get(job.job_id).uploads == 2
    assert store.count_upload("b_missing") is None


@pytest.mark.parametrize("recorded_before_keys", [False, True])
def test_a_keyed_upload_is_counted_once_with_its_record(store, recorded_before_keys):
    """An upload counted under an Idempotency-Key's name records it in the same write, and the name is counted once;
    a job recorded before keyed uploads existed (no ``keyed_batches`` map, whose nested path DynamoDB refuses to
    set) takes them all the same."""
    job = in_state(store, BulkState.OPEN)
    if recorded_before_keys:
        forget_keyed_batches(store, job.job_id)
    first = KeyedBatch(key="acme/b/uploads/1.csv", digest="d1")
    counted = store.count_upload(job.job_id, limit=3, keyed=("k1", first))
    assert (counted.uploads, counted.keyed_batches) == (1, {"k1": first})
    assert store.count_upload(job.job_id, limit=3, keyed=("k1", first)) is None  # a repeat: not counted again
    assert store.count_upload(job.job_id, limit=3).uploads == 2  # a batch without a key beside it
    second = KeyedBatch(key="acme/b/uploads/2.csv", digest="d2")
    assert store.count_upload(job.job_id, limit=3, keyed=("k2", second)).uploads == 3
    assert store.count_upload(job.job_id, limit=3, keyed=("k3", second)) is None  # the limit holds for keyed ones
    assert store.get(job.job_id).keyed_batches == {"k1": first, "k2": second}
    store.transition(job.job_id, BulkState.UPLOAD_COMPLETE)
    assert store.count_upload(job.job_id, keyed=("k4", second)) is None
    assert store.count_upload("b_missing", keyed=("k1", first)) is None
    assert store.get(job.job_id).uploads == 3


@pytest.mark.parametrize("recorded_before_keys", [False, True])
def test_a_keyed_batch_is_recorded_after_the_close_once(store, recorded_before_keys):
    """A keyed batch the close listed before its count was refused is recorded whatever the job's state, once (a
    name recorded already keeps its batch), without counting it; a missing job gets nothing."""
    job = in_state(store, BulkState.UPLOAD_COMPLETE)
    if recorded_before_keys:
        forget_keyed_batches(store, job.job_id)
    first = KeyedBatch(key="acme/b/uploads/1.csv", digest="d1")
    store.record_keyed_batch(job.job_id, "k1", first)
    store.record_keyed_batch(job.job_id, "k1", KeyedBatch(key="acme/b/uploads/2.csv", digest="d2"))
    recorded = store.get(job.job_id)
    assert (recorded.state, recorded.uploads, recorded.keyed_batches) == (BulkState.UPLOAD_COMPLETE, 0, {"k1": first})
    store.record_keyed_batch("b_missing", "k1", first)
    assert store.get("b_missing") is None


def forget_keyed_batches(store, job_id: str) -> None:
    """Make the stored job look as a job recorded before ``keyed_batches`` was."""
    if isinstance(store, FakeBulkJobStore):
        store._items[job_id].pop("keyed_batches", None)
        return
    store._db.update_item(
        TableName=store._table, Key={"job_id": {"S": job_id}}, UpdateExpression="REMOVE keyed_batches"
    )


def test_a_transition_can_be_conditional_on_the_batches_counted_and_withdrawn(store):
    job = in_state(store, BulkState.OPEN)
    assert store.transition(job.job_id, BulkState.ABORTED, uploads=job.model_copy(update={"uploads": 1})) is None
    store.count_upload(job.job_id)
    assert store.transition(job.job_id, BulkState.ABORTED, uploads=job) is None  # one counted since
    counted = store.get(job.job_id)
    assert store.withdraw(job.job_id, "acme/b/uploads/x.csv")
    assert store.transition(job.job_id, BulkState.ABORTED, uploads=counted) is None  # one withdrawn since
    assert store.get(job.job_id).state is BulkState.OPEN
    assert store.transition(job.job_id, BulkState.ABORTED, uploads=store.get(job.job_id)).state is BulkState.ABORTED


def test_a_batch_is_withdrawn_only_while_open_and_a_close_that_read_before_is_refused(store):
    """A take-back's look at the job, then its delete, let a close list the batch in between: the load failed on a
    file deleted from under it (the bulk concurrency review)."""
    job = in_state(store, BulkState.OPEN)
    store.count_upload(job.job_id)
    seen = store.get(job.job_id)
    assert store.withdraw(job.job_id, "acme/b/uploads/1.csv") and store.withdraw(job.job_id, "acme/b/uploads/2.csv")
    assert store.get(job.job_id).withdrawn_batches == ["acme/b/uploads/1.csv", "acme/b/uploads/2.csv"]
    assert store.close(seen, files=[]) is None
    assert store.close(store.get(job.job_id), files=[]).state is BulkState.UPLOAD_COMPLETE
    assert not store.withdraw(job.job_id, "acme/b/uploads/3.csv")
    assert len(store.get(job.job_id).withdrawn_batches) == 2


def test_outcome_attempts_are_counted_only_while_in_progress(store):
    job = in_state(store, BulkState.IN_PROGRESS)
    assert store.count_result_attempt(job.job_id).result_attempts == 1
    assert store.count_result_attempt(job.job_id).result_attempts == 2
    store.transition(job.job_id, BulkState.FAILED)
    assert store.count_result_attempt(job.job_id) is None


def test_counts_stop_at_their_limit(store):
    job = in_state(store, BulkState.OPEN)
    assert store.count_upload(job.job_id, limit=2).uploads == 1
    assert store.count_upload(job.job_id, limit=2).uploads == 2
    assert store.count_upload(job.job_id, limit=2) is None
    assert store.count_upload(job.job_id, limit=3).uploads == 3
    assert store.get(job.job_id).uploads == 3
    store.transition(job.job_id, BulkState.UPLOAD_COMPLETE)
    assert store.count_upload(job.job_id, limit=5) is None


def test_close_is_refused_once_an_upload_was_counted_after_the_read(store):
    """The UploadComplete that listed the batches before one more was stored must list again."""
    seen = in_state(store, BulkState.OPEN)
    batch = SourceFile(bucket="results", key="acme/b/uploads/1.csv", size=3)
    store.count_upload(seen.job_id)
    assert store.close(seen, files=[batch]) is None
    assert store.get(seen.job_id).state is BulkState.OPEN and store.get(seen.job_id).files == []
    again = store.get(seen.job_id)
    closed = store.close(again, files=[batch], queued_at=T0)
    assert (closed.state, closed.files, closed.queued_at) == (BulkState.UPLOAD_COMPLETE, [batch], T0)
    assert store.get(seen.job_id) == closed
    assert seen.job_id in pending(store)  # queued: the service owes it a load
    assert store.close(again, files=[]) is None  # closed once
    assert store.close(in_state(store, BulkState.ABORTED), files=[batch]) is None


def test_result_files_marked_ready_with_what_they_fall_short_of(store):
    job = in_state(store, BulkState.JOB_COMPLETE)
    short = ErrorInfo(code="results_mismatch", message="the files list 1 of 2 records")
    marked = store.mark_results_ready(job.job_id, BulkState.JOB_COMPLETE, error=short)
    assert (marked.results_ready, marked.error) == (True, short)
    assert store.get(job.job_id) == marked


def test_result_files_are_leased_to_one_writer_and_a_lost_writer_is_counted(store):
    job = in_state(store, BulkState.JOB_COMPLETE)
    first = store.lease_results(job, until=1000)
    assert (first.results_writer_until, first.results_writers_lost) == (1000, 0)
    assert store.lease_results(job, until=2000) is None  # read before the lease was taken: refused
    second = store.lease_results(first, until=2000)  # taken over (the caller found it expired)
    assert (second.results_writer_until, second.results_writers_lost) == (2000, 1)
    store.release_results(first)  # not the holder any more: nothing changes
    assert store.get(job.job_id) == second
    store.release_results(second)
    released = store.get(job.job_id)
    assert (released.results_writer_until, released.results_writers_lost) == (None, 1)
    third = store.lease_results(released, until=3000)
    assert (third.results_writer_until, third.results_writers_lost) == (3000, 1)  # given back, not lost
    ready = store.mark_results_ready(job.job_id, BulkState.JOB_COMPLETE, attempt="20261204T101500-0a1b2c3d4e5f")
    assert store.lease_results(ready, until=4000) is None  # written: nothing to lease
    assert ready.results_attempt == store.get(job.job_id).results_attempt == "20261204T101500-0a1b2c3d4e5f"


def test_a_writer_whose_lease_was_taken_over_does_not_point_the_routes_at_its_files(store):
    """Note 35's list: marking result files ready was conditional on the job's state only, so a writer whose lease
    ran out could re-point the served attempt at its own files after the run that took over marked its own."""
    job = in_state(store, BulkState.JOB_COMPLETE)
    first = store.lease_results(job, until=1000)
    second = store.lease_results(first, until=2000)  # taken over: the first writer's lease ran out
    late = "20261204T101500-0a1b2c3d4e5f"
    assert store.mark_results_ready(job.job_id, BulkState.JOB_COMPLETE, attempt=late, leased=first) is None
    assert store.get(job.job_id) == second
    ready = store.mark_results_ready(
        job.job_id, BulkState.JOB_COMPLETE, attempt="20261204T101600-1a2b3c4d5e6f", leased=second
    )
    assert ready.results_ready and ready.results_attempt == "20261204T101600-1a2b3c4d5e6f"
    assert store.mark_results_ready(job.job_id, BulkState.JOB_COMPLETE, attempt=late, leased=first) is None
    assert store.mark_results_ready(job.job_id, BulkState.JOB_COMPLETE, attempt=late, leased=second) is None
    assert store.get(job.job_id).results_attempt == "20261204T101600-1a2b3c4d5e6f"


def test_result_files_are_given_up_only_as_read(store):
    """Giving result files up is refused when a writer took them since the job was read (it writes them: given up
    under it, the routes answered 410 for files that exist), and once they are written."""
    job = in_state(store, BulkState.JOB_COMPLETE)
    leased = store.lease_results(job, until=1000)
    assert store.give_up_results(job, why="too late") is None  # read before the lease was taken
    assert store.get(job.job_id) == leased
    given_up = store.give_up_results(leased, why="too late")  # the lease as read (the writer's own give-up)
    assert (given_up.results_ready, given_up.results_unavailable) == (True, "too late")
    written = in_state(store, BulkState.JOB_COMPLETE)
    ready = store.mark_results_ready(written.job_id, BulkState.JOB_COMPLETE)
    assert store.give_up_results(written, why="too late") is None  # written meanwhile
    assert store.get(written.job_id) == ready and ready.results_unavailable is None


def test_changes_are_stored_as_models_and_read_back(store):
    job = in_state(store, BulkState.IN_PROGRESS)
    plan = LoadPlan(columns=["id", "name"], copies=[(1, 2), (3, 4)], applied_index=8, updated_index=7, outcome_index=9)
    planned = store.update(job.job_id, [BulkState.IN_PROGRESS], plan=plan)
    assert planned.plan == plan  # tuples survive as tuples (DynamoDB keeps lists)
    files = [ExportFile(key="acme/b/export/part_0000", rows=3, bytes=40)]
    finished = store.transition(
        job.job_id,
        BulkState.JOB_COMPLETE,
        expected={BulkState.IN_PROGRESS},
        completed_at=T0,
        statement_id="s1",
        counts=BulkCounts(processed=5, failed=2, created=3),
        export_files=files,
        export_columns=["id", "name"],
        results_ready=True,
    )
    assert finished == store.get(job.job_id)
    assert (finished.completed_at, finished.statement_id, finished.export_files) == (T0, "s1", files)
    assert finished.counts == BulkCounts(processed=5, failed=2, created=3)
    assert finished.results_ready is True and finished.updated_at > job.updated_at

    failed = in_state(store, BulkState.UPLOAD_COMPLETE)
    moved = store.transition(failed.job_id, BulkState.FAILED, error=ErrorInfo(code="bad_gzip", message="why"))
    assert store.get(failed.job_id).error == moved.error == ErrorInfo(code="bad_gzip", message="why")


def test_update_is_conditional_on_the_state_and_none_removes(store):
    job = in_state(store, BulkState.IN_PROGRESS)
    marked = store.update(job.job_id, [BulkState.IN_PROGRESS], abort_requested_at=T0)
    assert marked.abort_requested_at == T0 and marked.state is BulkState.IN_PROGRESS
    assert store.update(job.job_id, [BulkState.OPEN], statement_id="s1") is None
    assert store.get(job.job_id).statement_id is None
    assert store.update(job.job_id, [BulkState.IN_PROGRESS], abort_requested_at=None).abort_requested_at is None
    assert store.get(job.job_id).abort_requested_at is None
    assert store.update("b_missing", [BulkState.IN_PROGRESS], statement_id="s1") is None
    assert store.update(job.job_id, [], statement_id="s1") is None


# -- listing --------------------------------------------------------------------------------------------------------


def walk(store, tenant: str, *, limit: int, **filters) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = store.list_for_tenant(tenant, limit=limit, after=after, **filters)
        pages.append([j.job_id for j in page.jobs])
        assert len(page.jobs) <= limit
        after = page.resume_after
        if after is None:
            return pages


def flat(pages: list[list[str]]) -> list[str]:
    return [job_id for page in pages for job_id in page]


def test_listing_is_newest_first_and_pages(store):
    jobs = [make_job(at=T0 + timedelta(seconds=i, microseconds=250_000 * (i % 2))) for i in range(5)]
    for job in jobs:
        store.create(job)
    store.create(make_job("globex", at=T0 + timedelta(seconds=10)))
    newest_first = [j.job_id for j in reversed(jobs)]

    first = store.list_for_tenant("acme", limit=2)
    assert [j.job_id for j in first.jobs] == newest_first[:2]
    assert first.resume_after is not None
    pages = walk(store, "acme", limit=2)
    assert flat(pages) == newest_first
    assert [len(page) for page in pages[:2]] == [2, 2]
    assert walk(store, "acme", limit=10) == [newest_first]
    assert store.list_for_tenant("initech", limit=5).jobs == []


def test_listing_filters_by_state_and_operation_and_keeps_pages_full(store):
    kinds = [
        (BulkState.IN_PROGRESS, BulkOperation.INSERT),
        (BulkState.OPEN, BulkOperation.UPSERT),
        (BulkState.IN_PROGRESS, BulkOperation.UPSERT),
        (BulkState.OPEN, BulkOperation.INSERT),
        (BulkState.IN_PROGRESS, BulkOperation.UPSERT),
        (BulkState.FAILED, BulkOperation.UPSERT),
    ]
    jobs = [
        in_state(store, state, operation=operation, at=T0 + timedelta(seconds=i))
        for i, (state, operation) in enumerate(kinds)
    ]

    def expected(state=None, operation=None) -> list[str]:
        return [
            j.job_id
            for j in reversed(jobs)
            if (state is None or j.state is state) and (operation is None or j.operation is operation)
        ]

    running = store.list_for_tenant("acme", limit=2, state=BulkState.IN_PROGRESS)
    assert [j.job_id for j in running.jobs] == expected(BulkState.IN_PROGRESS)[:2]  # full, Open jobs between them
    assert running.resume_after is not None
    assert flat(walk(store, "acme", limit=2, state=BulkState.IN_PROGRESS)) == expected(BulkState.IN_PROGRESS)
    assert flat(walk(store, "acme", limit=1, operation=BulkOperation.UPSERT)) == expected(None, BulkOperation.UPSERT)
    both = {"state": BulkState.IN_PROGRESS, "operation": BulkOperation.UPSERT}
    assert flat(walk(store, "acme", limit=1, **both)) == expected(**both)
    assert store.list_for_tenant("acme", limit=5, state=BulkState.ABORTED).jobs == []
    assert store.list_for_tenant("acme", limit=5, operation=BulkOperation.QUERY).jobs == []


def test_the_state_filter_is_the_state_the_api_shows(store):
    """A JobComplete ingest job whose result files are still owed shows InProgress (BulkJob.shown_state), and the
    listing's filter agrees; files given up count as ready (they answer 410, nothing to wait for)."""
    at = iter(T0 + timedelta(seconds=i) for i in range(10))
    running = in_state(store, BulkState.IN_PROGRESS, at=next(at))
    owing = in_state(store, BulkState.JOB_COMPLETE, at=next(at))
    ready = in_state(store, BulkState.JOB_COMPLETE, at=next(at))
    store.mark_results_ready(ready.job_id, BulkState.JOB_COMPLETE)
    given_up = in_state(store, BulkState.JOB_COMPLETE, at=next(at))
    store.give_up_results(given_up, why="too large")
    query = in_state(store, BulkState.JOB_COMPLETE, operation=BulkOperation.QUERY, at=next(at))
    failed = in_state(store, BulkState.FAILED, at=next(at))  # its files are owed too, but Failed is Failed
    shown = {job.job_id: store.get(job.job_id).shown_state for job in (running, owing, ready, given_up, query, failed)}
    assert shown[owing.job_id] is BulkState.IN_PROGRESS and shown[query.job_id] is BulkState.JOB_COMPLETE

    for state in (BulkState.IN_PROGRESS, BulkState.JOB_COMPLETE, BulkState.FAILED):
        newest_first = [job_id for job_id, its in reversed(shown.items()) if its is state]
        assert flat(walk(store, "acme", limit=1, state=state)) == newest_first
        assert flat(walk(store, "acme", limit=5, state=state, ingest_only=True)) == [
            job_id for job_id in newest_first if job_id != query.job_id
        ]
    assert flat(walk(store, "acme", limit=5, state=BulkState.IN_PROGRESS, operation=BulkOperation.INSERT)) == [
        owing.job_id,
        running.job_id,
    ]


def test_listing_leaves_query_jobs_out_when_asked_for_ingest_jobs(store):
    operations = [BulkOperation.QUERY, BulkOperation.INSERT, BulkOperation.QUERY, BulkOperation.DELETE]
    jobs = [
        in_state(store, BulkState.JOB_COMPLETE, operation=operation, at=T0 + timedelta(seconds=i))
        for i, operation in enumerate(operations)
    ]
    ingest = [j.job_id for j in reversed(jobs) if j.operation is not BulkOperation.QUERY]
    assert flat(walk(store, "acme", limit=1, ingest_only=True)) == ingest
    assert [j.job_id for j in store.list_for_tenant("acme", limit=5, ingest_only=True).jobs] == ingest


def test_listing_keeps_one_doors_jobs_when_asked(store):
    sources = [JobSource.S3_DROP, JobSource.API, JobSource.API, JobSource.S3_DROP]
    jobs = [
        in_state(store, BulkState.JOB_COMPLETE, source=s, at=T0 + timedelta(seconds=i)) for i, s in enumerate(sources)
    ]
    dropped = [j.job_id for j in reversed(jobs) if j.source is JobSource.S3_DROP]
    assert [j.job_id for j in store.list_for_tenant("acme", limit=5, source=JobSource.S3_DROP).jobs] == dropped


def test_a_position_only_moves_within_the_callers_own_jobs(store):
    # the tenant comes from the caller, never from the position (page tokens are signed and checked before the
    # store is asked: spectra/tokens.py, tests/unit/test_bulk_service.py); acme's position used by globex: globex's
    for i in range(3):
        store.create(make_job(at=T0 + timedelta(seconds=i)))
    theirs = [make_job("globex", at=T0 + timedelta(seconds=i)) for i in range(2)]
    for job in theirs:
        store.create(job)
    position = store.list_for_tenant("acme", limit=1).resume_after
    assert isinstance(position, ListPosition) and position.job_id.startswith("b_")
    page = store.list_for_tenant("globex", limit=10, after=position)
    assert [j.job_id for j in page.jobs] == [j.job_id for j in reversed(theirs)]


# -- the pending index (what the reconciler reads) ------------------------------------------------------------------


def test_an_open_job_is_not_pending_and_a_queued_one_is_from_its_creation(store):
    opened = make_job(at=T0)
    dropped = make_job(at=T0 + timedelta(seconds=1), state=BulkState.UPLOAD_COMPLETE, source=JobSource.S3_DROP)
    store.create(opened)
    store.create(dropped)
    assert pending(store) == {dropped.job_id: dropped.created_at}  # an Open job waits for its tenant, not for us

    before = utcnow()
    store.transition(opened.job_id, BulkState.UPLOAD_COMPLETE)
    assert pending(store)[opened.job_id] >= before
    assert store.update(opened.job_id, [BulkState.UPLOAD_COMPLETE], statement_id=None) is not None
    assert pending(store)[opened.job_id] >= before  # a plain update keeps the job where it is


@pytest.mark.parametrize("order", ["event first", "results first"])
def test_a_terminal_job_is_pending_until_both_its_event_and_its_result_files_are_done(store, order):
    job = in_state(store, BulkState.FAILED)
    assert job.job_id in pending(store)
    assert store.mark_published(job.job_id, BulkState.JOB_COMPLETE) is None  # conditional on the state
    assert store.mark_results_ready(job.job_id, BulkState.ABORTED) is None
    first, second = (
        (store.mark_published, store.mark_results_ready)
        if order == "event first"
        else (store.mark_results_ready, store.mark_published)
    )
    halfway = first(job.job_id, BulkState.FAILED)
    assert job.job_id in pending(store)  # one of the two is still owed
    done = second(job.job_id, BulkState.FAILED)
    assert halfway is not None and done is not None
    assert (done.event_published, done.results_ready) == (True, True)
    assert pending(store) == {}
    assert store.get(job.job_id) == done


def test_a_job_ending_with_its_results_ready_leaves_the_index_with_its_event(store):
    job = in_state(store, BulkState.IN_PROGRESS)
    store.transition(job.job_id, BulkState.JOB_COMPLETE, results_ready=True)
    assert job.job_id in pending(store)
    store.mark_published(job.job_id, BulkState.JOB_COMPLETE)
    assert pending(store) == {}


def test_mark_checked_moves_a_job_back_only_in_its_state(store):
    job = make_job(at=T0, state=BulkState.UPLOAD_COMPLETE)
    store.create(job)
    later = T0 + timedelta(minutes=5)
    assert store.mark_checked(job.job_id, BulkState.IN_PROGRESS, later) is None
    assert pending(store) == {job.job_id: T0}
    checked = store.mark_checked(job.job_id, BulkState.UPLOAD_COMPLETE, later)
    assert checked.state is BulkState.UPLOAD_COMPLETE
    assert pending(store) == {job.job_id: later}
    assert store.get(job.job_id) == checked


def test_pending_before_is_oldest_first_strictly_below_the_cutoff(store):
    jobs = [make_job(at=T0 + timedelta(seconds=i), state=BulkState.UPLOAD_COMPLETE) for i in (3, 1, 2, 0)]
    for job in jobs:
        store.create(job)
    by_age = [j.job_id for j in sorted(jobs, key=lambda j: j.created_at)]

    page = store.pending_before(T0 + timedelta(seconds=2), limit=10)
    assert [e.job_id for e in page.jobs] == by_age[:2]
    assert [e.pending_since for e in page.jobs] == [T0, T0 + timedelta(seconds=1)]
    assert page.more is False

    limited = store.pending_before(T0 + timedelta(days=1), limit=3)
    assert [e.job_id for e in limited.jobs] == by_age[:3]
    assert limited.more is True


def test_a_write_past_dynamodbs_item_size_is_refused_and_changes_nothing(store):
    """DynamoDB's 400 KB per item, which the fake models: a plan that would take the job past it is a
    ValidationException, and the job stays as it was (a header kept whole once made a load crash here)."""
    job = store.create(make_job(state=BulkState.UPLOAD_COMPLETE))[0]
    started = store.transition(job.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    padded = LoadPlan(columns=["id", "name"], header=["id" + " " * 420_000, "name"])
    with pytest.raises(ClientError) as refused:
        store.update(job.job_id, [BulkState.IN_PROGRESS], plan=padded)
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert "item size" in refused.value.response["Error"]["Message"].lower()
    assert store.get(job.job_id) == started
    fits = LoadPlan(columns=["id", "name"], header=["id" + " " * 300_000, "name"])
    assert store.update(job.job_id, [BulkState.IN_PROGRESS], plan=fits).plan == fits


def test_a_listing_resumes_after_the_position_of_a_job_it_read(store):
    """A page the service cuts short (its texts past Lambda's answer) resumes at ``position_of`` the last job kept,
    a position made from the job as read back, not from the index's own key."""
    made = [store.create(make_job(at=T0 + timedelta(seconds=n, microseconds=n)))[0] for n in range(3)]
    first = store.list_for_tenant("acme", limit=3).jobs
    assert [j.job_id for j in first] == [j.job_id for j in reversed(made)]
    rest = store.list_for_tenant("acme", limit=3, after=position_of(first[0])).jobs
    assert [j.job_id for j in rest] == [j.job_id for j in first[1:]]
