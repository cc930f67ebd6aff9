"""Cancel requests that fail, and the one-call wait's read errors (found by the review of 575c65f): a refused cancel
takes back only its own request, an unanswered one leaves it, and a read error neither ends the wait nor answers
an error."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from events import JobStatus
from spectra.errors import Throttled
from spectra.lifecycle import complete_statement
from spectra.queries import WaitTimeoutAction, await_job, cancel_job
from tests.unit.test_queries import ACME, FakeClock, started, with_tenants

pytestmark = pytest.mark.unit

THROTTLED = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "GetItem")


@pytest.fixture
def ports():
    return with_tenants()


def test_a_second_cancel_throttled_does_not_take_back_the_first_accepted_cancel(ports):
    """DELETE #1 is accepted by the warehouse (202 cancel_requested). A repeat DELETE (or a wait's CANCEL) is
    throttled: its take-back clears the first request's cancel_requested_at, and the ABORTED statement then ends the
    job FAILED statement_aborted instead of CANCELLED."""
    job = started(ports)
    first = cancel_job(ports, ACME, job.job_id)
    assert first.cancel_requested_at is not None
    ports.warehouse.throttle_next("cancel")
    with pytest.raises(Throttled):
        cancel_job(ports, ACME, job.job_id)
    ended = complete_statement(ports, ports.warehouse.abort(job.statement_id))
    assert ended.status is JobStatus.CANCELLED, (ended.status, ended.error)


def test_a_quick_cancel_that_times_out_after_reaching_the_warehouse_still_ends_cancelled(ports):
    """The quick client reads for 1.5 s: a CancelStatement the Data API carried out but answered late raises
    ReadTimeoutError. The take-back treats it as refused, and the aborted statement reads as nobody's cancel."""
    job = started(ports)
    real_cancel = ports.warehouse.cancel

    def cancel_then_time_out(statement_id, **how):
        real_cancel(statement_id, **how)  # the warehouse got it and aborts the statement
        raise ReadTimeoutError(endpoint_url="https://redshift-data.eu-west-1.amazonaws.com/")

    ports.warehouse.cancel = cancel_then_time_out
    clock = FakeClock()
    await_job(ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep)
    ended = complete_statement(ports, ports.warehouse.abort(job.statement_id))
    assert ended.status is JobStatus.CANCELLED, (ended.status, ended.error)


def test_a_read_error_early_in_the_wait_neither_ends_it_nor_cancels_the_job_before_its_time(ports):
    """wait_timeout 20 with on_wait_timeout CANCEL: the wait's first GetItem fails (throttled past the SDK's
    retries) at 0.05 s. The wait ended there and the job was cancelled as if its 20 s were up; the wait now looks
    again, and the job that ends at 5 s is answered ended, uncancelled."""
    job = started(ports)
    original_get = ports.jobs.get
    calls = {"n": 0}

    def flaky_get(job_id):
        calls["n"] += 1
        if calls["n"] == 1:
            raise THROTTLED
        if clock.now >= 5:  # it ends at 5 s
            ports.jobs.get = original_get
            complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=0))
        return original_get(job_id)

    ports.jobs.get = flaky_get
    clock = FakeClock()
    waited = await_job(
        ports, ACME, job, seconds=20, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep
    )
    assert waited.status is JobStatus.COMPLETED and 5 <= clock.now < 7
    assert ("cancel", job.statement_id) not in ports.warehouse.calls


def test_a_read_error_after_the_cancel_lost_its_race_answers_the_job_not_an_error(ports):
    """The job ends between the wait's last look and the cancel (Conflict); await_job then reads the job once more
    with get_job, unguarded: a passing store error there is a 500 ("safe to retry": a second job without a key),
    where every other read after the wait now answers the job."""
    job = started(ports)
    real_update = ports.jobs.update
    real_get_for_tenant = ports.jobs.get_for_tenant
    reads = {"after_conflict": False}

    def update_after_the_end(job_id, expected, **changes):
        if "cancel_requested_at" in changes and changes["cancel_requested_at"] is not None:
            complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=0))  # it ends meanwhile
            reads["after_conflict"] = True
        return real_update(job_id, expected, **changes)

    calls = {"n": 0}

    def get_for_tenant(tenant_id, job_id):
        if reads["after_conflict"]:
            calls["n"] += 1
            if calls["n"] == 2:  # cancel_job's read for its Conflict succeeded; await_job's own read fails
                raise ClientError(
                    {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "GetItem"
                )
        return real_get_for_tenant(tenant_id, job_id)

    ports.jobs.update = update_after_the_end
    ports.jobs.get_for_tenant = get_for_tenant
    clock = FakeClock()
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep)
    assert waited.job_id == job.job_id
