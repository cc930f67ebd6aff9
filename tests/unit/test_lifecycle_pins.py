"""Executor and completion behaviour no test held before (found by mutation testing spectra/lifecycle.py): a
redelivery of the API's own message (the job in it) looks for the statement an earlier attempt started, the
60 s for which the job a message carries is trusted, and the README's 5 s past which a collected result
is written before its event. A second sample added: the slot a running job keeps when a duplicate delivery's
ending is refused, an unstarted ending that loses to a recorded statement, a cancelled job that starts nothing,
what a job's event and error say, and the statement a job records when it ends."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from events import Delivery, JobStatus
from spectra import lifecycle
from spectra.jobs import utcnow
from spectra.lifecycle import complete_statement, execute_job
from spectra.queries import cancel_job
from spectra.tenants import Caller
from spectra.warehouse import Column, DatabaseIdentity
from tests.unit.fakes import CountingReads, make_ports, make_settings, with_tenants
from tests.unit.test_lifecycle import died_between_start_and_record, queued

pytestmark = pytest.mark.unit


ACME = Caller(tenant_id="acme", db_user="tenant_acme")


@pytest.fixture
def ports():
    """In-memory ports with one tenant, acme, running as its database user."""
    return with_tenants(make_ports(), ACME)


def _apis_message(ports):
    """The message the API sends for a new job of acme's: the job in it."""
    return lifecycle.queued_message(ports.jobs.get(queued(ports).job_id))


def test_a_redelivery_of_the_apis_message_stops_the_statement_an_earlier_attempt_started(ports, monkeypatch):
    """The API's message (the job in it, sent a moment after the job was made) redelivered by SQS: its first
    delivery may have started the statement and died before recording it. A job cancelled meanwhile ends CANCELLED
    and that statement is looked up by the job's name and stopped, not left running behind the cancelled job."""
    message = _apis_message(ports)
    statement_id = died_between_start_and_record(ports, monkeypatch, message)
    cancel_job(ports, ACME, message.job_id)
    sent = ports.jobs.get(message.job_id).created_at + timedelta(milliseconds=20)
    assert execute_job(ports, message, first_delivery=False, sent_at=sent) is None
    assert ports.jobs.get(message.job_id).status is JobStatus.CANCELLED
    assert ports.warehouse.statements[statement_id].status == "ABORTED"
    assert ports.slots.holders("acme") == {}


@pytest.mark.parametrize(("after", "reads"), [(60, 0), (60.5, 1)])
def test_the_job_in_a_first_delivery_is_trusted_for_60_seconds_after_it_was_made(ports, after, reads):
    """A first delivery of a message sent up to 60 s (JOB_IN_MESSAGE_TRUST_SECONDS) after its job was made starts the
    job it carries without reading the job store (the nine calls a small job costs); one sent later, such as a copy
    moved back from the dead-letter queue, reads the job first. Either way the job starts once."""
    message = _apis_message(ports)
    sent = ports.jobs.get(message.job_id).created_at + timedelta(seconds=after)
    counting = CountingReads(ports.jobs)
    started = execute_job(replace(ports, jobs=counting), message, first_delivery=True, sent_at=sent)
    assert started.status is JobStatus.SUBMITTED
    assert counting.reads == reads


def test_a_result_collected_in_just_over_5_seconds_is_written_before_its_event(ports, monkeypatch):
    """README: a result collected in longer than 5 s (SETTLED_COLLECTION_SECONDS) is written before its event is
    published, since other handlers may have given it up meanwhile. Here the reconciler's collections fail and give
    the result up (FAILED, "Job Failed") while the status event's own collection takes 5.5 s: its "Job Completed"
    must not go out beside the failure. One ending, the one written, is announced."""
    job = execute_job(ports, queued(ports))
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"], rows=1)
    real_collect, clock, calls = lifecycle.collect_result, [1000.0], []
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: clock[0])

    def collect(ports_, job_, statement_id, info=None):
        if calls:  # the other handlers' collections: refused
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "PutObject")
        calls.append(statement_id)
        result = real_collect(ports_, job_, statement_id, info)
        for _ in range(ports.settings.result_max_attempts):
            with contextlib.suppress(ClientError):
                complete_statement(ports, change)
        clock[0] += 5.5
        return result

    monkeypatch.setattr(lifecycle, "collect_result", collect)
    assert complete_statement(ports, change) is None
    assert ports.jobs.get(job.job_id).status is JobStatus.FAILED
    assert ports.events.types() == ["Job Failed"]


def test_a_files_results_event_says_where_its_result_is(ports):
    """A job whose result is written to S3 (delivery s3) announces it with the result's location and size, as GET
    results gives them: a subscriber fetches the files from the event alone."""
    job = execute_job(ports, queued(ports, delivery=Delivery.S3))
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n2\n"], rows=2)
    finished = complete_statement(ports, change)
    [event] = ports.events.events
    assert event.detail_type == "Job Completed"
    assert finished.result.location
    assert (event.detail.result_location, event.detail.result_bytes, event.detail.row_count) == (
        finished.result.location,
        finished.result.bytes,
        2,
    )


def test_a_duplicate_first_delivery_refused_by_the_tenant_leaves_the_running_jobs_slot_held():
    """SQS delivers the API's message twice. The first copy starts the statement; the second, carrying the job as it
    was (QUEUED) and finding the tenant deactivated meanwhile, has its FAILED write refused (the job runs). The slot
    is the running job's: it stays held until the statement ends, so the tenant's cap still counts the job."""
    ports = with_tenants(make_ports(settings=make_settings(tenant_cache_seconds=0)), ACME)
    message = _apis_message(ports)
    job = execute_job(ports, message, first_delivery=True)
    ports.tenants.set_active("acme", False)
    assert execute_job(ports, message, first_delivery=True) is None  # the second copy
    current = ports.jobs.get(job.job_id)
    assert (current.status, current.statement_id) == (JobStatus.SUBMITTED, job.statement_id)
    assert list(ports.slots.holders("acme")) == [job.job_id]


def test_a_job_asked_to_stop_before_it_started_ends_cancelled_without_reaching_the_warehouse(ports):
    """A job asked to stop (a DELETE's cancel request) before any executor started it ends CANCELLED when its message
    comes: no statement is started for it, its slot goes back, and "Job Cancelled" is announced once."""
    message = queued(ports)
    ports.jobs.update(message.job_id, [JobStatus.QUEUED], cancel_requested_at=utcnow())
    assert execute_job(ports, message) is None
    assert ports.jobs.get(message.job_id).status is JobStatus.CANCELLED
    assert ports.warehouse.executed() == []
    assert ports.slots.holders("acme") == {}
    assert ports.events.types() == ["Job Cancelled"]


def test_a_cut_results_event_says_how_many_rows_the_statement_returned(ports):
    """A job whose row_limit cut its result announces the rows delivered, that the result was cut, and how many rows
    the statement returned, as GET results says: a subscriber learns from the event alone that rows are missing."""
    job = execute_job(ports, queued(ports, row_limit=2))
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n2\n3\n"], rows=3)
    finished = complete_statement(ports, change)
    [event] = ports.events.events
    assert (finished.result.row_count, finished.result.truncated, finished.result.total_row_count) == (2, True, 3)
    assert (event.detail.row_count, event.detail.truncated, event.detail.total_row_count) == (2, True, 3)


def test_an_unstarted_ending_loses_to_a_copy_that_records_its_statement_meanwhile(ports, monkeypatch):
    """A job SUBMITTED without its statement (an executor stopped between its writes) and asked to stop: a redelivery
    looks for an earlier attempt's statement, finds none, and ends the job CANCELLED, but only while the job still
    has no statement. Another copy that started and recorded the statement meanwhile wins: the job stays SUBMITTED
    with that statement and its slot (its statement's end, a cancel the other copy sends, ends it), and no
    "Job Cancelled" goes out beside a statement that runs."""
    message = queued(ports, status=JobStatus.SUBMITTED, submitted_at=utcnow())
    ports.jobs.update(message.job_id, [JobStatus.SUBMITTED], cancel_requested_at=utcnow())
    find, started = ports.warehouse.find, []

    def another_copy_records_its_statement(name):
        found = find(name)
        statement_id = ports.warehouse.execute(
            "select 1", identity=DatabaseIdentity(db_user="tenant_acme"), name=name, client_token=name
        )
        ports.jobs.update(name, [JobStatus.SUBMITTED], statement_id=statement_id)
        started.append(statement_id)
        return found

    monkeypatch.setattr(ports.warehouse, "find", another_copy_records_its_statement)
    assert execute_job(ports, message) is None  # the redelivery
    job = ports.jobs.get(message.job_id)
    assert (job.status, job.statement_id) == (JobStatus.SUBMITTED, started[0])
    assert ports.events.types() == []
    assert list(ports.slots.holders("acme")) == [message.job_id]


def test_a_statement_failed_without_a_message_still_tells_the_tenant_it_failed(ports):
    """DescribeStatement may give a FAILED statement no error text: the job fails ``statement_failed`` with a message
    that says so, in the job and in its "Job Failed" event, never an empty one."""
    job = execute_job(ports, queued(ports))
    failed = complete_statement(ports, ports.warehouse.fail(job.statement_id, ""))
    [event] = ports.events.events
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "statement_failed")
    assert "failed" in failed.error.message
    assert event.detail.error == failed.error


def test_a_result_given_up_on_a_very_long_failure_keeps_its_error_message_short(ports, monkeypatch):
    """A result whose collection fails with a very long reason (a service's text of several kilobytes) fails the
    job after its attempts with a message of at most 1000 characters, in the job and in its "Job Failed" event."""
    job = execute_job(ports, queued(ports))
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"], rows=1)

    def collect(*_args, **_kwargs):
        raise ValueError("a page the converter refused: " + "x" * 5000)

    monkeypatch.setattr(lifecycle, "collect_result", collect)
    for _ in range(2):
        with pytest.raises(ValueError):
            complete_statement(ports, change)
    failed = complete_statement(ports, change)
    [event] = ports.events.events
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "result_failed")
    assert failed.error.message.startswith("the result could not be collected: ValueError: a page the converter")
    assert len(failed.error.message) == 1000
    assert event.detail.error == failed.error


@pytest.mark.parametrize("state", ["FINISHED", "ABORTED"])
def test_a_job_that_never_recorded_its_statement_ends_recording_the_statement_that_ran(ports, state):
    """A job SUBMITTED without its statement (an executor stopped between its two writes) whose statement, started
    under the job's name, ends: the status event ends the job (COMPLETED, or FAILED when the warehouse aborted it
    unasked) and the job records which statement ran, as GET and the reconciler read it."""
    message = queued(ports, status=JobStatus.SUBMITTED, submitted_at=utcnow())
    statement_id = ports.warehouse.execute(
        "select 1", identity=DatabaseIdentity(db_user="tenant_acme"), name=message.job_id, client_token=message.job_id
    )
    if state == "FINISHED":
        change = ports.warehouse.finish(statement_id, columns=[Column("n", "int4")], pages=["1\n"], rows=1)
    else:
        change = ports.warehouse.abort(statement_id)
    ended = complete_statement(ports, change)
    assert ended.status is (JobStatus.COMPLETED if state == "FINISHED" else JobStatus.FAILED)
    assert ended.statement_id == statement_id
    assert ports.jobs.get(message.job_id).statement_id == statement_id


def test_a_redelivery_for_a_job_cancelled_while_queued_cancels_nothing_when_no_statement_was_started(ports):
    """A job cancelled while QUEUED whose message comes back looks for a statement an earlier attempt may have started
    under its name (one ListStatements); finding none, it sends no CancelStatement (a call with no statement id, which
    the Data API refuses) and the job stays CANCELLED with no slot held."""
    message = queued(ports)
    assert cancel_job(ports, ACME, message.job_id).status is JobStatus.CANCELLED
    assert execute_job(ports, message) is None  # the redelivery
    assert [method for method, _ in ports.warehouse.calls] == ["find"]
    assert ports.jobs.get(message.job_id).status is JobStatus.CANCELLED
    assert ports.slots.holders("acme") == {}


def test_an_old_statements_event_finishes_the_job_its_executor_recorded_while_the_event_adopted_it(ports, monkeypatch):
    """A status event for a statement made minutes ago finds its job still QUEUED after its wait, and records the
    statement itself; the executor's redelivery records the same statement just before, so that write is refused.
    The event goes on with the job as the executor recorded it and completes it, rather than being dropped as of
    no job, which left the job SUBMITTED until the reconciler."""
    message = queued(ports)
    statement_id = ports.warehouse.execute(
        "select 1", identity=DatabaseIdentity(db_user="tenant_acme"), name=message.job_id, client_token=message.job_id
    )
    ports.warehouse.statements[statement_id].created_at = utcnow() - timedelta(minutes=5)
    change = ports.warehouse.finish(statement_id, columns=[Column("n", "int4")], pages=["1\n"], rows=1)
    clock = [1000.0]
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(lifecycle.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))
    transition = ports.jobs.transition

    def the_executor_records_it_first(job_id, status, **changes):
        if status is JobStatus.SUBMITTED:
            transition(job_id, status, **changes)  # the redelivered message, through its ClientToken
        return transition(job_id, status, **changes)

    monkeypatch.setattr(ports.jobs, "transition", the_executor_records_it_first)
    ended = complete_statement(ports, change)
    assert (ended.status, ended.statement_id) == (JobStatus.COMPLETED, statement_id)
    assert ports.events.types() == ["Job Completed"]
