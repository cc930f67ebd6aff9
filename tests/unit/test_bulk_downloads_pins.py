"""Bulk result download behaviour no test held before (found by mutation testing spectra/bulk/downloads.py): the size
at which an ingest result file stops coming inline, how long its presigned URL lives, the exact moment its files and a
query job's pages pass their retention and what that retention counts from, when an aborted job's empty listing means
no records rather than batches the bucket expired, how many records a query page holds, and the 409s of results
not yet there (Retry-After 2 while files are written; the state of a query job that ended without results)."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from spectra.bulk import downloads
from spectra.bulk.downloads import ResultFile, job_results, query_results
from spectra.bulk.files import results_key
from spectra.bulk.lifecycle import complete_bulk_statement, start_bulk_job
from spectra.bulk.models import BulkOperation, BulkState, ExportFile
from spectra.bulk.service import NewJob, change_state, create_job
from spectra.bulk.uploads import upload_batch, upload_url
from spectra.errors import Conflict, Gone, JobNotFinished, NotFound
from spectra.tenants import Caller
from tests.unit.fakes import RESULTS_BUCKET, make_ports, make_settings

pytestmark = pytest.mark.unit

CSV = b"id,name\n1,Ann\n"
FAILED = b"sf__Id,sf__Error,id,name\n"  # the failed file of CSV's job: 25 bytes
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _ports(**settings):
    ports = make_ports(settings=make_settings(**settings))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    return ports


def _caller(ports) -> Caller:
    return Caller.of(ports.tenants.get("acme"))


def _new_insert(ports):
    return create_job(ports, _caller(ports), NewJob(object="accounts", operation=BulkOperation.INSERT))[0]


def _finished_insert(ports):
    job = _new_insert(ports)
    upload_batch(ports, _caller(ports), job.job_id, CSV, gzip=False)
    change_state(ports, _caller(ports), job.job_id, "UploadComplete")
    running = start_bulk_job(ports, ports.queue.messages[-1])
    complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []}))
    return job


def _set_times(ports, job_id: str, **times: datetime) -> None:
    for field, value in times.items():
        ports.bulk.jobs._items[job_id][field] = value.isoformat()


def _results_key(ports, job_id: str, kind: str) -> str:
    return results_key(ports.bulk.jobs.get(job_id), kind)


def _at(monkeypatch, now: datetime) -> None:
    monkeypatch.setattr(downloads, "utcnow", lambda: now)


def _expires(url: str) -> int:
    return int(urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["X-Amz-Expires"][0])


def _query_job(ports, body: bytes, rows: int):
    """A query job JobComplete whose one UNLOAD part holds ``body`` (a header line and ``rows`` records)."""
    job, _ = create_job(ports, _caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
    ports.bulk.jobs.transition(job.job_id, BulkState.IN_PROGRESS)
    key = f"acme/{job.job_id}/export/part_0000_part_00"
    ports.bulk.files.client.put_object(Bucket=RESULTS_BUCKET, Key=key, Body=body)
    part = ExportFile(key=key, rows=rows, bytes=len(body))
    ports.bulk.jobs.transition(job.job_id, BulkState.JOB_COMPLETE, export_files=[part], export_columns=["x"])
    return job


# -- inline or a URL ---------------------------------------------------------------------------------------------------


def test_a_result_file_of_exactly_the_inline_limit_comes_inline_and_a_byte_more_as_a_url():
    """BULK_INLINE_DOWNLOAD_MAX_BYTES is the largest file answered inline: the 25-byte failedResults is the body
    itself under a limit of 25, and a presigned URL under a limit of 24."""
    at_limit = _ports(bulk_inline_download_max_bytes=25)
    job = _finished_insert(at_limit)
    assert job_results(at_limit, _caller(at_limit), job.job_id, "failedResults") == ResultFile(body=FAILED, url=None)

    under = _ports(bulk_inline_download_max_bytes=24)
    job = _finished_insert(under)
    served = job_results(under, _caller(under), job.job_id, "failedResults")
    assert served.body is None and f"acme/{job.job_id}/results/" in served.url and "failed.csv" in served.url


def test_a_result_files_url_lives_the_presign_time_while_the_retention_has_longer_left(monkeypatch):
    """A URL signed a day after the job ended lives PRESIGN_TTL_SECONDS (120 here), not less."""
    ports = _ports(bulk_inline_download_max_bytes=1, presign_ttl_seconds=120)
    job = _finished_insert(ports)
    _set_times(ports, job.job_id, created_at=T0, started_at=T0, completed_at=T0)
    _at(monkeypatch, T0 + timedelta(days=1))
    assert _expires(job_results(ports, _caller(ports), job.job_id, "successfulResults").url) == 120


def test_a_result_files_url_signed_under_a_second_before_the_retention_ends_lives_one_second(monkeypatch):
    """Half a second before the files' 7 days end, the URL is signed for 1 s (S3 takes no URL of 0 s), not refused
    and not for the whole presign time; 40 s before, for 40 s."""
    ports = _ports(bulk_inline_download_max_bytes=1, presign_ttl_seconds=120)
    job = _finished_insert(ports)
    _set_times(ports, job.job_id, created_at=T0, started_at=T0, completed_at=T0)
    _at(monkeypatch, T0 + timedelta(days=7) - timedelta(milliseconds=500))
    assert _expires(job_results(ports, _caller(ports), job.job_id, "successfulResults").url) == 1
    _at(monkeypatch, T0 + timedelta(days=7) - timedelta(seconds=40))
    assert _expires(job_results(ports, _caller(ports), job.job_id, "successfulResults").url) == 40


# -- retention -----------------------------------------------------------------------------------------------------


def test_an_ingest_jobs_files_are_served_until_7_days_after_it_ended_to_the_microsecond(monkeypatch):
    """ResultRetentionDays (7) counts from the job's end: 1 us before the 7 days are up the file is served; at
    exactly 7 days it is 410 naming the 7 days."""
    ports = _ports()
    job = _finished_insert(ports)
    _set_times(ports, job.job_id, created_at=T0, started_at=T0, completed_at=T0)
    _at(monkeypatch, T0 + timedelta(days=7) - timedelta(microseconds=1))
    assert job_results(ports, _caller(ports), job.job_id, "failedResults").body == FAILED
    _at(monkeypatch, T0 + timedelta(days=7))
    with pytest.raises(Gone, match="kept 7 days after they were written") as raised:
        job_results(ports, _caller(ports), job.job_id, "failedResults")
    assert raised.value.details == {"retention_days": 7}


def test_an_ingest_jobs_retention_counts_from_its_end_not_its_records_last_change(monkeypatch):
    """A job that ended 8 days ago is past its files' retention even when its record changed since (a later write
    to it): 410, not served from files the bucket has deleted or is about to."""
    ports = _ports()
    job = _finished_insert(ports)
    _set_times(ports, job.job_id, created_at=T0, started_at=T0, completed_at=T0, updated_at=T0 + timedelta(days=7))
    _at(monkeypatch, T0 + timedelta(days=8))
    with pytest.raises(Gone, match="kept 7 days"):
        job_results(ports, _caller(ports), job.job_id, "failedResults")


def test_a_query_jobs_pages_are_served_until_7_days_after_its_unload_started(monkeypatch):
    """A query job's parts are written from its start on: made 10 days ago but started (after waiting in its line)
    6 days ago, its page is served; 1 us before 7 days from its start it is, at exactly 7 days it is 410."""
    ports = _ports()
    job = _query_job(ports, b"x\n1\n", rows=1)
    _set_times(
        ports,
        job.job_id,
        created_at=T0 - timedelta(days=4),
        started_at=T0,
        completed_at=T0 + timedelta(hours=1),
    )
    _at(monkeypatch, T0 + timedelta(days=6))
    assert query_results(ports, _caller(ports), job.job_id, locator=None, max_records=10).records == 1
    _at(monkeypatch, T0 + timedelta(days=7) - timedelta(microseconds=1))
    assert query_results(ports, _caller(ports), job.job_id, locator=None, max_records=10).records == 1
    _at(monkeypatch, T0 + timedelta(days=7))
    with pytest.raises(Gone, match="kept 7 days after they were written"):
        query_results(ports, _caller(ports), job.job_id, locator=None, max_records=10)


# -- aborted jobs --------------------------------------------------------------------------------------------------


def test_a_job_with_no_batch_aborted_past_7_days_still_has_empty_result_files():
    """A job that took no batch and no upload URL has no records whenever it is aborted: aborted 8 days after it was
    made, its unprocessedrecords is an empty file, not a 404 for batches the bucket might have expired."""
    ports = _ports()
    job = _new_insert(ports)
    _set_times(ports, job.job_id, created_at=datetime.now(UTC) - timedelta(days=8))
    assert change_state(ports, _caller(ports), job.job_id, "Aborted").state is BulkState.ABORTED
    assert job_results(ports, _caller(ports), job.job_id, "unprocessedrecords") == ResultFile(body=b"", url=None)


def _aborted_with_unused_url(ports, aborted_after: timedelta):
    job = _new_insert(ports)
    upload_url(ports, _caller(ports), job.job_id, gzip=False)
    change_state(ports, _caller(ports), job.job_id, "Aborted")
    _set_times(ports, job.job_id, created_at=T0, completed_at=T0 + aborted_after)
    return job


def test_an_aborted_job_that_took_an_upload_url_lists_no_records_until_aborted_7_days_after_it_was_made(monkeypatch):
    """An upload URL issued and nothing listed at the abort: aborted 1 us short of 7 days after the job was made,
    no batch can have expired (an empty file); aborted at exactly 7 days, one may have, so the file is not served
    as empty (404: nothing there, its 7 days from the abort not over)."""
    ports = _ports()
    early = _aborted_with_unused_url(ports, timedelta(days=7) - timedelta(microseconds=1))
    late = _aborted_with_unused_url(ports, timedelta(days=7))
    _at(monkeypatch, T0 + timedelta(days=8))
    assert job_results(ports, _caller(ports), early.job_id, "unprocessedrecords") == ResultFile(body=b"", url=None)
    with pytest.raises(NotFound, match="has no unprocessedrecords"):
        job_results(ports, _caller(ports), late.job_id, "unprocessedrecords")


def test_whether_an_aborted_job_lost_batches_is_judged_at_its_abort_not_when_its_files_are_read(monkeypatch):
    """Aborted 6 days after it was made, with an upload URL unused, the job took no batch: read 9 days after it
    was made, its unprocessedrecords is still the empty file it was at the abort."""
    ports = _ports()
    job = _aborted_with_unused_url(ports, timedelta(days=6))
    _at(monkeypatch, T0 + timedelta(days=9))
    assert job_results(ports, _caller(ports), job.job_id, "unprocessedrecords") == ResultFile(body=b"", url=None)


# -- query pages ---------------------------------------------------------------------------------------------------


def test_a_query_page_holds_max_records_capped_at_the_page_maximum():
    """maxRecords sets a page's records (2 of 5); none given, a page holds BULK_PAGE_MAX_RECORDS (3 here); more than
    that asked for, still 3."""
    ports = _ports(bulk_page_max_records=3)
    job = _query_job(ports, b"x\n1\n2\n3\n4\n5\n", rows=5)
    two = query_results(ports, _caller(ports), job.job_id, locator=None, max_records=2)
    assert (two.records, two.body) == (2, b"x\n1\n2\n")
    assert query_results(ports, _caller(ports), job.job_id, locator=None, max_records=None).records == 3
    capped = query_results(ports, _caller(ports), job.job_id, locator=None, max_records=4)
    assert (capped.records, capped.body) == (3, b"x\n1\n2\n3\n")
    rest = query_results(ports, _caller(ports), job.job_id, locator=capped.locator, max_records=None)
    assert (rest.records, rest.body, rest.locator) == (2, b"x\n4\n5\n", None)


def test_a_missing_file_read_as_the_retention_ends_answers_410(monkeypatch):
    """The request reads the clock 1 us before the 7 days end, finds the file gone, and reads it again at the end:
    the answer is the 410 of expired files (what the bucket's lifecycle does to them), not a 404 or an error."""
    ports = _ports()
    job = _finished_insert(ports)
    _set_times(ports, job.job_id, created_at=T0, started_at=T0, completed_at=T0)
    ports.bulk.files.client.objects.pop((RESULTS_BUCKET, _results_key(ports, job.job_id, "failed")))
    clock = iter([T0 + timedelta(days=7) - timedelta(microseconds=1), T0 + timedelta(days=7)])
    monkeypatch.setattr(downloads, "utcnow", lambda: next(clock))
    with pytest.raises(Gone, match="kept 7 days after they were written") as raised:
        job_results(ports, _caller(ports), job.job_id, "failedResults")
    assert raised.value.details == {"retention_days": 7}


def test_result_files_still_being_written_are_a_409_saying_to_ask_again_in_2_seconds():
    """A job whose result files are owed to the results queue (it shows InProgress until they are written): its
    files are refused job_not_finished with Retry-After 2, saying it shows JobComplete once they are."""
    ports = _ports(bulk_inline_results_max_bytes=1)
    job = _finished_insert(ports)
    with pytest.raises(JobNotFinished, match="being written; it shows JobComplete once they are") as refused:
        job_results(ports, _caller(ports), job.job_id, "failedResults")
    assert refused.value.retry_after == 2


def test_an_aborted_query_jobs_results_are_a_409_naming_its_state():
    """A query job aborted before it ran has no results: 409 with details {"state": "Aborted"}, so a client can tell
    it from one still running."""
    ports = _ports()
    job, _ = create_job(ports, _caller(ports), NewJob(object=None, operation=BulkOperation.QUERY, query="select 1"))
    change_state(ports, _caller(ports), job.job_id, "Aborted")
    with pytest.raises(Conflict, match="ended Aborted; it has no results") as refused:
        query_results(ports, _caller(ports), job.job_id, locator=None, max_records=10)
    assert refused.value.details == {"state": "Aborted"}
