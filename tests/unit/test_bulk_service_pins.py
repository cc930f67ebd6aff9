"""Bulk job behaviour no test held before (found by mutation testing spectra/bulk/service.py): an UploadComplete that
finds its job Open too long while another request aborts it is a 409 naming the state the job ended in (Aborted); the
jobType filter lists only its kind, narrowed by an operation of that kind, and is a 400 with one of the other; a
listing page carries texts of exactly 5 MiB and ends before the job one byte past, and never pages past ApiPageMax; an
abort of a job running with no statement yet asks the warehouse nothing, and one whose own write fails is an error
leaving the job Open; UploadComplete lists the batches five times while batches keep arriving (closing at exactly the
batch limit), then is a 429; a batch past the limit counts as on its way back for 60 s to the microsecond; a job is
Open for 7 days less an hour to the microsecond."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta

import pytest

from spectra.bulk.models import BulkOperation, BulkState, JobType
from spectra.bulk.service import NewJob, change_state, create_job, get_job, list_jobs
from spectra.bulk.uploads import upload_batch
from spectra.errors import Conflict, InvalidRequest, Throttled
from spectra.jobs import utcnow
from tests.unit.bulk_helpers import T0, bulk_job
from tests.unit.test_bulk_service import _opened_ago, aborted_while_listing, acme_ports, caller, new_insert

pytestmark = pytest.mark.unit

CSV = b"id,name\n1,Ann\n"


@pytest.fixture
def ports():
    return acme_ports()


def test_a_close_of_a_job_open_too_long_that_another_abort_ends_first_names_the_aborted_state(ports, monkeypatch):
    """UploadComplete on a job Open for 7 days aborts it; when the client's own abort lands while this request lists
    the batches, the answer is still a 409 whose details give the state the job ended in, Aborted, not the Open
    state this request read."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    _opened_ago(ports, job.job_id, timedelta(days=8))
    aborted_while_listing(ports, monkeypatch, job.job_id)
    with pytest.raises(Conflict) as refused:
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert refused.value.details == {"state": "Aborted"}
    assert get_job(ports, caller(ports), job.job_id).state is BulkState.ABORTED


def _listed(ports, **filters) -> set[str]:
    filters = {"state": None, "operation": None, "limit": 20, "next_token": None} | filters
    return {job.job_id for job in list_jobs(ports, caller(ports), **filters).jobs}


def test_a_job_type_filter_lists_only_its_kind_and_takes_an_operation_of_that_kind(ports):
    """Bulk 2.0's jobType: V2Ingest lists the loads (insert and delete here), V2Query the query jobs; an operation of
    the same kind narrows the listing to that operation."""
    insert, delete = new_insert(ports), new_insert(ports, BulkOperation.DELETE, external_id_field="id")
    query = create_job(ports, caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))[0]
    assert _listed(ports, job_type=JobType.V2_INGEST) == {insert.job_id, delete.job_id}
    assert _listed(ports, job_type=JobType.V2_QUERY) == {query.job_id}
    assert _listed(ports, job_type=JobType.V2_INGEST, operation=BulkOperation.DELETE) == {delete.job_id}
    assert _listed(ports, job_type=JobType.V2_QUERY, operation=BulkOperation.QUERY) == {query.job_id}


@pytest.mark.parametrize(
    ("job_type", "operation"),
    [(JobType.V2_QUERY, BulkOperation.INSERT), (JobType.V2_INGEST, BulkOperation.QUERY)],
)
def test_a_job_type_filter_with_an_operation_of_the_other_kind_is_a_400_naming_the_operation(
    ports, job_type, operation
):
    """The two filters together would list nothing: the request is refused, naming the operation it gave."""
    new_insert(ports)
    with pytest.raises(InvalidRequest) as refused:
        _listed(ports, job_type=job_type, operation=operation)
    assert refused.value.details == {"field": "operation", "value": operation.value}


def _query_jobs(ports, last_query_bytes: int) -> str:
    """52 query jobs whose 100,000-byte queries each take 100,026 bytes of a page's texts, and an older one whose
    query is ``last_query_bytes`` long (listed last, newest first); the older one's id."""
    generation = ports.tenants.get("acme").generation
    for n in range(52):
        job = bulk_job(
            BulkOperation.QUERY,
            query="x" * 100_000,
            tenant_generation=generation,
            created_at=T0 + timedelta(hours=n + 1),
        )
        ports.bulk.jobs.create(job)
    oldest = bulk_job(BulkOperation.QUERY, query="x" * last_query_bytes, tenant_generation=generation, created_at=T0)
    return ports.bulk.jobs.create(oldest)[0].job_id


def test_a_listing_page_carries_texts_of_exactly_5_mib_whole(ports):
    """README's cap on a listing page's texts is 5 MiB: 52 queries of 100,026 bytes and one of 41,528 (its 41,502
    bytes of query) make exactly 5,242,880 bytes, and the page lists all 53 with no next page."""
    oldest = _query_jobs(ports, 41_502)
    page = list_jobs(ports, caller(ports), state=None, operation=None, limit=100, next_token=None)
    assert (len(page.jobs), page.jobs[-1].job_id, page.next_token) == (53, oldest, None)


def test_a_listing_page_one_byte_past_5_mib_ends_before_the_job_that_passes_it(ports):
    """One byte more (a query of 41,503 bytes) and the page ends at the 52nd job, its token resuming at the 53rd."""
    oldest = _query_jobs(ports, 41_503)
    page = list_jobs(ports, caller(ports), state=None, operation=None, limit=100, next_token=None)
    assert len(page.jobs) == 52 and oldest not in {job.job_id for job in page.jobs}
    rest = list_jobs(ports, caller(ports), state=None, operation=None, limit=100, next_token=page.next_token)
    assert ([job.job_id for job in rest.jobs], rest.next_token) == ([oldest], None)


def test_an_abort_of_a_running_job_with_no_statement_yet_is_marked_and_asks_the_warehouse_nothing(ports):
    """A job InProgress whose executor has not recorded its statement yet: the abort is recorded on the job (the
    executor sees it before it starts the load) and answered 200 with the job, and no statement is cancelled or
    described (there is none to name)."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert ports.bulk.jobs.transition(job.job_id, BulkState.IN_PROGRESS) is not None  # the executor's, not yet run
    answered = change_state(ports, caller(ports), job.job_id, "Aborted")
    assert answered.state is BulkState.IN_PROGRESS and answered.abort_requested_at is not None
    assert ports.warehouse.calls == []


def test_an_abort_whose_own_write_fails_is_an_error_and_leaves_the_job_open(ports, monkeypatch):
    """The abort's write to the job store fails (DynamoDB down): the request fails (a 500 the client retries), not
    answered as if the job were aborted, and the job is still Open."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)

    def store_down(*args, **kwargs):
        raise RuntimeError("DynamoDB is down")

    monkeypatch.setattr(ports.bulk.jobs, "transition", store_down)
    with pytest.raises(RuntimeError, match="DynamoDB is down"):
        change_state(ports, caller(ports), job.job_id, "Aborted")
    monkeypatch.undo()
    assert get_job(ports, caller(ports), job.job_id).state is BulkState.OPEN


def test_a_listing_never_pages_past_the_configured_page_maximum(ports):
    """ApiPageMax caps a page whatever limit the request asks: with it at 2, a limit of 5 over 3 jobs lists 2 and a
    token for the third."""
    ports = replace(ports, settings=ports.settings.model_copy(update={"api_page_max": 2}))
    made = {new_insert(ports).job_id for _ in range(3)}
    first = list_jobs(ports, caller(ports), state=None, operation=None, limit=5, next_token=None)
    assert len(first.jobs) == 2 and first.next_token
    rest = list_jobs(ports, caller(ports), state=None, operation=None, limit=5, next_token=first.next_token)
    assert {job.job_id for job in first.jobs + rest.jobs} == made and rest.next_token is None


def _a_batch_arrives_during_listings(ports, monkeypatch, job_id: str, listings: int) -> None:
    """Another batch is uploaded while each of the next ``listings`` listings of the job's batches runs."""
    files = type(ports.bulk.files)
    listing = files.uploaded_batches
    left = [listings]

    def one_more(store, listed_job):
        found = listing(store, listed_job)
        if left[0] > 0:
            left[0] -= 1
            upload_batch(ports, caller(ports), job_id, CSV, gzip=False)
        return found

    monkeypatch.setattr(files, "uploaded_batches", one_more)


def test_an_upload_complete_that_meets_a_new_batch_four_times_closes_on_its_fifth_listing(ports, monkeypatch):
    """UploadComplete lists the batches again while batches keep arriving: four batches arriving during its first
    four listings still close the job, every one of the five batches listed."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    _a_batch_arrives_during_listings(ports, monkeypatch, job.job_id, 4)
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert (closed.state, len(closed.files)) == (BulkState.UPLOAD_COMPLETE, 5)


def test_an_upload_complete_that_meets_a_new_batch_five_times_is_a_429_and_leaves_the_job_open(ports, monkeypatch):
    """A fifth batch arriving during the fifth listing: the close gives up with a 429 (send it once the batches are
    done) and the job stays Open, taking batches."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    _a_batch_arrives_during_listings(ports, monkeypatch, job.job_id, 5)
    with pytest.raises(Throttled, match="still receiving batches"):
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert get_job(ports, caller(ports), job.job_id).state is BulkState.OPEN


def test_a_close_that_meets_a_new_batch_four_times_at_the_batch_limit_closes(monkeypatch):
    """With at most 5 batches a job, the fifth listing finds exactly 5 (none stored in the last minute): the job is
    closed with the five, not refused as past its limit."""
    ports = acme_ports(bulk_max_files=5)
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    _a_batch_arrives_during_listings(ports, monkeypatch, job.job_id, 4)
    later = utcnow() + timedelta(minutes=2)
    monkeypatch.setattr("spectra.bulk.service.utcnow", lambda: later)
    closed = change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert (closed.state, len(closed.files)) == (BulkState.UPLOAD_COMPLETE, 5)


@pytest.mark.parametrize(
    ("after", "refused"), [(timedelta(seconds=60), Throttled), (timedelta(seconds=60, microseconds=1), InvalidRequest)]
)
def test_a_batch_past_the_limit_counts_as_on_its_way_back_for_60_seconds_to_the_microsecond(
    monkeypatch, after, refused
):
    """Past its batch limit, a close waits (429) while the newest batch was stored at most 60 s ago (it may be a
    refused batch on its way to being taken back); from 60 s and 1 µs on it is a batch that stays, and the close is
    the 400 naming the count."""
    ports = acme_ports(bulk_max_files=2)
    job = new_insert(ports)
    for stamp in ("20260301T115958000000", "20260301T115959000000", "20260301T120000000000"):
        ports.bulk.files.put(f"acme/{job.job_id}/uploads/{stamp}-0a1b2c3d.csv", CSV)
    now = T0 + after
    monkeypatch.setattr("spectra.bulk.service.utcnow", lambda: now)
    with pytest.raises(refused):
        change_state(ports, caller(ports), job.job_id, "UploadComplete")


@pytest.mark.parametrize(
    ("age", "ends"),
    [(timedelta(days=7, hours=-1, microseconds=-1), "UploadComplete"), (timedelta(days=7, hours=-1), "Aborted")],
)
def test_a_job_is_open_for_7_days_less_an_hour_to_the_microsecond(ports, monkeypatch, age, ends):
    """ResultRetentionDays (7) less an hour after it was made, a job still Open is aborted open_too_long at its
    UploadComplete (409); a microsecond before, it closes."""
    job = new_insert(ports)
    upload_batch(ports, caller(ports), job.job_id, CSV, gzip=False)
    now = job.created_at + age
    monkeypatch.setattr("spectra.bulk.service.utcnow", lambda: now)
    with contextlib.suppress(Conflict):
        change_state(ports, caller(ports), job.job_id, "UploadComplete")
    assert get_job(ports, caller(ports), job.job_id).state.value == ends
