"""A bulk job's results as the API serves them: an ingest job's result files (successfulResults, failedResults,
unprocessedrecords), inline or through a presigned URL, and a query job's result pages, while the results bucket
keeps them (``ResultRetentionDays``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from spectra.bulk import outcomes
from spectra.bulk.files import results_key
from spectra.bulk.lifecycle import bulk_ports
from spectra.bulk.models import BulkJob, BulkOperation, BulkState
from spectra.bulk.pages import Page, read_page
from spectra.bulk.service import get_job
from spectra.errors import Conflict, Gone, InvalidRequest, JobNotFinished, NotFound, ResultsUnavailable
from spectra.jobs import utcnow
from spectra.ports import Ports
from spectra.tenants import Caller

#: The result files' routes (Bulk 2.0's names) and the kind of file each serves
RESULT_KINDS = {"successfulResults": "successful", "failedResults": "failed", "unprocessedrecords": "unprocessed"}


@dataclass(frozen=True)
class ResultFile:
    """An ingest result file: inline when small, else a presigned URL to redirect to."""

    body: bytes | None
    url: str | None


def job_results(ports: Ports, caller: Caller, job_id: str, kind: str) -> ResultFile:
    job = get_job(ports, caller, job_id)
    if job.operation is BulkOperation.QUERY:
        raise InvalidRequest(f"bulk job {job_id} is a query job: read GET /v1/bulk/jobs/{job_id}/results")
    if not job.state.is_terminal:
        raise JobNotFinished(f"bulk job {job_id} is {job.state.value}; results exist once it has ended")
    if not job.results_ready:
        shows = "; it shows JobComplete once they are" if job.results_pending else ""
        raise JobNotFinished(
            f"bulk job {job_id} ended {job.state.value}; its result files are being written{shows}", retry_after=2
        )
    if job.results_unavailable:
        raise ResultsUnavailable(f"bulk job {job_id} has no result files: {job.results_unavailable}")
    if job.state is BulkState.ABORTED and not job.files and not _batches_may_have_expired(ports, job):
        # aborted Open before any batch was stored (by its client, or for being Open too long; no PUT was counted,
        # or its upload URLs were never used): no records, so no files were written, and each lists none (a 404 would
        # read as a wrong job id). An aborted job that took batches but lists none lost them to the bucket's expiry, and
        # a Failed job without files is one whose file was replaced, or a late sidecar's report: rows that exist
        # nowhere to list, 404 or 410 below
        return ResultFile(body=outcomes.no_records(job, RESULT_KINDS[kind]), url=None)
    left = _retention_left(ports, job)
    files = bulk_ports(ports).files
    key = results_key(job, RESULT_KINDS[kind])
    size = files.size(key)
    if size is None:
        raise _missing(ports, job, f"bulk job {job_id} has no {kind}")
    if size <= ports.settings.bulk_inline_download_max_bytes:
        return ResultFile(body=files.read_all(key), url=None)
    ttl = max(1, min(ports.settings.presign_ttl_seconds, int(left.total_seconds())))  # never past the retention
    return ResultFile(body=None, url=files.presign_get(files.results_bucket, key, ttl_seconds=ttl))


def _batches_may_have_expired(ports: Ports, job: BulkJob) -> bool:
    """Whether an aborted job's listing of its batches, made as it was aborted, may have missed some to the bucket's
    expiry: only when it took any (``uploads`` counts batches PUT and upload URLs issued) and was aborted at least
    ``ResultRetentionDays`` after it was made (a batch expires that long after it was written, never before the job
    was). An empty listing made sooner is a job that stored none: its URLs went unused."""
    if not job.uploads:
        return False
    aborted_at = job.completed_at or utcnow()
    return aborted_at >= job.created_at + timedelta(days=ports.settings.result_retention_days)


def query_results(ports: Ports, caller: Caller, job_id: str, *, locator: str | None, max_records: int | None) -> Page:
    job = get_job(ports, caller, job_id)
    if job.operation is not BulkOperation.QUERY:
        raise InvalidRequest(f"bulk job {job_id} is an ingest job: read its successfulResults and failedResults")
    if job.state in (BulkState.FAILED, BulkState.ABORTED):
        raise Conflict(
            f"bulk job {job_id} ended {job.state.value}; it has no results", details={"state": job.state.value}
        )
    if job.state is not BulkState.JOB_COMPLETE:
        raise JobNotFinished(f"bulk job {job_id} is {job.state.value}; results exist once it is JobComplete")
    _retention_left(ports, job)
    settings = ports.settings
    wanted = min(max_records or settings.bulk_page_max_records, settings.bulk_page_max_records)
    try:
        return read_page(
            bulk_ports(ports).files,
            ports.page_tokens,
            job,
            locator=locator,
            max_records=wanted,
            max_bytes=settings.bulk_page_max_bytes,
        )
    except NotFound:  # a file the UNLOAD wrote is gone (the message would name the results bucket and key)
        raise _missing(ports, job, f"bulk job {job_id} has lost a file of its results") from None


def _missing(ports: Ports, job: BulkJob, message: str) -> NotFound | Gone:
    """A result file that is not there: never written (a job whose input was replaced lists nothing), 404; or, once
    ``ResultRetentionDays`` passed since its files were written, expired by the results bucket's lifecycle (its
    record lives 30 days), 410 as a query job's results are past their expiry."""
    if utcnow() < _retention_end(ports, job):
        return NotFound(message)
    return _expired(ports, job)


def _retention_end(ports: Ports, job: BulkJob) -> datetime:
    """When a job's result files pass ``ResultRetentionDays`` since they were written. A query job's files are its
    UNLOAD's parts, written from its start on (the lifecycle takes one written before a midnight UTC a day before
    those of an UNLOAD that ended after it); an ingest job's are written once it ends."""
    if job.operation is BulkOperation.QUERY:
        written = job.started_at or job.created_at
    else:
        written = job.completed_at or job.updated_at
    return written + timedelta(days=ports.settings.result_retention_days)


def _retention_left(ports: Ports, job: BulkJob) -> timedelta:
    """How long the job's result files are served yet; past their retention, 410. The bucket's lifecycle deletes
    them up to a day later (it rounds to the next midnight UTC, and S3 deletes when it gets to it); until then they
    are neither read nor signed for, as a query job's results end at their expiry
    (:func:`spectra.delivery.results_body`)."""
    left = _retention_end(ports, job) - utcnow()
    if left <= timedelta(0):
        raise _expired(ports, job)
    return left


def _expired(ports: Ports, job: BulkJob) -> Gone:
    days = ports.settings.result_retention_days
    return Gone(
        f"the result files of bulk job {job.job_id} are kept {days} days after they were written and have expired;"
        " run the job again",
        details={"retention_days": days},
    )
