"""One scenario suite, two job stores: the in-memory fake the unit tier uses and the real JobStore on DynamoDB.

If a scenario passes on DynamoDB (moto) and fails on the fake, the fake has drifted and the unit tests built on it
prove less than they claim. The table is created from template.yaml's own ``JobsTable`` (keys, attributes, indexes),
so it cannot drift from the infrastructure either.

Where DynamoDB itself is allowed to differ from moto (a page that stops exactly at the last item may still carry a
LastEvaluatedKey on AWS), the scenarios only assert what holds on both: walking the pages yields every item once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from events import ErrorInfo, JobStatus, ResultFormat
from spectra.errors import Conflict
from spectra.job_store import JobStore, ListPosition, request_fingerprint
from spectra.jobs import TRANSITIONS, Job, JobResult, ResultFile, new_job_id, utcnow
from tests.fixtures.aws import table_from_template
from tests.unit.fakes import FakeJobStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["fake", "dynamodb"])
def store(request):
    if request.param == "fake":
        yield FakeJobStore()
        return
    # a fresh table: the pending index spans every tenant
    with table_from_template(request.getfixturevalue("local_aws"), "JobsTable", "jobs-contract-") as (client, table):
        yield JobStore(client, table)


def make_job(tenant: str = "acme", *, at: datetime = T0, key: str | None = None, sql: str = "select 1") -> Job:
    return Job(
        job_id=new_job_id(),
        tenant_id=tenant,
        db_user="acme_user",
        sql=sql,
        format=ResultFormat.CSV,
        created_at=at,
        updated_at=at,
        idempotency_key=key,
    )


def in_state(store, status: JobStatus, **fields) -> Job:
    """A job brought to ``status`` through legal transitions only."""
    job = make_job(**fields)
    store.create(job)
    path = {
        JobStatus.QUEUED: [],
        JobStatus.SUBMITTED: [JobStatus.SUBMITTED],
        JobStatus.COMPLETED: [JobStatus.SUBMITTED, JobStatus.COMPLETED],
        JobStatus.FAILED: [JobStatus.FAILED],
        JobStatus.CANCELLED: [JobStatus.CANCELLED],
    }[status]
    for step in path:
        assert store.transition(job.job_id, step) is not None
    return store.get(job.job_id)


# -- create and read ------------------------------------------------------------------------------------------------


def test_a_created_job_reads_back_equal(store):
    job = make_job()
    assert store.create(job) == (job, True)
    assert store.get(job.job_id) == job
    assert store.get_for_tenant("acme", job.job_id) == job


def test_another_tenants_job_and_unknown_ids_are_not_found(store):
    job = make_job("acme", key="k1")
    store.create(job)
    assert store.get_for_tenant("globex", job.job_id) is None
    assert store.get("j_does_not_exist") is None
    assert store.get("idem#acme#whatever") is None  # idempotency records are never jobs


def test_a_job_id_is_created_once_and_a_repeated_write_is_harmless(store):
    # an SDK retry of a PutItem whose first response was lost must not turn a created job into an error
    job = make_job()
    store.create(job)
    store.transition(job.job_id, JobStatus.SUBMITTED)
    assert store.create(job) == (job, True)
    assert store.get(job.job_id).status is JobStatus.SUBMITTED  # the repeat did not overwrite anything


# -- idempotency ----------------------------------------------------------------------------------------------------


def test_a_repeat_with_the_same_key_returns_the_original(store):
    fingerprint = request_fingerprint("select 1", [], "csv")
    first, created = store.create(make_job(key="k1"), fingerprint=fingerprint)
    repeat, created_again = store.create(make_job(key="k1"), fingerprint=fingerprint)
    assert (created, created_again) == (True, False)
    assert repeat == first
    assert [j.job_id for j in store.list_for_tenant("acme", limit=10).jobs] == [first.job_id]


def test_a_key_reused_for_another_request_is_a_conflict(store):
    first, _ = store.create(make_job(key="k1"), fingerprint=request_fingerprint("select 1", [], "csv"))
    with pytest.raises(Conflict) as raised:
        store.create(make_job(key="k1", sql="select 2"), fingerprint=request_fingerprint("select 2", [], "csv"))
    assert raised.value.details["job_id"] == first.job_id


def test_the_job_a_key_made_is_found_without_writing(store):
    fingerprint = request_fingerprint("select 1", [], "csv")
    assert store.repeat_of(make_job(key="k1"), fingerprint=fingerprint) is None  # free: nothing is taken
    assert store.repeat_of(make_job(), fingerprint=fingerprint) is None  # no key
    first, created = store.create(make_job(key="k1"), fingerprint=fingerprint)
    assert created and store.repeat_of(make_job(key="k1"), fingerprint=fingerprint) == first
    with pytest.raises(Conflict):
        store.repeat_of(make_job(key="k1"), fingerprint=request_fingerprint("select 2", [], "csv"))
    assert store.repeat_of(make_job(tenant="globex", key="k1"), fingerprint=fingerprint) is None


def test_a_repeat_without_fingerprint_returns_the_original(store):
    first, _ = store.create(make_job(key="k1"), fingerprint="f1")
    assert store.create(make_job(key="k1")) == (first, False)


def test_a_key_is_free_again_once_its_day_is_over(store, monkeypatch):
    """Records carry a 24-hour expiry that DynamoDB's TTL enforces lazily (within days): a key used two days ago is
    a new request's, whatever record may still be in the table."""
    from spectra import job_store
    from tests.unit import fakes

    two_days_ago = utcnow() - timedelta(days=2)
    for module in (job_store, fakes):
        monkeypatch.setattr(module, "utcnow", lambda: two_days_ago)
    old, _ = store.create(make_job(key="k1"), fingerprint="f1")
    monkeypatch.undo()
    new, created = store.create(make_job(key="k1", sql="select 2"), fingerprint="f2")
    assert created is True and new.job_id != old.job_id
    assert store.create(make_job(key="k1", sql="select 2"), fingerprint="f2") == (new, False)


def test_keys_are_scoped_to_the_tenant(store):
    mine, _ = store.create(make_job("acme", key="k1"), fingerprint="f1")
    theirs, created = store.create(make_job("globex", key="k1"), fingerprint="f2")
    assert created is True
    assert theirs.job_id != mine.job_id


def test_keys_are_scoped_to_the_tenants_generation(store):
    """A tenant deleted and created again under the same id is another tenant: its predecessor's key is not its."""
    before, _ = store.create(make_job(key="k1").model_copy(update={"tenant_generation": "g1"}), fingerprint="f1")
    after, created = store.create(make_job(key="k1").model_copy(update={"tenant_generation": "g2"}), fingerprint="f1")
    assert created is True and after.job_id != before.job_id
    again, created_again = store.create(make_job(key="k1").model_copy(update={"tenant_generation": "g2"}))
    assert (again.job_id, created_again) == (after.job_id, False)


# -- transitions ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_transitions_follow_the_table(store, source, target):
    job = in_state(store, source)
    moved = store.transition(job.job_id, target)
    if target in TRANSITIONS[source]:
        assert moved is not None
        assert moved.status is target
        assert store.get(job.job_id).status is target
    else:
        assert moved is None
        assert store.get(job.job_id) == job  # a refused move changes nothing


def test_transition_stores_changes_as_models(store):
    job = in_state(store, JobStatus.SUBMITTED)
    result = JobResult(
        bucket="b",
        prefix="acme/j/",
        manifest_key="acme/j/manifest.json",
        files=[ResultFile(key="acme/j/part-00000.csv.gz", rows=2, bytes=40)],
        row_count=2,
        bytes=40,
        columns=[{"name": "a", "type": "int4"}],
        inline=True,
    )
    finished = store.transition(job.job_id, JobStatus.COMPLETED, completed_at=T0, result=result, statement_id="s1")
    assert finished == store.get(job.job_id)
    assert (finished.result, finished.completed_at, finished.statement_id) == (result, T0, "s1")
    assert finished.updated_at > job.updated_at

    failed_job = in_state(store, JobStatus.QUEUED)
    failed = store.transition(failed_job.job_id, JobStatus.FAILED, error={"code": "x", "message": "why"})
    assert failed.error == ErrorInfo(code="x", message="why")


def test_transition_can_be_narrowed_to_the_state_the_caller_saw(store):
    job = in_state(store, JobStatus.SUBMITTED)
    assert store.transition(job.job_id, JobStatus.CANCELLED, expected={JobStatus.QUEUED}) is None
    assert store.get(job.job_id).status is JobStatus.SUBMITTED
    moved = store.transition(job.job_id, JobStatus.CANCELLED, expected={JobStatus.SUBMITTED})
    assert moved.status is JobStatus.CANCELLED


def test_update_is_conditional_on_the_state_and_none_removes(store):
    job = in_state(store, JobStatus.SUBMITTED)
    marked = store.update(job.job_id, [JobStatus.SUBMITTED], cancel_requested_at=T0)
    assert marked.cancel_requested_at == T0 and marked.status is JobStatus.SUBMITTED
    assert store.update(job.job_id, [JobStatus.QUEUED], statement_id="s1") is None
    assert store.get(job.job_id).statement_id is None
    cleared = store.update(job.job_id, [JobStatus.SUBMITTED], cancel_requested_at=None)
    assert cleared.cancel_requested_at is None
    assert store.update("j_missing", [JobStatus.SUBMITTED], statement_id="s1") is None
    assert store.update(job.job_id, [], statement_id="s1") is None


# -- listing --------------------------------------------------------------------------------------------------------


def walk(store, tenant: str, *, limit: int, status: JobStatus | None = None) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = store.list_for_tenant(tenant, limit=limit, status=status, after=after)
        pages.append([j.job_id for j in page.jobs])
        after = page.resume_after
        if after is None:
            return pages


def test_listing_is_newest_first_and_pages(store):
    jobs = [make_job(at=T0 + timedelta(seconds=i)) for i in range(5)]
    for job in jobs:
        store.create(job)
    store.create(make_job("globex", at=T0 + timedelta(seconds=10)))
    newest_first = [j.job_id for j in reversed(jobs)]

    first = store.list_for_tenant("acme", limit=2)
    assert [j.job_id for j in first.jobs] == newest_first[:2]
    assert first.resume_after is not None
    pages = walk(store, "acme", limit=2)
    assert [job_id for page in pages for job_id in page] == newest_first
    assert all(len(page) == 2 for page in pages[:2])
    assert walk(store, "acme", limit=10) == [newest_first]


def test_listing_filters_by_status_and_keeps_pages_full(store):
    states = [JobStatus.SUBMITTED, JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.QUEUED, JobStatus.SUBMITTED]
    jobs = [in_state(store, state, at=T0 + timedelta(seconds=i)) for i, state in enumerate(states)]
    submitted = [j.job_id for j in reversed(jobs) if j.status is JobStatus.SUBMITTED]

    page = store.list_for_tenant("acme", limit=2, status=JobStatus.SUBMITTED)
    assert [j.job_id for j in page.jobs] == submitted[:2]  # full, although a QUEUED job lies between them
    assert page.resume_after is not None
    assert [i for p in walk(store, "acme", limit=2, status=JobStatus.SUBMITTED) for i in p] == submitted
    assert store.list_for_tenant("acme", limit=5, status=JobStatus.FAILED).jobs == []


def test_a_position_only_moves_within_the_callers_own_jobs(store):
    # the tenant comes from the caller, never from the position: acme's position used by globex lists globex's jobs
    for i in range(3):
        store.create(make_job(at=T0 + timedelta(seconds=i)))
    theirs = [make_job("globex", at=T0 + timedelta(seconds=i)) for i in range(2)]
    for job in theirs:
        store.create(job)
    position = store.list_for_tenant("acme", limit=1).resume_after
    assert isinstance(position, ListPosition) and position.job_id.startswith("j_")
    page = store.list_for_tenant("globex", limit=10, after=position)
    assert {j.tenant_id for j in page.jobs} <= {"globex"}
    assert [j.job_id for j in page.jobs] == [j.job_id for j in reversed(theirs)]


def test_a_job_past_its_records_life_is_gone_to_its_tenant_before_the_ttl_deletes_it(store, monkeypatch):
    """A job's record lives 30 days (``expires_at``), the README's promise; DynamoDB's TTL deletes it days later, and
    reads and queries return it until then (moto never deletes it). Its tenant's GET and listing took it for alive
    meanwhile. The pipeline's own reads (the reconciler, the completion consumer) still see it, as they would see any
    record the TTL has not deleted: what it owes them is not the client's to cut short."""
    from spectra import job_store
    from tests.unit import fakes

    long_ago = utcnow() - job_store.JOB_TTL - timedelta(days=1)
    for module in (job_store, fakes):
        monkeypatch.setattr(module, "utcnow", lambda: long_ago)
    old = make_job(at=long_ago)
    store.create(old)
    monkeypatch.undo()
    new = make_job(at=utcnow())
    store.create(new)
    assert store.get_for_tenant("acme", old.job_id) is None
    assert store.get_for_tenant("acme", new.job_id) == new
    assert [i for p in walk(store, "acme", limit=1) for i in p] == [new.job_id]
    assert [i for p in walk(store, "acme", limit=5, status=JobStatus.QUEUED) for i in p] == [new.job_id]
    assert store.get(old.job_id) == old


# -- the pending index (what the reconciler reads) ------------------------------------------------------------------


def pending(store, cutoff: datetime | None = None, *, limit: int = 100) -> dict[str, datetime]:
    page = store.pending_before(cutoff or utcnow() + timedelta(days=1), limit=limit)
    return {entry.job_id: entry.pending_since for entry in page.jobs}


def test_a_job_is_pending_until_its_terminal_event_is_published(store):
    job = make_job(at=T0)
    store.create(job)
    assert pending(store) == {job.job_id: T0}

    before = utcnow()
    store.transition(job.job_id, JobStatus.SUBMITTED)
    assert pending(store)[job.job_id] >= before
    store.transition(job.job_id, JobStatus.FAILED)
    assert job.job_id in pending(store)  # terminal but its event is not out yet
    assert store.mark_published(job.job_id, JobStatus.SUBMITTED) is None  # conditional on the status
    published = store.mark_published(job.job_id, JobStatus.FAILED)
    assert published.event_published is True
    assert pending(store) == {}


def test_result_attempts_are_counted_while_submitted_and_racing_copies_each_count(store):
    job = make_job(at=T0)
    store.create(job)
    assert store.count_result_attempt(job.job_id) is None  # QUEUED: no statement, no result to attempt
    store.transition(job.job_id, JobStatus.SUBMITTED, expected={JobStatus.QUEUED}, statement_id="s-1")
    assert [store.count_result_attempt(job.job_id).result_attempts for _ in range(3)] == [1, 2, 3]
    if isinstance(store, JobStore):  # the fake serves one thread at a time
        with ThreadPoolExecutor(8) as pool:  # copies of one status event, each counting at once
            list(pool.map(lambda _: store.count_result_attempt(job.job_id), range(8)))
        assert store.get(job.job_id).result_attempts == 11
    store.transition(job.job_id, JobStatus.FAILED, expected={JobStatus.SUBMITTED})
    assert store.count_result_attempt(job.job_id) is None
    assert store.count_result_attempt("j_missing") is None


def test_mark_checked_moves_a_job_back_only_in_its_state(store):
    job = make_job(at=T0)
    store.create(job)
    later = T0 + timedelta(minutes=5)
    assert store.mark_checked(job.job_id, JobStatus.SUBMITTED, later) is None
    assert pending(store) == {job.job_id: T0}
    assert store.mark_checked(job.job_id, JobStatus.QUEUED, later).status is JobStatus.QUEUED
    assert pending(store) == {job.job_id: later}


def test_pending_before_is_oldest_first_below_the_cutoff(store):
    jobs = [make_job(at=T0 + timedelta(seconds=i)) for i in (3, 1, 2, 0)]
    for job in jobs:
        store.create(job)
    by_age = [j.job_id for j in sorted(jobs, key=lambda j: j.created_at)]

    page = store.pending_before(T0 + timedelta(seconds=2), limit=10)  # strictly before: the 2 s and 3 s jobs wait
    assert [e.job_id for e in page.jobs] == by_age[:2]
    assert page.more is False

    limited = store.pending_before(T0 + timedelta(days=1), limit=3)
    assert [e.job_id for e in limited.jobs] == by_age[:3]
    assert limited.more is True


def test_an_unstarted_transition_fails_once_the_job_has_a_statement(store):
    job = make_job()
    store.create(job)
    store.transition(job.job_id, JobStatus.SUBMITTED)
    store.update(job.job_id, [JobStatus.SUBMITTED], statement_id="stmt-1")
    assert store.transition(job.job_id, JobStatus.FAILED, unstarted=True) is None
    other = make_job()
    store.create(other)
    store.transition(other.job_id, JobStatus.SUBMITTED)
    assert store.transition(other.job_id, JobStatus.FAILED, unstarted=True).status is JobStatus.FAILED
