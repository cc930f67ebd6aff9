"""Cancel requests that fail, and the one-call wait's read errors (found by the reviews of this session's diffs): a
cancel request stays on the job whatever its CancelStatement answered (taking a refused one back raced other
cancels), and a read error answers the job, cancelling nothing."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from events import JobStatus
from producers.api import app as api
from spectra.errors import Throttled
from spectra.lifecycle import complete_statement
from spectra.queries import WaitTimeoutAction, await_job, cancel_job
from tests.unit.test_queries import ACME, FakeClock, started, with_tenants

pytestmark = pytest.mark.unit

THROTTLED = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "GetItem")


@pytest.fixture
def ports(monkeypatch):
    ports = with_tenants()
    monkeypatch.setattr(api, "get_ports", lambda budget: ports)
    return ports


def test_a_second_cancel_throttled_does_not_take_back_the_first_accepted_cancel(ports):
    """DELETE #1 is accepted by the warehouse (202 cancel_requested). A repeat DELETE (or a wait's CANCEL) is
    throttled: when a refused cancel took its request back, it cleared the first request's cancel_requested_at, and
    the ABORTED statement ended the job FAILED statement_aborted instead of CANCELLED (review of 575c65f)."""
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
    ReadTimeoutError. A take-back treated it as refused, and the aborted statement read as nobody's cancel (review of
    575c65f)."""
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


def test_a_read_error_early_in_the_wait_ends_it_without_cancelling_the_job(ports):
    """wait_timeout 20 with on_wait_timeout CANCEL: the wait's first GetItem fails (throttled past the SDK's
    retries) at 0.05 s. The wait ends there (another failing read could carry the request past the function's time)
    and the job is answered as last seen; CANCEL acts only when the wait's time is up, so nothing is cancelled (it
    was: a job cancelled 50 ms into a 20 s wait)."""
    job = started(ports)
    original_get = ports.jobs.get

    def failing_once(job_id):
        ports.jobs.get = original_get
        raise THROTTLED

    ports.jobs.get = failing_once
    clock = FakeClock()
    cancel = WaitTimeoutAction.CANCEL
    waited = await_job(ports, ACME, job, seconds=20, on_timeout=cancel, clock=clock, sleep=clock.sleep).job
    assert waited.status is JobStatus.SUBMITTED and clock.now < 1
    assert ("cancel", job.statement_id) not in ports.warehouse.calls


def test_a_read_error_after_the_cancel_lost_its_race_answers_the_job_not_an_error(ports):
    """The job ends between the wait's last look and the cancel (Conflict); await_job then reads the job once more:
    unguarded, a passing store error there was a 500 ("safe to retry": a second job without a key), where every
    other read after the wait answers the job (review of 575c65f)."""
    job = started(ports)
    real_update, real_get = ports.jobs.update, ports.jobs.get
    ended = []

    def update_after_the_end(job_id, expected, **changes):
        if changes.get("cancel_requested_at") is not None:
            complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=0))  # it ends meanwhile
            ended.append(True)
        return real_update(job_id, expected, **changes)

    def get(job_id):
        if ended:
            ended.append(True)
            if len(ended) == 3:  # cancel_job's read for its Conflict went through; await_job's own read fails
                raise THROTTLED
        return real_get(job_id)

    ports.jobs.update = update_after_the_end
    ports.jobs.get = get
    clock = FakeClock()
    cancel = WaitTimeoutAction.CANCEL
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=cancel, clock=clock, sleep=clock.sleep)
    assert len(ended) == 3 and waited.job.job_id == job.job_id and waited.cancel_error is None


def test_a_throttled_cancel_does_not_take_back_the_request_a_concurrent_cancel_made(ports):
    """DELETE #1 reads the job (no request), marks it and calls CancelStatement, whose standard-client retries run
    for seconds against a throttling Data API. Meanwhile DELETE #2 (or the one-call wait's CANCEL) reads the mark,
    marks again, and its CancelStatement gets through: the statement is aborting, #2 answered 202
    cancel_requested. #1 then gave up (Throttled) and, having read no request when it began, cleared the field,
    #2's by then: the ABORTED statement ended the job FAILED statement_aborted, not CANCELLED (review of 78bbe16).
    Requests stay now."""
    job = started(ports)
    real_cancel = ports.warehouse.cancel
    answers = []
    first = {"call": True}

    def cancel(statement_id, **how):
        if first["call"]:  # DELETE #1's CancelStatement, still retrying
            first["call"] = False
            answers.append(cancel_job(ports, ACME, job.job_id))  # DELETE #2 meanwhile: accepted
            raise Throttled("Redshift Data API: ThrottlingException: Rate exceeded")
        return real_cancel(statement_id, **how)

    ports.warehouse.cancel = cancel
    with pytest.raises(Throttled):
        cancel_job(ports, ACME, job.job_id)
    assert answers[0].cancel_requested_at is not None  # #2 was told: cancel under way
    assert ports.warehouse.statements[job.statement_id].status == "ABORTED"  # and it was
    ended = complete_statement(ports, ports.warehouse.status_change(job.statement_id))
    assert ended.status is JobStatus.CANCELLED, (ended.status, ended.error)


def delete_job(job_id: str) -> tuple[int, dict]:
    event = {
        "httpMethod": "DELETE",
        "path": f"/v1/jobs/{job_id}",
        "resource": "/v1/jobs/{job_id}",
        "headers": {},
        "body": None,
        "isBase64Encoded": False,
        "requestContext": {"requestId": "r1", "authorizer": {"tenant_id": "acme"}, "stage": "v1"},
    }
    answer = api.app.resolve(event, None)
    return answer["statusCode"], json.loads(answer["body"])


def test_a_throttled_delete_is_a_429_and_its_repeat_goes_through(ports):
    job = started(ports)
    ports.warehouse.throttle_next("cancel")
    status, body = delete_job(job.job_id)
    assert status == 429 and body["error"]["code"] == "throttled", body
    status, body = delete_job(job.job_id)
    assert status == 202 and body["cancel_requested"] is True, body


def test_two_cancels_at_once_the_refused_one_does_not_undo_the_accepted_one(ports):
    """DELETE A reads the job (no request). DELETE B reads it too (no request), marks t_B and its CancelStatement is
    accepted (202 cancel_requested). A then marks t_A (overwriting t_B) and is throttled. When a refused cancel took
    its request back, the field went, B's with it, and the ABORTED statement ended the job FAILED statement_aborted
    (review of 63785ac); requests now stay."""
    job = started(ports)
    real_update = ports.jobs.update
    answers = []

    def update(job_id, expected, **changes):
        if changes.get("cancel_requested_at") is not None and not answers:
            ports.jobs.update = real_update
            answers.append(cancel_job(ports, ACME, job.job_id))  # DELETE B, between A's read and A's mark
            ports.warehouse.throttle_next("cancel")  # A's CancelStatement is refused
        return real_update(job_id, expected, **changes)

    ports.jobs.update = update
    with pytest.raises(Throttled):
        cancel_job(ports, ACME, job.job_id)  # DELETE A
    assert answers[0].cancel_requested_at is not None  # B was told: cancel under way
    assert ports.warehouse.statements[job.statement_id].status == "ABORTED"  # and it was
    ended = complete_statement(ports, ports.warehouse.status_change(job.statement_id))
    assert ended.status is JobStatus.CANCELLED, (ended.status, ended.error)
