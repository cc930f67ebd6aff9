"""Query job behaviour no test held before (found by mutation testing spectra/queries.py): a DELETE that comes too
late (a statement that FAILED on its own, a job another cancel ended meanwhile) is a 409 naming the end; the job
keeps its request's correlation_id; a keyless job whose send timed out after the executor ran it is answered as
stored; a one-call query's cancel on timeout is made when its slowest look took 0.5 s exactly, not past it;
Retry-After of an unfinished job's results from 1 to 30 s; an unknown job id and a predecessor's job are 404s; a
listing token signed before a deploy resumes its listing; a repeat of a query that did not ask to wait carries no
rows. On the in-memory ports of tests/unit/fakes.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ReadTimeoutError

from events import JobStatus
from spectra import queries
from spectra.errors import Conflict, JobNotFinished, NotFound
from spectra.lifecycle import complete_statement, execute_job
from spectra.queries import WaitTimeoutAction, await_job, cancel_job, get_job, job_results
from spectra.warehouse import Column
from tests.unit.test_one_call_query import api, post_query
from tests.unit.test_queries import ACME, FakeClock, started, submit, with_tenants

pytestmark = pytest.mark.unit


@pytest.fixture
def ports():
    return with_tenants()


def test_a_delete_of_a_statement_that_failed_on_its_own_is_a_conflict_and_takes_its_request_back(ports):
    """The statement FAILED in the warehouse before the DELETE reached it (its event not handled yet): the job ends
    FAILED, so the DELETE is a 409 saying the statement already ended, not a 202 "cancel requested", and a GET does
    not show a cancel request that will never take effect."""
    job = started(ports)
    change = ports.warehouse.fail(job.statement_id, "division by zero")
    with pytest.raises(Conflict) as refused:
        cancel_job(ports, ACME, job.job_id)
    assert "statement already ended" in refused.value.message
    assert ports.jobs.get(job.job_id).cancel_requested_at is None
    assert complete_statement(ports, change).status is JobStatus.FAILED


def _ended_by_another_cancel_on_the_way(ports, monkeypatch, job):
    """While this cancel is on its way to the warehouse, another client's stops the statement and its ABORTED event
    ends the job CANCELLED: this cancel is then refused (the statement is no longer running)."""
    cancel = ports.warehouse.cancel

    def another_cancel_first(statement_id, *, quick=False):
        ports.warehouse.abort(statement_id)
        complete_statement(ports, ports.warehouse.status_change(statement_id))
        return cancel(statement_id, quick=quick)

    monkeypatch.setattr(ports.warehouse, "cancel", another_cancel_first)


def test_a_delete_of_a_job_ended_meanwhile_is_a_conflict_naming_its_end(ports, monkeypatch):
    """The job ended CANCELLED between this DELETE's read and its CancelStatement: a 409 "already ended CANCELLED",
    as for any ended job, not the job answered as if this DELETE had been accepted."""
    job = started(ports)
    _ended_by_another_cancel_on_the_way(ports, monkeypatch, job)
    with pytest.raises(Conflict) as refused:
        cancel_job(ports, ACME, job.job_id)
    assert refused.value.details == {"status": JobStatus.CANCELLED}
    assert "already ended CANCELLED" in refused.value.message


def test_a_one_call_querys_cancel_finding_its_job_ended_meanwhile_answers_it_with_no_cancel_error(ports, monkeypatch):
    """The one-call query's cancel after its wait finds the job already ended CANCELLED by another client: the answer
    is the ended job, and no cancel_error (the job's end is known; 'statement_ended, GET the job' is for a job whose
    end is not)."""
    job = started(ports)
    _ended_by_another_cancel_on_the_way(ports, monkeypatch, job)
    clock = FakeClock()
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep)
    assert waited.job.status is JobStatus.CANCELLED
    assert waited.cancel_error is None


def test_a_job_carries_the_request_id_that_made_it_to_its_message(ports):
    """The API request's id (correlation_id) is recorded on the job and rides on its queued message, so the
    executor's and notifier's lines and events of the job can be traced back to the request."""
    job, _ = submit(ports, correlation_id="req-7")
    assert ports.jobs.get(job.job_id).correlation_id == "req-7"
    [message] = ports.queue.messages
    assert message.correlation_id == "req-7"


class QuarterClock:
    """Time in quarter seconds, exact in binary: each sleep passes 0.25 s whatever it asked, and each read of the job
    store ``read_seconds``."""

    def __init__(self, ports, read_seconds: float) -> None:
        self.now = 0.0
        read = ports.jobs.get

        def slow_read(job_id):
            self.now += read_seconds
            return read(job_id)

        ports.jobs.get = slow_read

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += 0.25


def test_a_wait_whose_looks_took_half_a_second_still_cancels_its_job_on_timeout(ports):
    """README: a wait whose looks took longer than 0.5 s cancels nothing on its timeout; one whose slowest look took
    0.5 s exactly is not past that, and its CANCEL is carried out (the queued job ends CANCELLED)."""
    job, _ = submit(ports)
    clock = QuarterClock(ports, read_seconds=0.5)
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep)
    assert (waited.job.status, waited.cancel_error) == (JobStatus.CANCELLED, None)


def test_a_wait_whose_looks_took_longer_than_half_a_second_says_its_cancel_was_not_sent(ports):
    """The other side of the bound: a look of 0.75 s leaves the job running, and the answer says the cancel was not
    sent and how to ask again."""
    job, _ = submit(ports)
    clock = QuarterClock(ports, read_seconds=0.75)
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep)
    assert waited.job.status is JobStatus.QUEUED
    assert waited.cancel_error.code == "cancel_failed"
    assert f"DELETE /v1/jobs/{job.job_id}" in waited.cancel_error.message


@pytest.mark.parametrize(("age", "seconds"), [(0, 1), (19, 1), (20, 2), (100, 10), (299, 29), (300, 30), (3000, 30)])
def test_an_unfinished_jobs_results_say_to_ask_again_after_a_tenth_of_its_age_from_1_to_30_seconds(
    ports, monkeypatch, age, seconds
):
    """The 409 job_not_finished's Retry-After: 1 s for a young job, a tenth of its age (whole seconds) after that, at
    most 30 s."""
    job, _ = submit(ports)
    monkeypatch.setattr(queries, "utcnow", lambda: job.created_at + timedelta(seconds=age))
    with pytest.raises(JobNotFinished) as raised:
        job_results(ports, ACME, job.job_id)
    assert raised.value.retry_after == seconds


def test_a_job_id_nobody_made_is_a_404(ports):
    """GET /v1/jobs/{job_id} of an id the store does not hold is a 404 naming the id, not a 500."""
    with pytest.raises(NotFound, match="job j_nothing not found"):
        get_job(ports, ACME, "j_nothing")


def test_a_job_of_the_tenants_predecessor_is_a_404_and_its_own_job_is_found(ports):
    """A tenant id deleted and created again is another tenant: a job made under the old generation is a 404 to the
    new one, while the new one's own job (and one made before generations existed) is its own."""
    old, new = ACME.model_copy(update={"generation": "g1"}), ACME.model_copy(update={"generation": "g2"})
    predecessors, _ = submit(ports, caller=old)
    with pytest.raises(NotFound):
        get_job(ports, new, predecessors.job_id)
    own, _ = submit(ports, caller=new)
    assert get_job(ports, new, own.job_id).job_id == own.job_id
    assert get_job(ports, old, predecessors.job_id).job_id == predecessors.job_id


def test_a_keyless_job_whose_message_was_taken_and_run_before_its_send_timed_out_is_answered_as_stored(
    ports, monkeypatch
):
    """SQS took the message and the executor started the statement, then the send's answer was lost (a read
    timeout): the 202 shows the job as the store holds it (SUBMITTED, its statement named), not the QUEUED job the
    request had built."""
    send = ports.queue.send

    def taken_then_timed_out(message, **how):
        send(message, **how)
        execute_job(ports, message)
        raise ReadTimeoutError(endpoint_url="https://sqs.eu-west-1.amazonaws.com/")

    monkeypatch.setattr(ports.queue, "send", taken_then_timed_out)
    job, created = submit(ports)
    assert created is True
    assert job.status is JobStatus.SUBMITTED and job.statement_id is not None
    assert len(ports.warehouse.executed()) == 1


def test_a_listing_token_signed_before_a_deploy_still_resumes_its_listing(ports):
    """A page token is bound to its listing as ``{"listing": "jobs", "tenant", "status", "limit"}``: one a client
    holds across a deploy resumes where it stopped. Written out here, so that a change to the binding (a name emptied
    or renamed) fails this test rather than refuse every token issued before it (400 ``invalid_token``)."""
    jobs = [submit(ports)[0] for _ in range(2)]
    first = queries.list_jobs(ports, ACME, status=None, limit=1, next_token=None).jobs[0]
    [second] = [job for job in jobs if job.job_id != first.job_id]
    stored = ports.jobs.get(first.job_id)
    signed_before = ports.page_tokens.encode(
        {"created_key": f"{stored.created_at.isoformat()}#{first.job_id}", "job_id": first.job_id},
        bound_to={"listing": "jobs", "tenant": "acme", "status": None, "limit": 1},
    )
    page = queries.list_jobs(ports, ACME, status=None, limit=1, next_token=signed_before)
    assert [job.job_id for job in page.jobs] == [second.job_id]


def test_a_repeat_of_a_query_that_did_not_ask_to_wait_is_answered_its_job_without_rows(monkeypatch):
    """Rows come in the answer of a query that asked to wait (``wait_timeout``); one that did not (0, the default) is
    answered its job, its rows left to GET .../results. Its repeat under the same Idempotency-Key once the job has
    completed is answered the same way: 200 with the job COMPLETED, no ``results``."""
    ports = with_tenants()
    monkeypatch.setattr(api, "get_ports", lambda budget: ports)  # the API's handler, on these ports
    body, key = {"sql": "select 1 as one"}, {"Idempotency-Key": "nightly-1"}
    status, first = post_query(body, key)
    assert status == 202 and first["status"] == "QUEUED", first
    job = execute_job(ports, ports.queue.messages[0])
    complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=[Column("one", "int4")], pages=["1\n"]))
    status, repeat = post_query(body, key)
    assert (status, repeat["job_id"], repeat["status"]) == (200, first["job_id"], "COMPLETED"), repeat
    assert repeat.get("results") is None, repeat
