"""Query jobs as the API sees them: submit, look up, list, cancel, fetch results.

Submitting never touches the warehouse: it validates, records the job and queues one message, so the API answers in
milliseconds whatever the statement costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events import Delivery, JobQueuedMessage, JobStatus, ResultFormat
from spectra.delivery import request_problem, results_body
from spectra.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from spectra.job_store import ListPosition, request_fingerprint
from spectra.jobs import Job, QueryParameter, new_job_id, utcnow
from spectra.lifecycle import finish_job
from spectra.notify.service import Callback, discard_callback, register_callback
from spectra.ports import Ports
from spectra.sql_guard import check_sql
from spectra.tenants import Caller


def submit_query(
    ports: Ports,
    caller: Caller,
    *,
    sql: str,
    parameters: list[QueryParameter],
    fmt: ResultFormat,
    idempotency_key: str | None = None,
    correlation_id: str | None = None,
    callback: Callback | None = None,
    delivery: Delivery = Delivery.AUTO,
    row_limit: int | None = None,
) -> tuple[Job, bool]:
    """Record and queue a query job. Returns the job and whether it was created now (False: an idempotent repeat).

    A ``callback`` is recorded before the job, so the job's end cannot outrun it; an idempotent repeat discards it
    (the first request's callback stands)."""
    if problem := request_problem(fmt, delivery, row_limit, bool(parameters)):
        field, message = problem
        raise InvalidRequest(message, details=[{"loc": ["body", field], "msg": message}])
    statement = check_sql(
        sql,
        max_bytes=ports.settings.max_sql_bytes,
        allow_writes=caller.allow_writes,
        owned_schemas=caller.owned_schemas,
    )
    parameter_bytes = sum(len(p.name.encode()) + len(p.value.encode()) for p in parameters)
    if parameter_bytes > ports.settings.max_parameter_bytes:
        raise PayloadTooLarge(
            f"parameters total {parameter_bytes} bytes; the limit is {ports.settings.max_parameter_bytes}",
            details={"limit": ports.settings.max_parameter_bytes},
        )
    now = utcnow()
    job = Job(
        job_id=new_job_id(),
        tenant_id=caller.tenant_id,
        db_user=caller.db_user or "",
        sql=statement,
        parameters=parameters,
        format=fmt,
        delivery=delivery,
        row_limit=row_limit,
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
        correlation_id=correlation_id,
        tenant_generation=caller.generation,
    )
    fingerprint = request_fingerprint(
        statement, [p.model_dump() for p in parameters], fmt.value, *delivery_fingerprint(delivery, row_limit)
    )
    if callback is not None:
        register_callback(ports, callback, tenant_id=caller.tenant_id, job_id=job.job_id)
    drawn_id = job.job_id
    job, created = ports.jobs.create(job, fingerprint=fingerprint)
    if callback is not None and not created:
        discard_callback(ports, tenant_id=caller.tenant_id, job_id=drawn_id)
    if created:
        try:
            ports.queue.send(
                JobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id, correlation_id=correlation_id)
            )
        except Exception:
            # Nothing will ever run this job: say so on the job itself rather than leave it QUEUED forever.
            ports.jobs.transition(
                job.job_id,
                JobStatus.FAILED,
                expected={JobStatus.QUEUED},
                error={"code": "enqueue_failed", "message": "the job could not be queued"},
            )
            raise
    return job, created


def get_job(ports: Ports, caller: Caller, job_id: str) -> Job:
    job = ports.jobs.get_for_tenant(caller.tenant_id, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


@dataclass(frozen=True)
class JobListing:
    jobs: list[Job]
    next_token: str | None


def list_jobs(
    ports: Ports, caller: Caller, *, status: JobStatus | None, limit: int, next_token: str | None
) -> JobListing:
    """One page of the caller's jobs. ``next_token`` is signed for this tenant, filter and page size: any other token
    (forged, altered, another tenant's, another listing's) is refused before the store is asked anything."""
    limit = min(limit, ports.settings.api_page_max)
    listing = {
        "listing": "jobs",
        "tenant": caller.tenant_id,
        "status": status.value if status else None,
        "limit": limit,
    }
    after = ListPosition.from_token(ports.page_tokens, next_token, listing)
    page = ports.jobs.list_for_tenant(caller.tenant_id, limit=limit, status=status, after=after)
    token = page.resume_after.token(ports.page_tokens, listing) if page.resume_after else None
    return JobListing(jobs=page.jobs, next_token=token)


def cancel_job(ports: Ports, caller: Caller, job_id: str) -> Job:
    """Cancel a queued job at once, or ask the warehouse to stop a running one (the job ends CANCELLED when the
    Data API reports the statement ABORTED). A finished job cannot be cancelled: 409."""
    job = get_job(ports, caller, job_id)
    if job.status is JobStatus.QUEUED:
        cancelled = finish_job(ports, job, JobStatus.CANCELLED)
        if cancelled is not None:
            return cancelled
        job = get_job(ports, caller, job_id)  # the executor picked it up meanwhile
    if job.status is JobStatus.SUBMITTED:
        marked = ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], cancel_requested_at=utcnow())
        if marked is None:  # it ended between our read and the write
            current = get_job(ports, caller, job_id)
            raise Conflict(f"job {job_id} already ended {current.status.value}", details={"status": current.status})
        if marked.statement_id and not ports.warehouse.cancel(marked.statement_id):
            current = get_job(ports, caller, job_id)
            if current.status.is_terminal:
                raise Conflict(f"job {job_id} already ended {current.status.value}", details={"status": current.status})
        return get_job(ports, caller, job_id)
    raise Conflict(f"job {job_id} already ended {job.status.value}", details={"status": job.status})


def job_results(ports: Ports, caller: Caller, job_id: str) -> dict[str, Any]:
    """The rows of a small result, or presigned links to its files and manifest (spectra/delivery.py); 410 once the
    result is past its retention."""
    job = get_job(ports, caller, job_id)
    if job.status is not JobStatus.COMPLETED or job.result is None:
        raise Conflict(
            f"job {job_id} is {job.status.value}; results exist only for COMPLETED jobs",
            details={"status": job.status},
        )
    return results_body(ports, job)


def delivery_fingerprint(delivery: Delivery, row_limit: int | None) -> tuple:
    """What delivery adds to an idempotent request's fingerprint: nothing at the defaults, so keys recorded before
    deliveries existed still match their repeats."""
    if delivery is Delivery.AUTO and row_limit is None:
        return ()
    return (delivery.value, row_limit)
