"""The API's use cases (spectra.queries) on in-memory ports: submit, look up, list, cancel, results."""

from __future__ import annotations

import json
import re
import sys
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from events import Delivery, JobQueuedMessage, JobStatus, ResultFormat
from spectra.errors import (
    Conflict,
    InvalidRequest,
    InvalidToken,
    JobNotFinished,
    NotFound,
    PayloadTooLarge,
    SqlRejected,
    StatementRejected,
    Throttled,
)
from spectra.job_queue import JobQueue
from spectra.jobs import Job, utcnow
from spectra.lifecycle import complete_statement, execute_job
from spectra.parameters import TypedParameter
from spectra.queries import (
    WaitTimeoutAction,
    await_job,
    cancel_job,
    get_job,
    job_results,
    list_jobs,
    submit_query,
    wait_for_job,
)
from spectra.reconciliation import reconcile
from spectra.tenants import Caller
from spectra.tokens import PageTokens
from spectra.warehouse import Column
from tests.unit.fakes import AMBIGUOUS_SEND_FAILURES, FakeS3, make_ports, make_settings

pytestmark = pytest.mark.unit

ACME = Caller(tenant_id="acme", db_user="tenant_acme")
GLOBEX = Caller(tenant_id="globex", db_user="tenant_globex")


def with_tenants(**kwargs):
    """Ports whose tenant directory knows ACME and GLOBEX (the executor runs jobs of existing tenants only)."""
    ports = make_ports(**kwargs)
    for caller in (ACME, GLOBEX):
        ports.tenants.create_tenant(caller.tenant_id, db_user=caller.db_user)
    return ports


@pytest.fixture
def ports():
    return with_tenants()


def submit(ports, caller=ACME, sql="select 1 as one", fmt=ResultFormat.JSON, **kwargs):
    return submit_query(ports, caller, sql=sql, parameters=kwargs.pop("parameters", []), fmt=fmt, **kwargs)


def started(ports, caller=ACME, **kwargs):
    """A job the executor has picked up: SUBMITTED with a running statement."""
    job, _ = submit(ports, caller, **kwargs)
    return execute_job(ports, JobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id))


# -- submit ---------------------------------------------------------------------------------------------------------


def test_submit_records_a_queued_job_and_sends_one_message(ports):
    job, created = submit(ports, sql="  select :n as n  ", parameters=[TypedParameter(name="n", value="7")])
    assert created is True
    assert ports.jobs.get(job.job_id) == job
    assert (job.status, job.tenant_id, job.db_user, job.sql) == (
        JobStatus.QUEUED,
        "acme",
        "tenant_acme",
        "select :n as n",
    )
    [message] = ports.queue.messages
    assert (message.job_id, message.tenant_id) == (job.job_id, "acme")
    assert Job.model_validate(message.job) == job  # the job rides along: the executor's first delivery needs no read
    assert ports.warehouse.calls == []  # submitting never touches the warehouse


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("SET SESSION AUTHORIZATION 'admin'", SqlRejected),
        ("select 1; select 2", SqlRejected),
        ("x" * 200, PayloadTooLarge),
    ],
)
def test_a_refused_statement_records_nothing(sql, error):
    ports = make_ports(settings=make_settings(max_sql_bytes=100))
    with pytest.raises(error):
        submit(ports, sql=sql)
    assert ports.jobs.list_for_tenant("acme", limit=10).jobs == []
    assert ports.queue.messages == []


def test_sql_its_typed_values_make_too_long_is_a_413_that_says_so(ports):
    """4,000 placeholders of a float are 12 KB as sent and over 100 KB bound (each a cast to DOUBLE PRECISION): the
    answer was "sql is 116006 bytes", of SQL the client never sent. It says the binding made it so, and what to do;
    the same statement with the value as a string runs as written."""
    sql = "select " + ",".join([":a"] * 4_000)
    with pytest.raises(PayloadTooLarge, match="once its typed parameters are bound") as error:
        submit(ports, sql=sql, parameters=[TypedParameter(name="a", value=0.5)])
    assert "send such values as strings" in error.value.message
    assert error.value.details == {"limit": ports.settings.max_sql_bytes}
    assert ports.queue.messages == []  # no job queued
    job, _ = submit(ports, sql=sql, parameters=[TypedParameter(name="a", value="0.5")])
    assert job.sql == sql


def test_the_callers_write_flag_reaches_the_guard(ports):
    writer = Caller(tenant_id="acme", db_user="tenant_acme", allow_writes=True, owned_schemas=("acme_work",))
    job, created = submit(ports, writer, sql="INSERT INTO acme_work.t SELECT 1")
    assert created and job.sql == "INSERT INTO acme_work.t SELECT 1"
    with pytest.raises(SqlRejected) as elsewhere:
        submit(ports, writer, sql="INSERT INTO public.t SELECT 1")
    assert elsewhere.value.details == {"reason": "not_owned"}
    with pytest.raises(SqlRejected) as read_only:
        submit(ports, ACME, sql="INSERT INTO acme_work.t SELECT 1")
    assert read_only.value.details == {"reason": "read_only"}
    assert [j.job_id for j in ports.jobs.list_for_tenant("acme", limit=10).jobs] == [job.job_id]


def test_an_idempotent_repeat_returns_the_job_and_sends_no_second_message(ports):
    first, created = submit(ports, idempotency_key="k1")
    repeat, created_again = submit(ports, idempotency_key="k1")
    assert (created, created_again) == (True, False)
    assert repeat.job_id == first.job_id
    assert len(ports.queue.messages) == 1


def test_an_idempotency_key_reused_for_other_sql_is_a_conflict(ports):
    submit(ports, idempotency_key="k1")
    with pytest.raises(Conflict):
        submit(ports, sql="select 2", idempotency_key="k1")
    assert len(ports.queue.messages) == 1


def test_a_job_with_a_key_that_cannot_be_queued_stays_queued_for_the_retry_and_the_reconciler(ports):
    """With an Idempotency-Key the client's retry gets this very job, and the reconciler queues a QUEUED job whose
    message never came: failing it (enqueue_failed) made the retry return a dead job for 24 hours."""
    from spectra.reconciliation import reconcile

    ports.queue.fail_next(RuntimeError("SQS is down"))
    with pytest.raises(RuntimeError, match="SQS is down"):
        submit(ports, idempotency_key="k1")
    retried, created = submit(ports, idempotency_key="k1")
    assert created is False and retried.status is JobStatus.QUEUED
    reconcile(ports, now=retried.created_at + timedelta(seconds=ports.settings.requeue_after_seconds + 1))
    assert [m.job_id for m in ports.queue.messages] == [retried.job_id]


@pytest.mark.parametrize("failure", AMBIGUOUS_SEND_FAILURES.values(), ids=AMBIGUOUS_SEND_FAILURES.keys())
def test_a_keyless_job_whose_send_failed_is_answered_and_the_reconciler_runs_it_once(ports, failure):
    """Whether SQS took the message cannot be told from the error (an attempt whose answer was lost is retried, and
    only the last attempt's error is raised): failing the job enqueue_failed raced an executor that had the message
    and started the statement, the client's retry running it a second time (diff review). The job is answered and
    stays QUEUED; the reconciler queues it when no message came."""
    from spectra.reconciliation import reconcile

    ports.queue.fail_next(failure)
    job, created = submit(ports)
    assert created and job.status is JobStatus.QUEUED and ports.queue.messages == []
    reconcile(ports, now=job.created_at + timedelta(seconds=ports.settings.requeue_after_seconds + 1))
    assert [m.job_id for m in ports.queue.messages] == [job.job_id]


@pytest.mark.parametrize(
    "failure",
    [
        ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem"),
        EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com/"),
    ],
    ids=["throttled", "unreachable"],
)
def test_a_keyless_job_whose_write_landed_before_its_error_does_not_run_beside_the_retry(ports, monkeypatch, failure):
    """The SDK sends a PutItem again when an attempt's answer is lost and raises only the last attempt's error: the
    job may be written while the client is answered 503 or 500, which it retries, making another job. The written
    one, QUEUED with no message, was queued by the reconciler: the query ran twice (README walk)."""
    create = ports.jobs.create

    def landed_then_failed(job, **kwargs):
        create(job, **kwargs)
        raise failure

    monkeypatch.setattr(ports.jobs, "create", landed_then_failed)
    with pytest.raises(type(failure)):
        submit(ports)
    monkeypatch.undo()
    retried, _ = submit(ports)  # the client's retry
    reconcile(ports, now=retried.created_at + timedelta(seconds=ports.settings.requeue_after_seconds + 1))
    assert [j.job_id for j in list_jobs(ports, ACME, status=None, limit=10, next_token=None).jobs] == [retried.job_id]
    assert {m.job_id for m in ports.queue.messages} == {retried.job_id}


# -- get and list ---------------------------------------------------------------------------------------------------


def test_another_tenants_job_is_not_found(ports):
    job, _ = submit(ports, GLOBEX)
    assert get_job(ports, GLOBEX, job.job_id) == job
    for lookup in (get_job, cancel_job, job_results):
        with pytest.raises(NotFound):
            lookup(ports, ACME, job.job_id)
    assert ports.jobs.get(job.job_id).status is JobStatus.QUEUED  # the foreign cancel changed nothing


def test_list_is_the_callers_own_jobs_capped_at_the_page_maximum():
    ports = make_ports(settings=make_settings(api_page_max=2))
    mine = [submit(ports)[0] for _ in range(3)]
    submit(ports, GLOBEX)
    page = list_jobs(ports, ACME, status=None, limit=50, next_token=None)
    assert len(page.jobs) == 2 and page.next_token is not None
    rest = list_jobs(ports, ACME, status=None, limit=50, next_token=page.next_token)
    assert {j.job_id for j in page.jobs + rest.jobs} == {j.job_id for j in mine}
    assert list_jobs(ports, ACME, status=JobStatus.FAILED, limit=50, next_token=None).jobs == []


def _tampered(token: str) -> list[str]:
    body, mac = token.split(".")
    flipped = ("A" if body[0] != "A" else "B") + body[1:]
    return [f"{flipped}.{mac}", f"{body}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}", token[:-1], token + "A"]


def test_a_page_token_continues_only_the_listing_it_was_signed_for():
    ports = make_ports()
    for _ in range(3):
        submit(ports)
    submit(ports, GLOBEX)
    token = list_jobs(ports, ACME, status=None, limit=1, next_token=None).next_token
    assert list_jobs(ports, ACME, status=None, limit=1, next_token=token).jobs  # its own listing: fine
    calls = ports.jobs.list_calls
    forged = PageTokens(b"a key that is not the service's key, 32+ bytes").encode(
        {"created_key": "2026-01-01T00:00:00+00:00#j_x", "job_id": "j_x"},
        bound_to={"listing": "jobs", "tenant": "acme", "status": None, "limit": 1},
    )
    for caller, status, limit, bad in [
        (GLOBEX, None, 1, token),  # another tenant
        (ACME, JobStatus.QUEUED, 1, token),  # another filter
        (ACME, None, 2, token),  # another page size
        *((ACME, None, 1, t) for t in _tampered(token)),
        (ACME, None, 1, forged),
        (ACME, None, 1, "[" * 1500),
        (ACME, None, 1, "e30"),
        (ACME, None, 1, ""),
    ]:
        with pytest.raises(InvalidToken):
            list_jobs(ports, caller, status=status, limit=limit, next_token=bad)
    assert ports.jobs.list_calls == calls  # refused before the store was asked anything


@pytest.mark.parametrize(
    "payload",
    [
        {"created_key": 1.5, "job_id": "j_x"},
        {"created_key": None, "job_id": "j_x"},
        {"created_key": "[" * 1000, "job_id": "j_x"},
        {"created_key": "2026-01-01T00:00:00+00:00#j_y", "job_id": "j_x"},
        {"created_key": "2026-01-01T00:00:00+00:00#j_x", "job_id": "j_x", "tenant_id": "globex"},
        {"created_key": "2026-01-01T00:00:00+00:00#idem#x", "job_id": "idem#x"},
        {"created_key": "not a time#j_x", "job_id": "j_x"},
        {},
    ],
)
def test_even_a_correctly_signed_token_must_hold_a_well_formed_position(payload):
    ports = make_ports()
    listing = {"listing": "jobs", "tenant": "acme", "status": None, "limit": 1}
    with pytest.raises(InvalidToken):
        list_jobs(ports, ACME, status=None, limit=1, next_token=ports.page_tokens.encode(payload, bound_to=listing))
    assert ports.jobs.list_calls == 0


# -- cancel ---------------------------------------------------------------------------------------------------------


def test_cancelling_a_queued_job_ends_it_at_once_and_announces_it(ports):
    job, _ = submit(ports)
    cancelled = cancel_job(ports, ACME, job.job_id)
    assert cancelled.status is JobStatus.CANCELLED
    assert ports.events.types() == ["Job Cancelled"]
    assert ports.jobs.get(job.job_id).event_published is True
    # The queued message arrives later and finds nothing to do.
    assert execute_job(ports, ports.queue.messages[0]) is None
    assert ports.warehouse.executed() == []


def test_a_cancel_whose_event_fails_to_go_out_is_answered_cancelled_and_the_event_follows(ports):
    """The CANCELLED write lands, then PutEvents fails: the job is cancelled and its event owed. The API answered 500
    ("safe to retry") and the retry 409 (already ended); the answer is the cancelled job, the reconciler publishes."""
    job, _ = submit(ports)
    ports.events.fail_next()
    cancelled = cancel_job(ports, ACME, job.job_id)
    assert cancelled.status is JobStatus.CANCELLED and not cancelled.event_published
    assert ports.events.types() == []
    assert reconcile(ports, now=utcnow() + timedelta(minutes=2)).published == 1
    assert ports.events.types() == ["Job Cancelled"]
    with pytest.raises(Conflict):  # a cancel of a job already ended is still refused
        cancel_job(ports, ACME, job.job_id)


def test_cancelling_a_running_job_asks_the_warehouse(ports):
    job = started(ports)
    after = cancel_job(ports, ACME, job.job_id)
    assert after.status is JobStatus.SUBMITTED  # it ends when the Data API reports the statement ABORTED
    assert after.cancel_requested_at is not None
    assert ("cancel", job.statement_id) in ports.warehouse.calls
    ended = complete_statement(ports, ports.warehouse.status_change(job.statement_id))
    assert ended.status is JobStatus.CANCELLED
    assert ports.events.types() == ["Job Cancelled"]


def test_a_cancel_before_the_statement_exists_is_carried_out_by_the_executor(ports):
    job, _ = submit(ports)
    ports.jobs.transition(job.job_id, JobStatus.SUBMITTED)  # the executor is between its two writes
    marked = cancel_job(ports, ACME, job.job_id)
    assert marked.cancel_requested_at is not None
    assert not [call for call in ports.warehouse.calls if call[0] == "cancel"]

    execute_job(ports, ports.queue.messages[0])  # the executor resumes: it must not leave the statement running
    statements = list(ports.warehouse.statements.values())
    assert [s.status for s in statements if s.status not in ("FINISHED", "FAILED", "ABORTED")] == []
    for statement in statements:
        complete_statement(ports, ports.warehouse.status_change(statement.statement_id))
    assert ports.jobs.get(job.job_id).status is JobStatus.CANCELLED
    assert ports.events.types() == ["Job Cancelled"]


@pytest.mark.parametrize("end", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_cannot_be_cancelled(ports, end):
    job = started(ports)
    ports.jobs.transition(job.job_id, end)
    with pytest.raises(Conflict) as raised:
        cancel_job(ports, ACME, job.job_id)
    assert raised.value.details == {"status": end}


def test_a_cancel_that_loses_the_race_with_completion_is_a_conflict(ports):
    job = started(ports)
    change = ports.warehouse.finish(job.statement_id, rows=0)
    refuse = ports.warehouse.cancel

    def cancel_after_completion(statement_id, **how):
        complete_statement(ports, change)  # the completion event is handled while the cancel is on its way
        return refuse(statement_id, **how)

    ports.warehouse.cancel = cancel_after_completion
    with pytest.raises(Conflict) as raised:
        cancel_job(ports, ACME, job.job_id)
    assert raised.value.details == {"status": JobStatus.COMPLETED}
    assert ports.events.types() == ["Job Completed"]


def test_a_cancel_of_a_statement_that_just_finished_leaves_the_job_to_its_event(ports):
    """The answer was the job SUBMITTED with cancel_requested (202), and the job then ended COMPLETED: a client took
    the 202 for "my write will not happen" (found by the query API review). It is a 409, as for an ended job."""
    job = started(ports)
    change = ports.warehouse.finish(job.statement_id, rows=0)  # finished in the warehouse, event not handled yet
    with pytest.raises(Conflict) as refused:
        cancel_job(ports, ACME, job.job_id)
    assert "already ended" in refused.value.message
    assert ports.events.events == []
    assert complete_statement(ports, change).status is JobStatus.COMPLETED


def test_a_cancel_refused_as_too_late_takes_its_request_back(ports):
    """A GET after that 409 said cancel_requested while the job ends with its outcome (found by the final diff
    review)."""
    job = started(ports)
    change = ports.warehouse.finish(job.statement_id, rows=0)
    with pytest.raises(Conflict):
        cancel_job(ports, ACME, job.job_id)
    assert ports.jobs.get(job.job_id).cancel_requested_at is None
    assert complete_statement(ports, change).status is JobStatus.COMPLETED


def test_the_one_call_querys_cancel_that_came_too_late_says_so(ports):
    """Its answer said SUBMITTED with cancel_requested and nothing else, and the job then ended COMPLETED (found by
    the first diff review). It has no time to ask how the statement ended, so it says the statement had ended; the
    request stays: another client's cancel may be what stopped it (found by the fourth diff review)."""
    job = started(ports)
    change = ports.warehouse.finish(job.statement_id, rows=0)
    clock = FakeClock()
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep)
    assert (waited.job.status, waited.cancel_error.code) == (JobStatus.SUBMITTED, "statement_ended")
    assert complete_statement(ports, change).status is JobStatus.COMPLETED


def test_a_delete_beside_the_one_call_querys_cancel_ends_the_job_cancelled(ports, monkeypatch):
    """Another client's DELETE stops the statement while the one-call query's cancel is on its way: that cancel,
    refused, took the request back, and the ABORTED event failed the job though the client had its 202 (found by
    the fourth diff review)."""
    job = started(ports)
    cancel = ports.warehouse.cancel

    def another_delete_first(statement_id, *, quick=False):
        monkeypatch.setattr(ports.warehouse, "cancel", cancel)
        assert cancel_job(ports, ACME, job.job_id).cancel_requested_at is not None  # its 202
        return cancel(statement_id, quick=quick)

    monkeypatch.setattr(ports.warehouse, "cancel", another_delete_first)
    clock = FakeClock()
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CANCEL, clock=clock, sleep=clock.sleep)
    assert waited.cancel_error.code == "statement_ended"
    assert complete_statement(ports, ports.warehouse.status_change(job.statement_id)).status is JobStatus.CANCELLED


def test_a_repeated_delete_after_the_first_stopped_the_statement_is_answered_as_the_first(ports):
    """Its answer lost, or two clients: the repeat's CancelStatement finds the statement its predecessor aborted, and
    answered 409 "already ended; the job ends with its outcome" while the job then ended CANCELLED (found by the
    first diff review)."""
    job = started(ports)
    first = cancel_job(ports, ACME, job.job_id)
    assert ports.warehouse.statements[job.statement_id].status == "ABORTED"
    repeat = cancel_job(ports, ACME, job.job_id)
    assert (first.status, repeat.status) == (JobStatus.SUBMITTED, JobStatus.SUBMITTED)
    assert repeat.cancel_requested_at is not None
    assert complete_statement(ports, ports.warehouse.status_change(job.statement_id)).status is JobStatus.CANCELLED


def test_two_deletes_at_once_end_the_job_cancelled(ports):
    """Both read the job before either marked it: the one whose cancel lands stops the statement (202); the other's
    is refused, and, taking itself for the only one, it took the request back, so the ABORTED event failed the job
    (statement_aborted) though a client was told 202 (found by the second diff review)."""
    job = started(ports)
    read, answers, served = ports.jobs.get_for_tenant, [], []

    def read_then_the_other_delete(tenant_id, job_id):
        found = read(tenant_id, job_id)
        if not served:  # the other DELETE is served between this one's read and its mark
            served.append(job_id)
            answers.append(cancel_job(ports, ACME, job_id))
        return found

    ports.jobs.get_for_tenant = read_then_the_other_delete
    answers.append(cancel_job(ports, ACME, job.job_id))
    ports.jobs.get_for_tenant = read
    assert [(a.status, a.cancel_requested_at is not None) for a in answers] == [(JobStatus.SUBMITTED, True)] * 2
    assert complete_statement(ports, ports.warehouse.status_change(job.statement_id)).status is JobStatus.CANCELLED


def test_a_cancel_refused_as_too_late_whose_describe_is_throttled_is_a_429_and_keeps_its_request(ports, monkeypatch):
    """Guessing took another DELETE's request back, and the ABORTED event failed the job that DELETE had a 202 for
    (found by the fourth diff review). Throttled, the DELETE is a 429, the request stays, and a repeat asks again."""
    job = started(ports)
    cancel_job(ports, ACME, job.job_id)  # a first DELETE stops the statement
    monkeypatch.setattr(ports.warehouse, "describe", lambda statement_id: (_ for _ in ()).throw(Throttled("slow down")))
    with pytest.raises(Throttled):
        cancel_job(ports, ACME, job.job_id)  # the second, its describe throttled
    monkeypatch.undo()
    assert ports.jobs.get(job.job_id).cancel_requested_at is not None
    assert complete_statement(ports, ports.warehouse.status_change(job.statement_id)).status is JobStatus.CANCELLED


@pytest.mark.parametrize("failure", [StatementRejected("not authorized"), RuntimeError("endpoint unreachable")])
def test_a_delete_whose_describe_fails_keeps_its_request_and_says_nothing_it_does_not_know(ports, monkeypatch, failure):
    """Answering as the job stood was a 202 "cancel requested" for a statement that had finished: the job then ended
    COMPLETED (found by the fifth diff review). The failure propagates; the request stays for a repeat to decide."""
    job = started(ports)
    change = ports.warehouse.finish(job.statement_id, rows=0)
    monkeypatch.setattr(ports.warehouse, "describe", lambda statement_id: (_ for _ in ()).throw(failure))
    with pytest.raises(type(failure)):
        cancel_job(ports, ACME, job.job_id)
    monkeypatch.undo()
    with pytest.raises(Conflict):  # the repeat finds out
        cancel_job(ports, ACME, job.job_id)
    assert complete_statement(ports, change).status is JobStatus.COMPLETED


def test_a_delete_of_a_job_whose_statement_the_data_api_forgot_is_a_conflict(ports):
    job = started(ports)
    del ports.warehouse.statements[job.statement_id]  # past its 24 hours
    with pytest.raises(Conflict):
        cancel_job(ports, ACME, job.job_id)
    assert ports.jobs.get(job.job_id).cancel_requested_at is None


# -- results --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_results_exist_only_for_completed_jobs(ports, status):
    job, _ = submit(ports)
    ports.jobs.transition(job.job_id, status)
    with pytest.raises(Conflict) as raised:
        job_results(ports, ACME, job.job_id)
    assert not isinstance(raised.value, JobNotFinished)
    assert (raised.value.code, raised.value.details) == ("conflict", {"status": status})


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.SUBMITTED])
def test_results_of_an_unfinished_job_say_when_to_ask_again(ports, status):
    job, _ = submit(ports)
    if status is not JobStatus.QUEUED:
        ports.jobs.transition(job.job_id, status)
    with pytest.raises(JobNotFinished) as raised:
        job_results(ports, ACME, job.job_id)
    assert (raised.value.code, raised.value.status, raised.value.details) == (
        "job_not_finished",
        409,
        {"status": status},
    )
    assert raised.value.retry_after == 1  # a young job: ask again soon


def completed(ports, pages: list[str], fmt=ResultFormat.JSON, **options):
    job = started(ports, fmt=fmt, **options)
    change = ports.warehouse.finish(
        job.statement_id, columns=[Column("n", "int4"), Column("s", "varchar")], pages=pages
    )
    return complete_statement(ports, change)


def test_small_results_come_inline_and_cost_no_s3_request():
    s3 = FakeS3()
    ports = with_tenants(s3=s3)
    job = completed(ports, ["1,a\n2,b\n"])
    body = job_results(ports, ACME, job.job_id)
    assert body["rows"] == [[1, "a"], [2, "b"]]
    assert (body["row_count"], body["delivery"], body["truncated"]) == (2, "inline", False)
    assert body["columns"] == [{"name": "n", "type": "int4"}, {"name": "s", "type": "varchar"}]
    assert (body["files"], body["manifest_url"]) == ([], None)
    assert s3.requests == []  # written on the job record, read from it


def test_s3_delivery_links_each_file_and_the_manifest(ports):
    job = completed(ports, ["1,a\n2,b\n"], delivery=Delivery.S3)
    body = job_results(ports, ACME, job.job_id)
    assert (body["rows"], body["delivery"]) == (None, "s3")
    [file] = body["files"]
    assert file["rows"] == 2
    assert f"X-Amz-Expires={ports.settings.presign_ttl_seconds}" in file["url"]
    assert f"acme/{job.job_id}/manifest.json" in body["manifest_url"]
    assert body["expires_in"] == ports.settings.presign_ttl_seconds


def test_large_results_are_files_only():
    s3 = FakeS3()
    ports = with_tenants(settings=make_settings(inline_max_rows=2), s3=s3)
    job = completed(ports, ["1,a\n2,b\n3,c\n"], fmt=ResultFormat.CSV)
    requests_before = list(s3.requests)
    body = job_results(ports, ACME, job.job_id)
    assert body["rows"] is None
    assert (body["row_count"], body["format"], len(body["files"])) == (3, "csv", 1)
    assert s3.requests == requests_before  # neither the manifest nor the parts are read; presigning is local


@pytest.mark.parametrize("fmt", [ResultFormat.JSON, ResultFormat.CSV, ResultFormat.PARQUET])
def test_a_write_delivered_to_s3_counts_the_rows_it_changed_in_its_manifest_too(fmt):
    """The answer said row_count 2 and total_row_count 0, the manifest row_count 0: the count of rows a write changed
    replaced the answer's after the manifest was written (found by the query API review)."""
    writer = Caller(tenant_id="acme", db_user="tenant_acme", allow_writes=True, owned_schemas=frozenset({"acme"}))
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme", allow_writes=True, owned_schemas=["acme"])
    job = started(ports, writer, sql="insert into acme.t values (1), (2)", fmt=fmt, delivery=Delivery.S3)
    complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=2))
    body = job_results(ports, writer, job.job_id)
    result = ports.jobs.get(job.job_id).result
    manifest = json.loads(ports.results._s3.get_object(Bucket=result.bucket, Key=result.manifest_key)["Body"].read())
    assert (body["row_count"], body["total_row_count"]) == (2, 2)
    assert (manifest["row_count"], manifest["total_row_count"]) == (2, 2)


def test_a_write_answered_inline_counts_the_rows_it_changed():
    writer = Caller(tenant_id="acme", db_user="tenant_acme", allow_writes=True, owned_schemas=frozenset({"acme"}))
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme", allow_writes=True, owned_schemas=["acme"])
    job = started(ports, writer, sql="insert into acme.t values (1), (2)")
    complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=2))
    body = job_results(ports, writer, job.job_id)
    assert (body["rows"], body["row_count"], body["total_row_count"], body["delivery"]) == ([], 2, 2, "inline")


def test_a_job_records_the_generation_of_the_tenant_that_submitted_it(ports):
    generation = ports.tenants.get("acme").generation
    job, _ = submit(ports, ACME.model_copy(update={"generation": generation}))
    assert job.tenant_generation == generation
    assert ports.jobs.get(job.job_id).tenant_generation == generation


# -- typed parameters on submit ---------------------------------------------------------------------------------------


def test_a_job_records_the_bound_statement_the_guard_accepted_again(ports):
    parameters = [TypedParameter(name="n", value=7), TypedParameter(name="gone", value=None)]
    job, _ = submit(ports, sql="select :n as n, :gone as g", parameters=parameters)
    assert job.sql == "select CAST(:n AS BIGINT) as n, NULL as g"
    assert [p.model_dump() for p in job.parameters] == [{"name": "n", "value": "7"}]
    # the typed request is what idempotency compares: the same digits as a string are another request
    _, created = submit(
        ports, sql="select :n as n", parameters=[TypedParameter(name="n", value=7)], idempotency_key="k"
    )
    assert created
    with pytest.raises(Conflict):
        submit(ports, sql="select :n as n", parameters=[TypedParameter(name="n", value="7")], idempotency_key="k")


# -- waiting for the end (wait_timeout) ---------------------------------------------------------------------------


class FakeClock:
    """Time that passes only when slept; ``on_sleep`` runs after each sleep (the world moving on meanwhile)."""

    def __init__(self, on_sleep=None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def test_a_wait_ends_at_the_first_look_after_the_job_ended(ports):
    job, _ = submit(ports)

    def world(sleeps: int) -> None:
        if sleeps == 3:
            ports.jobs.transition(job.job_id, JobStatus.SUBMITTED)
            ports.jobs.transition(job.job_id, JobStatus.COMPLETED)

    clock = FakeClock(world)
    waited = wait_for_job(ports, job, seconds=25, clock=clock, sleep=clock.sleep)[0]
    assert waited.status is JobStatus.COMPLETED
    assert clock.sleeps == pytest.approx([0.05, 0.065, 0.0845])


def test_a_wait_backs_off_reads_only_the_job_store_and_gives_up_on_time(ports):
    job, _ = submit(ports)
    reads = []
    original_get = ports.jobs.get
    ports.jobs.get = lambda job_id: reads.append(job_id) or original_get(job_id)
    clock = FakeClock()
    waited = wait_for_job(ports, job, seconds=25, clock=clock, sleep=clock.sleep)[0]
    assert waited.status is JobStatus.QUEUED
    assert sum(clock.sleeps) == pytest.approx(25)
    assert clock.sleeps[:-1] == sorted(clock.sleeps[:-1]) and max(clock.sleeps) == 1.0  # the last one is cut short
    assert len(reads) == len(clock.sleeps) < 40
    # no statement slot, no Data API call, no message: the wait only reads
    assert ports.warehouse.calls == [] and ports.slots.slots == {} and len(ports.queue.messages) == 1


def test_cancel_on_timeout_ends_a_queued_job_at_once(ports):
    job, _ = submit(ports)
    clock = FakeClock()
    cancel = WaitTimeoutAction.CANCEL
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=cancel, clock=clock, sleep=clock.sleep).job
    assert waited.status is JobStatus.CANCELLED


def test_cancel_on_timeout_asks_a_running_statement_to_stop(ports):
    job = started(ports)
    clock = FakeClock()
    cancel = WaitTimeoutAction.CANCEL
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=cancel, clock=clock, sleep=clock.sleep).job
    assert waited.status is JobStatus.SUBMITTED and waited.cancel_requested_at is not None
    assert ("cancel", job.statement_id) in ports.warehouse.calls
    assert ports.warehouse.quick_cancels == [job.statement_id]  # one short try: the request has seconds left


@pytest.mark.parametrize("failure", ["throttled", "refused"])
def test_a_cancel_on_timeout_that_fails_answers_the_job_rather_than_an_error(ports, failure):
    """The job exists and no answer has carried its id: a 429 or 500 from CancelStatement would send a client without
    an Idempotency-Key to submit it again. The job is answered as it stands; DELETE asks again."""
    job = started(ports)
    if failure == "throttled":
        ports.warehouse.throttle_next("cancel")
    else:
        ports.warehouse.reject_next("not allowed", method="cancel", aws_error="AccessDeniedException")
    clock = FakeClock()
    cancel = WaitTimeoutAction.CANCEL
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=cancel, clock=clock, sleep=clock.sleep)
    assert waited.job.job_id == job.job_id and waited.job.status is JobStatus.SUBMITTED
    # and the answer says the cancel was not sent, so the client knows to DELETE (diff reviews)
    assert (
        waited.cancel_error.code == "cancel_failed" and f"DELETE /v1/jobs/{job.job_id}" in waited.cancel_error.message
    )


def test_a_cancel_the_warehouse_throttles_keeps_its_request_and_a_repeat_carries_it_out(ports):
    """DELETE answers 429 (repeat it). The request stays on the job (cancel_requested: asked for, not yet sent):
    taking it back raced other cancels, one of which may have reached the warehouse (diff reviews). The repeat
    that gets through ends the job CANCELLED."""
    job = started(ports)
    ports.warehouse.throttle_next("cancel")
    with pytest.raises(Throttled):
        cancel_job(ports, ACME, job.job_id)
    assert ports.jobs.get(job.job_id).cancel_requested_at is not None
    assert cancel_job(ports, ACME, job.job_id).cancel_requested_at is not None
    assert complete_statement(ports, ports.warehouse.status_change(job.statement_id)).status is JobStatus.CANCELLED


def test_continue_on_timeout_leaves_the_job_alone(ports):
    job = started(ports)
    clock = FakeClock()
    waited = await_job(
        ports, ACME, job, seconds=1, on_timeout=WaitTimeoutAction.CONTINUE, clock=clock, sleep=clock.sleep
    ).job
    assert waited.status is JobStatus.SUBMITTED and waited.cancel_requested_at is None
    assert [method for method, _ in ports.warehouse.calls] == ["execute"]


def test_a_job_that_ends_between_the_last_look_and_the_cancel_is_answered_as_ended(ports):
    job = started(ports)
    clock = FakeClock()
    original_get = ports.jobs.get

    def get_then_finish(job_id):
        current = original_get(job_id)
        if clock.now >= 1 and current.status is JobStatus.SUBMITTED:  # the wait's last look, then it completes
            ports.jobs.transition(job_id, JobStatus.COMPLETED)
        return current

    ports.jobs.get = get_then_finish
    cancel = WaitTimeoutAction.CANCEL
    waited = await_job(ports, ACME, job, seconds=1, on_timeout=cancel, clock=clock, sleep=clock.sleep).job
    assert waited.status is JobStatus.COMPLETED


# -- delivery -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("select a, b from t", "select a, b from t"),
        # Redshift folds quoted names to lower case too (found by the Data API review): the two collide
        ('select "A", a from t', 'SELECT * FROM (select "A", a from t) AS spectra_export ("a", "a_2")'),
        ('select 1 as "Ü", 2 as "ü"', 'select 1 as "Ü", 2 as "ü"'),  # ASCII letters only
        ("select * from t join u using (id)", "select * from t join u using (id)"),  # only the warehouse knows
        (
            "SELECT 1 AS a, 2 AS a_2, 3 AS a",
            'SELECT * FROM (SELECT 1 AS a, 2 AS a_2, 3 AS a) AS spectra_export ("a", "a_2", "a_3")',
        ),
        ("select X, x from t", 'SELECT * FROM (select X, x from t) AS spectra_export ("x", "x_2")'),
        (
            "select count(*), count(a) from t",
            'SELECT * FROM (select count(*), count(a) from t) AS spectra_export ("count", "count_2")',
        ),
        (
            "select a, a from t union all select b, c from u",
            'SELECT * FROM (select a, a from t union all select b, c from u) AS spectra_export ("a", "a_2")',
        ),
    ],
)
def test_an_export_query_is_renamed_only_when_two_columns_would_share_a_name(sql, expected):
    from spectra.delivery import distinct_columns

    assert distinct_columns(sql) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "select n, row_number() over (order by n), rank() over (order by n) from t",  # n, row_number, rank
        "select listagg(a, ',') within group (order by a), count(*) filter (where a > 1) from t",  # listagg, count
        "select 1::int, 'a'::varchar",  # int4, varchar
        "select case when x then a else b end, case when x then 1 end from t",  # b, case
        "select a % b, mod(a, b) from t",  # ?column?, mod
    ],
)
def test_an_export_is_not_renamed_for_names_the_warehouse_does_not_repeat(sql):
    """Found by the names review: an export of ``select n, row_number() over (...), rank() over (...)`` came back
    with columns n, ?column?, ?column?_2, though the warehouse (and an s3 delivery) names them n, row_number, rank:
    every expression not worked out was taken for ?column?, and two of them for a collision."""
    from spectra.delivery import distinct_columns

    assert distinct_columns(sql) == sql


@pytest.mark.parametrize(
    ("sql", "aliases"),
    [
        ("select 1, 2", '"?column?", "?column?_2"'),  # the warehouse's own names for constants and operators
        ("select 1::int, 2::int", '"int4", "int4_2"'),
        ("select n, row_number() over (), row_number() over (order by n) from t", '"n", "row_number", "row_number_2"'),
        ("select case when x then 1 else b end, b from t", '"b", "b_2"'),
        ("select a % b, n, n from t", '"?column?", "n", "n_2"'),  # a column not worked out is named ?column?
    ],
)
def test_an_export_is_renamed_when_the_names_worked_out_repeat(sql, aliases):
    from spectra.delivery import distinct_columns

    assert distinct_columns(sql) == f"SELECT * FROM ({sql}) AS spectra_export ({aliases})"


@pytest.mark.parametrize(
    ("sql", "aliases"),
    [
        # names the warehouse repeats that are not worked out here count as ?column?: renamed, not failed
        ("select n % 2, x % 2 from t", '"?column?", "?column?_2"'),
        ("select true, false", '"?column?", "?column?_2"'),
        ("select j -> 'k', j -> 'l' from t", '"?column?", "?column?_2"'),
        # functions are named as called, not as sqlglot reads them
        ("select power(n, 2), power(x, 2) from t", '"power", "power_2"'),
        ("select to_char(d, 'YYYY'), to_char(ts, 'MM') from t", '"to_char", "to_char_2"'),
        ("select lpad(s, 5), s as lpad from t", '"lpad", "lpad_2"'),
        ("select string_agg(s, ','), string_agg(s, ';') from t", '"string_agg", "string_agg_2"'),
        ("select trim(s), btrim(s) from t", '"btrim", "btrim_2"'),
        ("select getdate(), '2020-01-01'::timestamp", '"timestamp", "timestamp_2"'),  # Redshift's GETDATE column
        ("select nvl(a, b), coalesce(c, d) from t", '"coalesce", "coalesce_2"'),
        ("select (1, 2), (3, 4)", '"row", "row_2"'),
        ("select n, n, 'a'::text from t", '"n", "n_2", "text"'),
        ("select pg_catalog.lower(s), lower(s) from t", '"lower", "lower_2"'),
    ],
)
def test_an_export_is_renamed_with_the_names_the_warehouse_gives(sql, aliases):
    """Found by the diff review of the names fixes: counted in no collision, two columns not worked out that the
    warehouse names alike (n % 2 twice, power() twice, true and false) went as they were and failed a Parquet export
    ``duplicate_columns``, where the code before renamed them; and functions were named as sqlglot reads them
    (to_char as time_to_str, lpad as pad, string_agg as group_concat), so a renamed export's names differed from an
    s3 delivery's, and lpad(s, 5) beside a column named lpad was no collision."""
    from spectra.delivery import distinct_columns

    assert distinct_columns(sql) == f"SELECT * FROM ({sql}) AS spectra_export ({aliases})"


@pytest.mark.parametrize(
    "sql",
    [
        "select strpos(s, 'a'), position('b' in s) from t",  # strpos, position
        "select substr(s, 1), substring(s, 1) from t",  # substr, substring
        "select char_length(s), length(s) from t",  # char_length, length
        # found by the diff review after: a name not worked out counts as ?column?, so these were renamed for nothing
        "select pg_catalog.lower(s), n * 2 from t",  # lower, ?column?
        "select public.f_udf(s), n * 2 from t order by 1",  # f_udf, ?column?
        "select d at time zone 'UTC', n * 2 from t order by 1",  # timezone, ?column?
        "select true::int, n * 2 from t",  # int4, ?column?
        "select (true)::int, n * 2 from t",  # int4, ?column?
    ],
)
def test_an_export_is_not_renamed_for_functions_sqlglot_reads_alike(sql):
    from spectra.delivery import distinct_columns

    assert distinct_columns(sql) == sql


@pytest.mark.parametrize(
    ("sql", "aliases"),
    [
        ("select (n), n from t", '"n", "n_2"'),
        ("select a[1], a from t", '"a", "a_2"'),
        ("select (select count(*) from o), count(*) from c", '"count", "count_2"'),
        ("select (select x from u union select y from v), x from t", '"x", "x_2"'),
    ],
)
def test_an_export_is_renamed_when_the_warehouse_names_a_bracket_or_subquery_as_another_column(sql, aliases):
    """Found by the names review: the warehouse names (n) as n, a[1] as a and a scalar subquery as its one column,
    so these came back with two columns alike; the export took the first for ?column? and went as it was, and a
    Parquet export failed duplicate_columns."""
    from spectra.delivery import distinct_columns

    assert distinct_columns(sql) == f"SELECT * FROM ({sql}) AS spectra_export ({aliases})"


@pytest.mark.parametrize(
    ("sql", "nested"),
    [
        ("select a from t order by a limit 5", True),
        ("select a from t offset 2", True),
        ("(select a from t order by a limit 5)", True),  # in parentheses it is still the outer SELECT's LIMIT
        ("((select a from t limit 5))", True),
        ("(select a from t) limit 5", True),
        ("select a from (select a from t limit 5) s", False),  # a subquery's LIMIT is UNLOAD's to take
        ("(select a from t)", False),
        ("select 1 union select 2 limit 1", True),
    ],
)
def test_a_query_ending_in_a_limit_is_nested_for_unload(sql, nested):
    from spectra.delivery import unloadable

    assert unloadable(sql) == (f"SELECT * FROM ({sql}) AS spectra_unload" if nested else sql)


RECURSIVE = "with recursive r(n) as (select 1 union all select n + 1 from r where n < 9) select n, n * 2 as d from r"


@pytest.mark.parametrize(
    ("sql", "refused"),
    [
        (RECURSIVE + " order by n limit 3", True),  # nested for UNLOAD's LIMIT rule
        (RECURSIVE.replace("n * 2 as d", "n * 2 as n") + ";", True),  # nested to rename a column named twice
        (RECURSIVE, False),  # unloaded as it is
        ("with r as (select 1 as n) select n from r limit 3", False),  # a plain WITH may be nested
    ],
)
def test_an_export_redshift_would_refuse_to_nest_is_a_400_at_once(ports, sql, refused):
    """Redshift refuses WITH RECURSIVE inside a subquery (WITH's reference), where UNLOAD's LIMIT rule and the
    renaming of columns named twice put an export's query: the job only failed in the warehouse (PostgreSQL, the
    local stack's, takes it)."""
    if not refused:
        assert submit(ports, sql=sql, fmt=ResultFormat.CSV, delivery=Delivery.EXPORT)[0].job_id
        return
    with pytest.raises(InvalidRequest, match="WITH RECURSIVE") as error:
        submit(ports, sql=sql, fmt=ResultFormat.CSV, delivery=Delivery.EXPORT)
    assert error.value.details[0]["loc"] == ["body", "sql"]
    assert submit(ports, sql=sql, fmt=ResultFormat.CSV)[0].job_id  # as files through s3, nothing is nested


@pytest.mark.parametrize(("sql", "kind"), [("explain select 1", "EXPLAIN"), ("show search_path", "SHOW")])
def test_an_export_of_a_statement_unload_cannot_take_is_a_400_at_once(ports, sql, kind):
    """UNLOAD takes a query: an EXPLAIN or a SHOW exported was queued, took a slot and a statement, and failed with a
    syntax error about an UNLOAD the tenant never wrote (found by the API review). The same statement delivered as
    files runs as it is."""
    with pytest.raises(InvalidRequest, match=f"not {kind}: send it with delivery inline or s3") as error:
        submit(ports, sql=sql, fmt=ResultFormat.CSV, delivery=Delivery.EXPORT)
    assert error.value.details[0]["loc"] == ["body", "sql"]
    assert ports.queue.messages == []
    assert submit(ports, sql=sql, fmt=ResultFormat.CSV)[0].job_id


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("insert into t select 1", "INSERT"),
        ("with a as (select 1) insert into t select * from a", "INSERT"),
        ("select 1 into t2", "SELECT INTO"),
        ("truncate table t", "TRUNCATE"),
        ("select 1", None),
        ("(select 1) union all (select 2)", None),
        ("with a as (select 1 as n) select n from a", None),
    ],
)
def test_only_a_query_is_unloadable(sql, kind):
    """A write-enabled tenant's command is no query either."""
    from spectra.delivery import unload_problem

    problem = unload_problem(sql, export=True)
    assert (problem is None) if kind is None else (f"not {kind}:" in problem)


def test_an_export_whose_unload_is_past_the_data_apis_limit_is_a_413_at_once(ports):
    """The guard measured the query; the UNLOAD around it doubles its quotes and adds the destination and options,
    so a query near the limit was accepted and its job failed at ExecuteStatement (found by the limits review). The
    same query delivered as files runs as it is."""
    sql = "select '" + "''" * 40_000 + "' as q"  # 80 KB, 160 KB inside UNLOAD's quotes
    with pytest.raises(PayloadTooLarge, match="as the UNLOAD that exports it") as error:
        submit(ports, sql=sql, fmt=ResultFormat.CSV, delivery=Delivery.EXPORT)
    assert error.value.details == {"limit": ports.settings.max_sql_bytes}
    assert ports.queue.messages == []  # no job queued
    assert submit(ports, sql=sql, fmt=ResultFormat.CSV)[0].job_id


def test_an_export_is_measured_without_the_aliases_of_columns_it_names_twice(ports):
    """What README says of the 413: the aliases an export adds to columns named twice are not measured (a bound from
    below), so an export near the limit is accepted whose UNLOAD, as the executor sends it, is past the limit; the
    Data API refuses that statement and the job fails statement_rejected."""
    from spectra.delivery import statement_sql

    columns = ", ".join(["id as c"] * 2_000)  # one name 2,000 times: each gets an alias
    sql = f"select {columns} from t where x <> '" + "y" * (ports.settings.max_sql_bytes - len(columns) - 400) + "'"
    job, _ = submit(ports, sql=sql, fmt=ResultFormat.CSV, delivery=Delivery.EXPORT)
    assert len(statement_sql(ports.settings, job, renamed=False).encode()) <= ports.settings.max_sql_bytes
    assert len(statement_sql(ports.settings, job).encode()) > ports.settings.max_sql_bytes


def test_only_a_recursive_query_is_worked_out_for_nesting_before_it_is_accepted(ports, monkeypatch):
    """Working out an export's nesting renames its columns, which took minutes for a query of 50,000 (a 504 from
    the API's 29 s): it is asked only of a query with WITH RECURSIVE, the one it can refuse."""
    from spectra import delivery

    def never(sql):
        raise AssertionError("the nesting was worked out for a query without WITH RECURSIVE")

    monkeypatch.setattr(delivery, "distinct_columns", never)
    wide = "select " + ", ".join(["1"] * 5000)
    assert submit(ports, sql=wide, fmt=ResultFormat.CSV, delivery=Delivery.EXPORT)[0].job_id


@pytest.mark.parametrize(
    ("names", "unique"),
    [
        (["a", "a", "a", "a"], ["a", "a_2", "a_3", "a_4"]),
        (["a", "a_2", "a"], ["a", "a_2", "a_3"]),  # a name the query uses itself is never given
        (["a", "a", "a_2"], ["a", "a_3", "a_2"]),
        (["a", "a", "b", "a", "a_3", "b"], ["a", "a_2", "b", "a_4", "a_3", "b_2"]),
    ],
)
def test_names_given_twice_take_the_smallest_free_suffix(names, unique):
    from spectra.result_encoding import unique_names

    assert unique_names(names) == unique


@pytest.fixture
def default_recursion_limit():
    """Python's default recursion limit, as in an executor that never ran the guard (the guard raises it)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    yield
    sys.setrecursionlimit(max(before, sys.getrecursionlimit()))


def test_an_export_of_deeply_nested_sql_the_guard_accepted_starts_where_the_guard_never_ran(
    ports, default_recursion_limit
):
    nested = "(" * 80 + "1" + ")" * 80
    job, _ = submit(ports, sql=f"select {nested} as a, 2 as a", fmt=ResultFormat.CSV, delivery=Delivery.EXPORT)
    sys.setrecursionlimit(1000)  # the API's guard raised it in this process; the executor's is the default
    running = execute_job(ports, JobQueuedMessage(job_id=job.job_id, tenant_id=job.tenant_id))
    assert running is not None and running.status is JobStatus.SUBMITTED
    unload = ports.warehouse.statements[running.statement_id].sql
    assert 'AS spectra_export ("a", "a_2")' in unload  # parsed, and renamed as a shallow query would be


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"fmt": ResultFormat.PARQUET, "delivery": Delivery.INLINE}, "delivery"),
        ({"fmt": ResultFormat.JSONL, "delivery": Delivery.INLINE}, "delivery"),
        ({"fmt": ResultFormat.JSON, "delivery": Delivery.EXPORT}, "delivery"),
        ({"fmt": ResultFormat.CSV, "delivery": Delivery.EXPORT, "row_limit": 5}, "row_limit"),
        (
            {"fmt": ResultFormat.CSV, "delivery": Delivery.EXPORT, "parameters": [TypedParameter(name="n", value="1")]},
            "parameters",
        ),
    ],
)
def test_delivery_options_that_do_not_go_together_are_refused_naming_the_field(ports, options, field):
    from spectra.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as raised:
        submit(ports, sql="select :n as n" if "parameters" in options else "select 1", **options)
    assert [detail["loc"] for detail in raised.value.details] == [["body", field]]
    assert ports.queue.messages == []


def test_an_expired_result_is_gone(ports):
    from datetime import timedelta

    from spectra.errors import Gone
    from spectra.jobs import utcnow

    job = completed(ports, ["1,a\n"])
    assert job_results(ports, ACME, job.job_id)["rows"] == [[1, "a"]]
    assert job.result.expires_at - utcnow() > timedelta(days=ports.settings.result_retention_days, seconds=-60)
    stale = job.result.model_copy(update={"expires_at": utcnow() - timedelta(seconds=1)})
    ports.jobs.update(job.job_id, [JobStatus.COMPLETED], result=stale)
    with pytest.raises(Gone) as raised:
        job_results(ports, ACME, job.job_id)
    assert (raised.value.status, raised.value.code) == (410, "gone")


def test_a_url_handed_out_never_outlives_the_result(ports):
    """The bucket deletes files soon after ``expires_at`` (at the next midnight UTC): a URL handed out a minute before
    that, valid for the usual 5 minutes, pointed at a file S3 had deleted (404, where the README promises 410)."""
    from datetime import timedelta

    from spectra.jobs import utcnow

    job = completed(ports, ["1,a\n"], delivery=Delivery.S3)
    soon = job.result.model_copy(update={"expires_at": utcnow() + timedelta(seconds=60)})
    ports.jobs.update(job.job_id, [JobStatus.COMPLETED], result=soon)
    body = job_results(ports, ACME, job.job_id)
    assert 50 <= body["expires_in"] <= 60 < ports.settings.presign_ttl_seconds


@pytest.mark.parametrize("delivery", [Delivery.S3, Delivery.EXPORT])
def test_a_result_is_gone_once_a_lowered_retention_has_its_files_deleted(ports, delivery):
    """The results bucket's lifecycle follows the current ResultRetentionDays: lowered from 7 to 3, it deleted the
    files of a job that ended 5 days ago, which kept answering 200 with URLs S3 answered 404 (the tokens review)."""
    from dataclasses import replace
    from datetime import timedelta

    from spectra.errors import Gone
    from spectra.jobs import utcnow

    job = completed(ports, ["1,a\n"], delivery=Delivery.S3)
    days_ago = utcnow() - timedelta(days=5)
    ended = job.result.model_copy(update={"expires_at": days_ago + timedelta(days=7), "delivery": delivery})
    ports.jobs.update(job.job_id, [JobStatus.COMPLETED], result=ended, completed_at=days_ago, created_at=days_ago)
    assert job_results(ports, ACME, job.job_id)["expires_at"] == ended.expires_at.isoformat()  # 7 days: as stored

    def retained(days: int):
        return replace(ports, settings=ports.settings.model_copy(update={"result_retention_days": days}))

    with pytest.raises(Gone) as raised:
        job_results(retained(3), ACME, job.job_id)
    assert raised.value.details["expired_at"] == (days_ago + timedelta(days=3)).isoformat()
    assert job_results(retained(6), ACME, job.job_id)["expires_at"] == (days_ago + timedelta(days=6)).isoformat()


def test_delivery_and_row_limit_are_part_of_an_idempotent_requests_identity(ports):
    first, _ = submit(ports, idempotency_key="k1")
    again, created = submit(ports, idempotency_key="k1")
    assert (again.job_id, created) == (first.job_id, False)
    with pytest.raises(Conflict):
        submit(ports, idempotency_key="k1", row_limit=10)


def test_a_tenant_created_again_under_the_same_id_gets_none_of_its_predecessors_jobs():
    """Deleted and created again, a tenant id is another tenant (spectra/tenants.py): its predecessor's jobs are not
    listed, read, cancelled or replayed by idempotency key; they answer as another tenant's do (404)."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    old = Caller.of(ports.tenants.get("acme"))
    first, _ = submit(ports, old, sql="select secret from old_customer_data", idempotency_key="nightly-report")
    ports.tenants.delete_tenant("acme")
    ports.tenants.create_tenant("acme", db_user="tenant_acme_2")
    new = Caller.of(ports.tenants.get("acme"))
    assert list_jobs(ports, new, status=None, limit=20, next_token=None).jobs == []
    with pytest.raises(NotFound):
        get_job(ports, new, first.job_id)
    with pytest.raises(NotFound):
        cancel_job(ports, new, first.job_id)
    job, created = submit(ports, new, sql="select secret from old_customer_data", idempotency_key="nightly-report")
    assert created and job.job_id != first.job_id
    assert [j.job_id for j in list_jobs(ports, new, status=None, limit=20, next_token=None).jobs] == [job.job_id]


class SqsCharacters:
    """SendMessage as SQS documents it: a body with a character outside #x9 | #xA | #xD | #x20-#xD7FF |
    #xE000-#xFFFD | #x10000-#x10FFFF is refused (InvalidMessageContents), and so is one past 256 KiB. moto takes
    anything."""

    OUTSIDE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send_message(self, *, MessageBody: str, **_):
        if self.OUTSIDE.search(MessageBody):
            error = {"Code": "InvalidMessageContents", "Message": "Invalid binary character"}
            raise ClientError({"Error": error}, "SendMessage")
        if len(MessageBody.encode()) > 256 * 1024:
            error = {"Code": "InvalidParameterValue", "Message": "message must be shorter than 262144 bytes"}
            raise ClientError({"Error": error}, "SendMessage")
        self.bodies.append(MessageBody)
        return {"MessageId": f"m-{len(self.bodies)}"}


@pytest.mark.parametrize(
    ("sql", "parameters"),
    [
        ("select 'end\uffff' as marker", []),
        ("select :v as marker", [TypedParameter(name="v", value="noncharacter \ufffe")]),
    ],
)
def test_a_query_holding_a_character_sqs_refuses_is_queued_and_runs_as_written(sql, parameters):
    """SQS refuses U+FFFE and U+FFFF in a message, which the job rides in: the submission answered 500 and left the
    job FAILED enqueue_failed. They travel as JSON escapes and the executor starts the statement as recorded."""
    sqs = SqsCharacters()
    ports = make_ports(queue=JobQueue(sqs, "https://sqs/jobs"))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    job, _ = submit_query(ports, ACME, sql=sql, parameters=parameters, fmt=ResultFormat.JSON)
    assert ports.jobs.get(job.job_id).status is JobStatus.QUEUED
    message = JobQueuedMessage.model_validate_json(sqs.bodies[0])
    execute_job(ports, message, first_delivery=True)
    (started,) = ports.warehouse.statements.values()
    assert started.sql == job.sql and Job.model_validate(message.job).parameters == job.parameters


def test_a_job_whose_escaped_text_would_pass_the_message_limit_travels_as_ids():
    """Each U+FFFF takes 3 bytes in the job's JSON and 6 once escaped for SQS: a job measured before escaping rode
    in a message past SQS's 256 KiB (99 KB of SQL and 60 KB of a parameter, all U+FFFF), which answered 500."""
    sqs = SqsCharacters()
    ports = make_ports(queue=JobQueue(sqs, "https://sqs/jobs"))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    sql = "select '" + "\uffff" * 33_000 + "' as a, :v as b"
    job, _ = submit_query(
        ports, ACME, sql=sql, parameters=[TypedParameter(name="v", value="\uffff" * 20_000)], fmt=ResultFormat.JSON
    )
    message = JobQueuedMessage.model_validate_json(sqs.bodies[0])
    assert message.job is None and message.job_id == job.job_id  # the executor reads the job
    execute_job(ports, message, first_delivery=True)
    (started,) = ports.warehouse.statements.values()
    assert started.sql == job.sql


def test_a_query_parsed_as_sent_and_as_bound_has_one_parse_budget(ports, monkeypatch):
    """The API review: 48,000 ``1+`` terms and one typed parameter took 3 s to parse as sent and 3 s again as bound,
    each parse with a budget of its own, about 25 s on the API function's share of a core. Both parses now share one
    (spectra.sql_guard.one_parse_budget): here the guard's clock moves a second each time it is read, and the budget
    fits one parse and a half."""
    import itertools
    from types import SimpleNamespace

    from spectra import sql_guard

    ticks = itertools.count()
    monkeypatch.setattr(sql_guard, "time", SimpleNamespace(thread_time=lambda: float(next(ticks))))
    monkeypatch.setattr(sql_guard, "PARSE_SECONDS", 1e9)
    sql = "select " + " + ".join(["1"] * 1500) + " + :p as x"
    before = next(ticks)
    sql_guard.check_sql(sql + " -- counted", max_bytes=100_000)
    monkeypatch.setattr(sql_guard, "PARSE_SECONDS", (next(ticks) - before - 1) * 1.5)
    assert submit(ports, sql=sql + " -- untyped", parameters=[TypedParameter(name="p", value="1")])[0]
    with pytest.raises(SqlRejected) as refused:
        submit(ports, sql=sql + " -- typed", parameters=[TypedParameter(name="p", value=1)])
    assert refused.value.details == {"reason": "too_complex"}
