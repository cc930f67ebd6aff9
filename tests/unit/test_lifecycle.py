"""The executor and the completion consumer (spectra.lifecycle) on in-memory ports: every step safe to repeat."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from events import (
    Delivery,
    JobEventDetail,
    JobQueuedMessage,
    JobStatus,
    ResultFormat,
    StatementState,
    StatementStatusChange,
)
from spectra import lifecycle
from spectra.errors import NotFound, ResultTooLarge, StartNotRecorded, StatementRejected, Throttled
from spectra.jobs import Job, QueryParameter, new_job_id, utcnow
from spectra.lifecycle import complete_statement, execute_job
from spectra.publisher import PublishFailed
from spectra.queries import cancel_job, submit_query
from spectra.reconciliation import reconcile
from spectra.results import inline_rows
from spectra.tenants import Caller
from spectra.warehouse import Column, DatabaseIdentity
from tests.unit.fakes import CountingReads, make_ports, make_settings

pytestmark = pytest.mark.unit

COLUMNS = [Column("n", "int4"), Column("s", "varchar")]


@pytest.fixture
def ports():
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    return ports


def queued(ports, *, db_user: str = "tenant_acme", tenant: str = "acme", **fields) -> JobQueuedMessage:
    now = utcnow()
    job = Job(
        job_id=new_job_id(),
        tenant_id=tenant,
        db_user=db_user,
        sql="select n, s from t where n > :min",
        created_at=now,
        updated_at=now,
        **{"parameters": [QueryParameter(name="min", value="0")], **fields},
    )
    ports.jobs.create(job)
    return JobQueuedMessage(job_id=job.job_id, tenant_id=tenant)


def running(ports, **fields) -> Job:
    return execute_job(ports, queued(ports, **fields))


# -- execute_job ----------------------------------------------------------------------------------------------------


def test_execute_starts_the_statement_and_records_it(ports):
    message = queued(ports)
    job = execute_job(ports, message)
    assert job.status is JobStatus.SUBMITTED and job.submitted_at is not None
    [statement] = ports.warehouse.statements.values()
    assert job.statement_id == statement.statement_id
    assert (statement.name, statement.client_token) == (message.job_id, message.job_id)
    assert statement.identity == DatabaseIdentity(db_user="tenant_acme")
    assert statement.parameters == [{"name": "min", "value": "0"}]
    assert ports.jobs.get(job.job_id) == job


def test_on_serverless_a_job_runs_with_its_tenants_secret():
    ports = make_ports(settings=make_settings(redshift_cluster_id=None, redshift_workgroup="wg"))
    secret = "arn:aws:secretsmanager:us-east-1:0:secret:spectra/tenants/serverless-AbCdEf"
    ports.tenants.create_tenant("serverless", secret_arn=secret)
    job = running(ports, db_user="", tenant="serverless")
    assert ports.warehouse.statements[job.statement_id].identity == DatabaseIdentity(secret_arn=secret)


def test_a_duplicate_message_runs_one_statement(ports):
    message = queued(ports)
    first = execute_job(ports, message)
    assert execute_job(ports, message) is None
    assert ports.warehouse.executed() == [message.job_id]
    assert ports.jobs.get(message.job_id) == first


def test_a_job_submitted_without_statement_resumes_with_the_same_client_token(ports):
    message = queued(ports)
    # An earlier attempt started the statement and died before recording it.
    ports.jobs.transition(message.job_id, JobStatus.SUBMITTED)
    earlier = ports.warehouse.execute(
        "select n, s from t where n > :min",
        identity=DatabaseIdentity(db_user="tenant_acme"),
        name="x",
        client_token=message.job_id,
    )

    job = execute_job(ports, message)
    assert job.statement_id == earlier
    assert len(ports.warehouse.statements) == 1


def died_between_start_and_record(ports, monkeypatch, message) -> str:
    """An attempt whose ExecuteStatement succeeded and whose function died before the QUEUED -> SUBMITTED write:
    the statement it returns runs on in the warehouse."""
    transition = ports.jobs.transition

    def dies(job_id, status, **changes):
        if status is JobStatus.SUBMITTED:
            raise RuntimeError("the executor's environment went away")
        return transition(job_id, status, **changes)

    with monkeypatch.context() as patched:
        patched.setattr(ports.jobs, "transition", dies)
        with pytest.raises(RuntimeError):
            execute_job(ports, message, first_delivery=True)
    [statement_id] = list(ports.warehouse.statements)
    assert ports.warehouse.statements[statement_id].status == "SUBMITTED"
    return statement_id


def test_a_job_given_up_on_its_last_delivery_stops_the_statement_an_earlier_attempt_started(ports, monkeypatch):
    """The redeliveries are throttled up to the queue's last, which fails the job unstarted and frees its slot: the
    statement the dead attempt started must not run on (a write commit) behind a job its tenant was told failed,
    outside its cap, with no message left to come back and find it (found by the races review)."""
    message = queued(ports)
    statement_id = died_between_start_and_record(ports, monkeypatch, message)
    ports.warehouse.throttle_next(times=2)
    with pytest.raises(Throttled):
        execute_job(ports, message)
    assert execute_job(ports, message, final_attempt=True) is None
    job = ports.jobs.get(message.job_id)
    assert (job.status, job.error.code) == (JobStatus.FAILED, "warehouse_unavailable")
    assert ports.slots.holders("acme") == {}
    assert ports.warehouse.statements[statement_id].status == "ABORTED"


def test_a_full_warehouse_on_the_last_delivery_leaves_the_job_waiting_for_a_message_of_its_own(ports):
    """ActiveStatementsExceededException says the account's active statements are all taken: capacity, as a tenant's
    cap is. The job failed 'warehouse_unavailable' after five deliveries (15 minutes on AWS; the throttling review);
    it waits on, its message sent again after a pause, keeping its slot, and runs once there is room."""
    message = queued(ports)
    ports.warehouse.throttle_next(aws_error="ActiveStatementsExceededException")
    sent = len(ports.queue.messages)
    assert execute_job(ports, message, final_attempt=True) is None
    assert ports.jobs.get(message.job_id).status is JobStatus.QUEUED
    assert ports.queue.messages[sent:] == [message]
    assert 0 < ports.queue.delays[-1] < ports.settings.requeue_after_seconds
    assert list(ports.slots.holders("acme")) == [message.job_id]
    assert execute_job(ports, ports.queue.messages[-1]).status is JobStatus.SUBMITTED


def test_a_full_warehouse_fails_a_job_that_has_waited_its_hour(ports):
    message = queued(ports)
    waited = utcnow() - timedelta(seconds=ports.settings.pending_max_age_seconds + 1)
    ports.jobs._items[message.job_id]["created_at"] = waited.isoformat()
    ports.tenants.backdate("acme", waited)
    ports.warehouse.throttle_next(aws_error="ActiveStatementsExceededException")
    assert execute_job(ports, message, final_attempt=True) is None
    job = ports.jobs.get(message.job_id)
    assert (job.status, job.error.code) == (JobStatus.FAILED, "warehouse_unavailable")
    assert ports.slots.holders("acme") == {}


def test_a_job_refused_on_a_redelivery_stops_the_statement_an_earlier_attempt_started(monkeypatch):
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    message = queued(ports)
    statement_id = died_between_start_and_record(ports, monkeypatch, message)
    ports.tenants.set_active("acme", False)
    assert execute_job(ports, message) is None  # the redelivery
    job = ports.jobs.get(message.job_id)
    assert (job.status, job.error.code) == (JobStatus.FAILED, "tenant_inactive")
    assert ports.warehouse.statements[statement_id].status == "ABORTED"


def test_a_job_refused_on_the_reconcilers_requeue_stops_the_statement_an_earlier_attempt_started(monkeypatch):
    """The reconciler re-queues a QUEUED job because an attempt may have died between ExecuteStatement and its write.
    Its message is a new one, received a first time: a job it ends unstarted was not looked up by name, and the dead
    attempt's statement ran on (a write committed) behind a job told FAILED (found by the reconciler review)."""
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    message = lifecycle.queued_message(ports.jobs.get(queued(ports).job_id))  # the API's message, the job in it
    statement_id = died_between_start_and_record(ports, monkeypatch, message)  # and lost with the attempt
    ports.tenants.set_active("acme", False)
    assert reconcile(ports, now=utcnow() + timedelta(minutes=6)).requeued == 1
    [requeued] = ports.queue.messages
    assert execute_job(ports, requeued, first_delivery=True) is None  # receive count 1
    job = ports.jobs.get(message.job_id)
    assert (job.status, job.error.code) == (JobStatus.FAILED, "tenant_inactive")
    assert ports.warehouse.statements[statement_id].status == "ABORTED"


def test_a_job_cancelled_while_its_statement_starts_and_finishes_is_logged_as_run(ports, monkeypatch, caplog):
    """A DELETE lands between ExecuteStatement and the executor's write, and the short statement (a write-enabled
    tenant's INSERT) ends, committed, before the refused write's cancel: the job says CANCELLED though its statement
    ran, and nothing told the operator (found by the reconciler review)."""
    message = lifecycle.queued_message(ports.jobs.get(queued(ports).job_id))
    transition = ports.jobs.transition

    def delete_lands_meanwhile(job_id, status, **changes):
        if status is JobStatus.SUBMITTED:
            cancel_job(ports, Caller(tenant_id="acme", db_user="tenant_acme"), job_id)  # the tenant's DELETE
            ports.warehouse.finish(changes["statement_id"], rows=1)  # the short statement ends: committed
        return transition(job_id, status, **changes)

    monkeypatch.setattr(ports.jobs, "transition", delete_lands_meanwhile)
    with caplog.at_level("WARNING", logger="spectra.lifecycle"):
        assert execute_job(ports, message, first_delivery=True) is None
    [statement] = ports.warehouse.statements.values()
    assert (ports.jobs.get(message.job_id).status, statement.status) == (JobStatus.CANCELLED, "FINISHED")
    ran = f"job {message.job_id} is CANCELLED, yet its statement {statement.statement_id} ran to its end"
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "ran to its end" in r.getMessage()] == [
        ("WARNING", ran)  # a read: a warning; a job that may write is an error
    ]


def test_a_write_cancelled_while_its_statement_starts_ends_with_the_statements_own_outcome(monkeypatch):
    """The waits review: a write-enabled tenant's INSERT cancelled (a one-call query's wait running out, a DELETE)
    while the executor started it ended CANCELLED at once, the INSERT committed all the same, and the answer said
    CANCELLED. A queued job that may write and holds its slot is asked to stop instead: the executor cancels the
    statement it records, and the job ends with what the statement did."""
    from tests.unit.test_identity import writer_job

    ports = make_ports()
    writer_job(ports, "insert into acme_work.t values (1)")
    [message] = ports.queue.messages
    transition, answers = ports.jobs.transition, []

    def delete_lands_meanwhile(job_id, status, **changes):
        if status is JobStatus.SUBMITTED:
            answers.append(cancel_job(ports, Caller.of(ports.tenants.get("acme")), job_id))  # the tenant's DELETE
            ports.warehouse.finish(changes["statement_id"], rows=1)  # the short statement ends: committed
        return transition(job_id, status, **changes)

    monkeypatch.setattr(ports.jobs, "transition", delete_lands_meanwhile)
    started = execute_job(ports, message, first_delivery=True)
    [answer] = answers
    assert (answer.status, answer.cancel_requested_at is not None) == (JobStatus.QUEUED, True)  # a 202, not CANCELLED
    [statement] = ports.warehouse.statements.values()
    assert (started.status, started.statement_id, statement.status) == (
        JobStatus.SUBMITTED,
        statement.statement_id,
        "FINISHED",
    )
    ended = complete_statement(ports, ports.warehouse.status_change(statement.statement_id))
    assert ended.status is JobStatus.COMPLETED  # the INSERT ran: the job says so
    assert ports.events.types() == ["Job Completed"]


@pytest.mark.parametrize("minutes", [5, 65])
def test_a_write_asked_to_stop_whose_slot_was_reclaimed_ends_cancelled_not_in_line(minutes):
    """The lifecycle review: asked to stop (202) while an executor held its slot, the executor died, another claim
    at the cap reclaimed the slot, and the job's redelivery parked it in line: the reconciler left it waiting for a
    slot (a tenant at cap 0 frees none) and, at the hour, failed it not_started with a "Job Failed" event."""
    from tests.unit.test_identity import writer_job

    ports = make_ports()
    job = writer_job(ports, "insert into acme_work.t values (1)")
    ports.tenants.update_tenant("acme", max_running_statements=1)
    ports.slots.claim("acme", job.job_id, limit=1, now=utcnow().timestamp() - 120)  # taken by an executor that died
    caller = Caller.of(ports.tenants.get("acme"))
    assert cancel_job(ports, caller, job.job_id).cancel_requested_at is not None  # 202 cancel_requested
    other, _ = submit_query(ports, caller, sql="select 1", parameters=[], fmt=ResultFormat.JSON)
    assert execute_job(ports, lifecycle.queued_message(other), first_delivery=True).status is JobStatus.SUBMITTED
    assert execute_job(ports, lifecycle.queued_message(job)) is None  # redelivered at the cap: in line
    assert list(ports.slots.waiting("acme")) == [job.job_id]
    reconcile(ports, now=utcnow() + timedelta(minutes=minutes))
    ended = ports.jobs.get(job.job_id)
    assert (ended.status, ended.error) == (JobStatus.CANCELLED, None)
    assert ports.events.types() == ["Job Cancelled"] and list(ports.slots.waiting("acme")) == []
    assert len(ports.warehouse.statements) == 1  # the other job's alone


def test_a_write_woken_since_the_reconciler_saw_its_line_is_left_to_the_executor_starting_it(caplog):
    """The diff review of the test above's mend: the run's view of the line was minutes old, the job had been woken,
    and an executor was inside ExecuteStatement when the DELETE (202) and then the reconciler came: ended CANCELLED
    there, its INSERT committed all the same ("Job Completed" refused, "Job Cancelled" sent)."""
    from spectra.reconciliation import Thresholds, WaitingLines, _reconcile_job
    from tests.unit.test_identity import writer_job

    ports = make_ports()
    job = writer_job(ports, "insert into acme_work.t values (1)")
    ports.tenants.update_tenant("acme", max_running_statements=1)
    caller = Caller.of(ports.tenants.get("acme"))
    other, _ = submit_query(ports, caller, sql="select 1", parameters=[], fmt=ResultFormat.JSON)
    assert execute_job(ports, lifecycle.queued_message(other), first_delivery=True).status is JobStatus.SUBMITTED
    assert execute_job(ports, lifecycle.queued_message(job), first_delivery=True) is None  # in line
    lines = WaitingLines(ports)
    assert lines.waits_its_turn("acme", job.job_id)  # the run's view, taken before the release below
    statement_id = ports.jobs.get(other.job_id).statement_id
    complete_statement(ports, ports.warehouse.finish(statement_id, rows=0))  # its slot freed, the job woken
    start, outcomes = ports.warehouse.start, []

    def delete_and_reconcile_meanwhile(sql, **options):
        started = start(sql, **options)
        if options.get("name") == job.job_id:
            assert cancel_job(ports, caller, job.job_id).cancel_requested_at is not None  # 202: its slot is held
            fresh = ports.jobs.get(job.job_id)
            later = utcnow() + timedelta(minutes=10)
            thresholds = Thresholds.from_settings(ports.settings)
            outcomes.append(_reconcile_job(ports, fresh, fresh.created_at, later, thresholds, lines))
            ports.warehouse.finish(started.statement_id, rows=1)  # the INSERT commits at once
        return started

    ports.warehouse.start = delete_and_reconcile_meanwhile
    execute_job(ports, lifecycle.queued_message(job))
    recorded = ports.jobs.get(job.job_id)
    assert recorded.status is JobStatus.SUBMITTED  # left to the executor, which recorded its statement
    ended = complete_statement(ports, ports.warehouse.status_change(recorded.statement_id))
    assert ended.status is JobStatus.COMPLETED and ports.events.types() == ["Job Completed"] * 2  # the INSERT ran
    assert outcomes and outcomes[0].value != "expired"


def test_a_cancel_of_a_starting_write_that_was_throttled_is_sent_again_by_the_redelivery(monkeypatch):
    """The second diff review (reasoned): the attempt that recorded the statement of a job asked to stop sent
    CancelStatement once; throttled, its record failed, and the redelivery found the statement recorded and did
    nothing, so the statement ran on."""
    from tests.unit.test_identity import writer_job

    ports = make_ports()
    writer_job(ports, "insert into acme_work.t values (1)")
    [message] = ports.queue.messages
    transition = ports.jobs.transition

    def delete_lands_meanwhile(job_id, status, **changes):
        if status is JobStatus.SUBMITTED:
            cancel_job(ports, Caller.of(ports.tenants.get("acme")), job_id)  # answered 202: asked to stop
            ports.warehouse.throttle_next("cancel")
        return transition(job_id, status, **changes)

    monkeypatch.setattr(ports.jobs, "transition", delete_lands_meanwhile)
    with pytest.raises(Throttled):
        execute_job(ports, message, first_delivery=True)
    monkeypatch.undo()
    [statement] = ports.warehouse.statements.values()
    assert statement.status == "SUBMITTED"
    assert execute_job(ports, message) is None  # the redelivery
    assert statement.status == "ABORTED"


def test_the_apis_message_moved_back_from_the_dead_letter_queue_stops_an_earlier_attempts_statement(monkeypatch):
    """A copy of the API's own message redriven from the dead-letter queue is received a first time, after attempts
    any of which may have started the statement and died: a job it finds ended unstarted did not have that statement
    looked up, and it ran on (found by the first diff review)."""
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    message = lifecycle.queued_message(ports.jobs.get(queued(ports).job_id))  # the API's message, the job in it
    statement_id = died_between_start_and_record(ports, monkeypatch, message)
    cancel_job(ports, Caller(tenant_id="acme", db_user="tenant_acme"), message.job_id)  # QUEUED: CANCELLED at once
    redriven_at = ports.jobs.get(message.job_id).created_at + timedelta(minutes=30)
    assert execute_job(ports, message, first_delivery=True, sent_at=redriven_at) is None
    assert ports.warehouse.statements[statement_id].status == "ABORTED"


def test_the_latest_statement_of_a_jobs_name_is_found_across_a_daylight_saving_change():
    """Found by the clocks review: the lookup of an earlier attempt's statement (ListStatements by the job's name) took
    the latest by CreatedAt compared as strings. botocore parses the Data API's epoch seconds into datetimes of the
    machine's local zone (a developer's `make run` in New York): 01:10 EST, 20 minutes after 01:50 EDT, sorts first
    as a string, and the older statement was the one cancelled."""
    from spectra.warehouse import StatementRunner

    edt, est = timezone(timedelta(hours=-4)), timezone(timedelta(hours=-5))  # what tzlocal() gives either side

    class ListingDataApi:
        def list_statements(self, **request):
            return {
                "Statements": [
                    {"Id": "earlier", "StatementName": "j_1", "CreatedAt": datetime(2024, 11, 3, 1, 50, tzinfo=edt)},
                    {"Id": "later", "StatementName": "j_1", "CreatedAt": datetime(2024, 11, 3, 1, 10, tzinfo=est)},
                    {"Id": "untimed", "StatementName": "j_1"},
                ]
            }

    assert StatementRunner(ListingDataApi(), database="dev", cluster_id="c").find("j_1") == "later"


def test_a_job_cancelled_while_queued_stops_on_a_redelivery_the_statement_an_earlier_attempt_started(monkeypatch):
    ports = make_ports()
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    message = queued(ports)
    statement_id = died_between_start_and_record(ports, monkeypatch, message)
    ports.jobs.update(message.job_id, [JobStatus.QUEUED], cancel_requested_at=utcnow())
    assert execute_job(ports, message) is None
    assert ports.jobs.get(message.job_id).status is JobStatus.CANCELLED
    assert ports.warehouse.statements[statement_id].status == "ABORTED"


@pytest.mark.parametrize("why", ["cancelled", "deactivated"])
def test_a_redelivery_that_finds_an_earlier_attempts_statement_ended_lets_the_job_end_with_its_outcome(
    monkeypatch, why
):
    """The lifecycle review: asked to stop (202) while its executor held its slot, the executor died between
    ExecuteStatement and recording it, and the INSERT committed; the redelivery wrote CANCELLED first, then found the
    statement FINISHED and only logged it: the client, the event and the webhook said CANCELLED beside the row. The
    statement is now looked for first and, ended, recorded: the job ends COMPLETED through its status event, as the
    README's "Cancelling" says. A tenant deactivated meanwhile likewise (its write had committed)."""
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    message = queued(ports)
    statement_id = died_between_start_and_record(ports, monkeypatch, message)
    if why == "cancelled":
        ports.jobs.update(message.job_id, [JobStatus.QUEUED], cancel_requested_at=utcnow())
    else:
        ports.tenants.set_active("acme", False)
    finished = ports.warehouse.finish(statement_id, columns=[Column("n", "int4")], pages=["1\n"])
    assert execute_job(ports, message) is None  # the redelivery
    recorded = ports.jobs.get(message.job_id)
    assert (recorded.status, recorded.statement_id) == (JobStatus.SUBMITTED, statement_id)
    assert ports.events.types() == []
    assert complete_statement(ports, finished).status is JobStatus.COMPLETED
    assert ports.events.types() == ["Job Completed"] and ports.slots.holders("acme") == {}


def test_a_redelivery_whose_look_for_an_earlier_statement_is_throttled_still_ends_the_job(monkeypatch):
    """The diff review of the look-first mend: ListStatements throttled on the queue's last delivery raised before
    any ending was written, and the job stayed QUEUED with its cancel request and its slot until the reconciler. The
    job ends as asked, and the statement is looked for after it, as before the mend."""
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    message = queued(ports)
    statement_id = died_between_start_and_record(ports, monkeypatch, message)
    ports.jobs.update(message.job_id, [JobStatus.QUEUED], cancel_requested_at=utcnow())
    ports.warehouse.throttle_next("find", times=1)
    assert execute_job(ports, message, final_attempt=True) is None
    assert ports.jobs.get(message.job_id).status is JobStatus.CANCELLED
    assert ports.slots.holders("acme") == {}
    assert ports.warehouse.statements[statement_id].status == "ABORTED"  # looked for again after the ending


def test_a_duplicate_first_delivery_after_the_job_ended_leaves_no_slot_or_lease_behind(ports):
    """SQS may deliver the API's message twice, each copy a first delivery carrying the job. The second, come after
    the job completed, took a slot and an idle session, got the same statement back (the ClientToken) and, its
    write refused, kept both: the tenant's cap was one lower until a reclaim (found by the races review)."""
    message = lifecycle.queued_message(ports.jobs.get(queued(ports).job_id))  # the API's message, the job in it
    job = execute_job(ports, message, first_delivery=True)
    finished = ports.warehouse.finish(job.statement_id, columns=[Column("n", "int4")], pages=["1\n"])
    assert complete_statement(ports, finished).status is JobStatus.COMPLETED
    assert ports.slots.holders("acme") == {}

    assert execute_job(ports, message, first_delivery=True) is None  # the second copy
    assert ports.jobs.get(job.job_id).status is JobStatus.COMPLETED
    assert ports.slots.holders("acme") == {}
    assert not [s for s in ports.slots.sessions("acme").values() if s.job_id]


def test_throttling_propagates_and_leaves_the_job_resumable(ports):
    message = queued(ports)
    ports.warehouse.throttle_next()
    with pytest.raises(Throttled):
        execute_job(ports, message)
    stuck = ports.jobs.get(message.job_id)
    assert (stuck.status, stuck.statement_id) == (JobStatus.QUEUED, None)  # written once, after ExecuteStatement
    assert ports.events.events == []
    # quiet from now in the reconciler's eyes: SQS's own retries come first, without copies from the reconciler
    assert ports.jobs.pending_since(message.job_id) > stuck.created_at

    retried = execute_job(ports, message)  # SQS redelivers the message
    assert retried.statement_id is not None
    assert len(ports.warehouse.statements) == 1


def test_a_rejected_statement_fails_the_job_with_the_warehouse_message(ports):
    message = queued(ports)
    ports.warehouse.reject_next('user "tenant_acme" does not exist')
    assert execute_job(ports, message) is None
    job = ports.jobs.get(message.job_id)
    assert job.status is JobStatus.FAILED
    assert (job.error.code, job.error.message) == ("statement_rejected", 'user "tenant_acme" does not exist')
    [event] = ports.events.events
    assert event.detail_type == "Job Failed"
    assert event.detail.error == job.error
    assert job.event_published is True


def test_a_message_for_an_unknown_job_is_dropped(ports):
    assert execute_job(ports, JobQueuedMessage(job_id="j_gone", tenant_id="acme")) is None
    assert ports.warehouse.calls == []


# -- complete_statement ---------------------------------------------------------------------------------------------


def test_a_finished_statement_completes_the_job_once(ports):
    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n2,b\n"])
    done = complete_statement(ports, change)
    assert done.status is JobStatus.COMPLETED and done.completed_at is not None
    # the event went out first, and the terminal write recorded it: one write, out of the pending index
    assert (done.result.row_count, done.result.inline, done.event_published) == (2, True, True)
    assert ports.jobs.pending_since(job.job_id) is None

    [event] = ports.events.events
    assert event.detail_type == "Job Completed" and event.resources == [job.job_id]
    detail: JobEventDetail = event.detail
    assert (detail.job_id, detail.tenant_id, detail.status, detail.row_count) == (job.job_id, "acme", "COMPLETED", 2)
    assert detail.result_location is None  # inline: the rows are on the job record, nothing is in S3

    assert complete_statement(ports, change).status is JobStatus.COMPLETED  # a duplicate event
    assert len(ports.events.events) == 1
    assert [call for call in ports.warehouse.calls if call[0] == "csv_result"] == [("csv_result", job.statement_id)]


def test_a_job_made_on_a_host_whose_clock_runs_ahead_never_ends_before_it_began(ports):
    """created_at is the API host's clock, submitted_at the executor's, completed_at the completion consumer's: with
    the API's host 3 s ahead, a quick query was announced "completed" before it was created, with a negative
    duration_ms, and the API showed it submitted before it was made."""
    message = queued(ports)
    ahead = utcnow() + timedelta(seconds=3)
    ports.jobs.update(message.job_id, [JobStatus.QUEUED], created_at=ahead)  # as the API's host stamped it
    job = execute_job(ports, message)
    assert job.created_at == ahead and job.submitted_at >= job.created_at
    done = complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"]))
    assert done.completed_at >= done.submitted_at >= done.created_at
    [event] = ports.events.events
    assert event.detail.completed_at >= event.detail.created_at and event.detail.duration_ms >= 0


def test_a_finished_event_whose_result_cannot_be_read_yet_is_tried_again_not_completed_empty(ports):
    """The emulator fidelity review (reasoned; AWS does not say the event comes only once the result is readable):
    GetStatementResultV2 refused, the completion asked DescribeStatement and took its answer whatever its status: a
    statement still STARTED there, without a result set yet, completed its job with no rows (with one, as here, the
    attempt failed reading it). It is passing trouble: the event comes again."""
    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"])
    ports.warehouse.statements[job.statement_id].status = "STARTED"  # the Data API's own view lagging its event
    with pytest.raises(Throttled):
        complete_statement(ports, change)
    assert ports.jobs.get(job.job_id).status is JobStatus.SUBMITTED and ports.events.events == []
    ports.warehouse.statements[job.statement_id].status = "FINISHED"
    done = complete_statement(ports, change)  # the event's retry
    assert (done.status, done.result.row_count) == (JobStatus.COMPLETED, 1)


def test_a_failed_statement_fails_the_job_with_the_error_from_describe(ports):
    job = running(ports)
    change = ports.warehouse.fail(job.statement_id, 'ERROR: relation "t" does not exist')
    failed = complete_statement(ports, change)
    assert failed.status is JobStatus.FAILED
    assert (failed.error.code, failed.error.message) == ("statement_failed", 'ERROR: relation "t" does not exist')
    assert ports.events.types() == ["Job Failed"]


def test_an_aborted_statement_cancels_the_job_that_asked_for_it(ports):
    job = running(ports)
    ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], cancel_requested_at=utcnow())
    cancelled = complete_statement(ports, ports.warehouse.abort(job.statement_id))
    assert (cancelled.status, cancelled.statement_id) == (JobStatus.CANCELLED, job.statement_id)
    assert ports.events.types() == ["Job Cancelled"]


def test_an_aborted_job_is_announced_with_one_ending_even_when_a_cancel_comes_between_two_handlers(ports, monkeypatch):
    """Handler A reads the job (no cancel asked), a DELETE then asks to cancel, handler B (the event again, or the
    reconciler) ends it CANCELLED; A's FAILED write is refused, and A announces nothing: one ending, one event."""
    job = running(ports)
    change = ports.warehouse.abort(job.statement_id)
    stale = ports.jobs.get(job.job_id)
    ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], cancel_requested_at=utcnow())
    assert complete_statement(ports, change).status is JobStatus.CANCELLED
    get = ports.jobs.get
    monkeypatch.setattr(ports.jobs, "get", lambda job_id: stale if job_id == job.job_id else get(job_id))
    assert complete_statement(ports, change) is None
    assert ports.events.types() == ["Job Cancelled"]


def test_a_statement_aborted_by_the_warehouse_fails_the_job(ports):
    job = running(ports)  # nobody asked to cancel: an administrator or a timeout stopped it
    failed = complete_statement(ports, ports.warehouse.abort(job.statement_id))
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "statement_aborted")
    assert ports.events.types() == ["Job Failed"]


def test_a_failed_publish_leaves_the_job_for_the_redelivered_event(ports):
    """The event goes out before the terminal write: when it cannot, nothing is written and the redelivered status
    event (or the reconciler) finishes the job, event and all."""
    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"])
    held = ports.slots.holders("acme")
    ports.events.fail_next()
    with pytest.raises(PublishFailed):
        complete_statement(ports, change)
    unchanged = ports.jobs.get(job.job_id)
    assert (unchanged.status, unchanged.event_published) == (JobStatus.SUBMITTED, False)
    assert ports.jobs.pending_since(job.job_id) is not None  # the reconciler would find it too
    assert ports.slots.holders("acme") == held == {job.job_id: held[job.job_id]}  # the slot untouched

    finished = complete_statement(ports, change)  # the completion queue redelivers the event
    assert ports.events.types() == ["Job Completed"]
    assert (finished.status, finished.event_published, finished.result.row_count) == (JobStatus.COMPLETED, True, 1)
    assert ports.jobs.pending_since(job.job_id) is None
    assert ports.slots.holders("acme") == {}


def test_a_terminal_job_whose_event_was_lost_gets_it_published(ports):
    """A job finished the old way (write, then publish) whose publish failed: a later status event publishes it."""
    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"])
    ports.jobs.transition(job.job_id, JobStatus.COMPLETED, completed_at=utcnow())
    assert complete_statement(ports, change).status is JobStatus.COMPLETED
    assert ports.events.types() == ["Job Completed"]
    assert ports.jobs.get(job.job_id).event_published is True


def test_a_statement_of_no_job_is_ignored(ports):
    for name in (None, "", "someone-elses-statement"):
        change = StatementStatusChange(statementId="s-1", statementName=name, state=StatementState.FINISHED)
        assert complete_statement(ports, change) is None
    assert ports.warehouse.calls == [] and ports.events.events == []


def test_an_event_for_another_statement_of_the_job_is_ignored(ports):
    job = running(ports)
    stale = StatementStatusChange(statementId="other", statementName=job.job_id, state=StatementState.FAILED)
    assert complete_statement(ports, stale) is None
    assert ports.jobs.get(job.job_id).status is JobStatus.SUBMITTED
    assert ports.events.events == []


@pytest.mark.parametrize("answer", [StatementRejected, NotFound], ids=["validation", "resource-not-found"])
def test_dml_without_a_result_set_counts_the_rows_affected(ports, answer):
    """Whichever code the Data API gives GetStatementResultV2 of a statement without a result set."""
    ports.warehouse.no_result_set_answer = answer
    job = running(ports)
    done = complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=42))
    assert done.status is JobStatus.COMPLETED
    assert done.result.row_count == 42
    assert done.result.columns == []
    assert ports.events.events[0].detail.row_count == 42


@pytest.mark.parametrize("fmt", list(ResultFormat))
def test_every_format_completes(ports, fmt):
    job = running(ports, format=fmt, delivery=Delivery.S3)
    done = complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"]))
    assert done.result.row_count == 1
    assert done.result.files[0].key.startswith(f"acme/{job.job_id}/part-00000.")
    assert done.result.location == f"s3://{ports.settings.results_bucket}/acme/{job.job_id}/"


def test_a_first_row_equal_to_the_column_names_is_kept(ports):
    job = running(ports, format=ResultFormat.JSON)
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "varchar")], pages=["n\nx\n"], rows=2)
    done = complete_statement(ports, change)
    assert done.result.row_count == 2
    assert inline_rows(done.result) == [["n"], ["x"]]


# -- races between the executor, completion, cancel and the reconciler ----------------------------------------------


def test_giving_up_on_an_unstarted_job_loses_to_an_executor_that_just_started_it(ports):
    from spectra.lifecycle import finish_job

    message = queued(ports)
    ports.jobs.transition(message.job_id, JobStatus.SUBMITTED)  # an executor between its two writes
    seen = ports.jobs.get(message.job_id)  # what a reconciler read: SUBMITTED, no statement
    ports.jobs.update(message.job_id, [JobStatus.SUBMITTED], statement_id="stmt-running")  # the executor wins
    assert finish_job(ports, seen, JobStatus.FAILED, unstarted=True) is None
    assert ports.jobs.get(message.job_id).status is JobStatus.SUBMITTED
    assert ports.events.types() == []


def test_a_status_event_before_the_executors_write_waits_for_it(ports):
    """The executor writes the job once, after ExecuteStatement: a short statement's event can come first. Completion
    reads the job again for a moment and finishes it once the start is recorded; the statement is not cancelled."""
    message = queued(ports)
    original_start, original_get = ports.warehouse.start, ports.jobs.get
    completions: list[Future] = []
    pool = ThreadPoolExecutor(1, thread_name_prefix="completion")
    completion_saw_it_queued = threading.Event()

    def get(job_id):
        job = original_get(job_id)
        if threading.current_thread().name.startswith("completion") and job.status is JobStatus.QUEUED:
            completion_saw_it_queued.set()
        return job

    def start_and_complete_at_once(*args, **kwargs):
        started = original_start(*args, **kwargs)
        change = ports.warehouse.finish(started.statement_id, columns=COLUMNS, pages=["1,a\n"])
        completions.append(pool.submit(complete_statement, ports, change))  # the event, before the executor writes
        assert completion_saw_it_queued.wait(5)
        return started

    ports.jobs.get = get

    ports.warehouse.start = start_and_complete_at_once
    started = execute_job(ports, message)
    assert started is not None and started.status is JobStatus.SUBMITTED
    finished = completions[0].result(timeout=10)
    pool.shutdown()
    assert finished is not None and finished.status is JobStatus.COMPLETED
    assert ports.jobs.get(message.job_id).status is JobStatus.COMPLETED
    assert not [call for call in ports.warehouse.calls if call[0] == "cancel"]


def test_a_status_event_whose_start_is_never_recorded_comes_back_later(ports, monkeypatch):
    """The executor died between ExecuteStatement and its write: the event is retried (the consumer reports it
    failed), and once the redelivered message has recorded the statement (ClientToken: the same one), it finishes."""
    monkeypatch.setattr(lifecycle, "START_RECORD_WAIT_SECONDS", 0.05)
    message = queued(ports)
    original_start = ports.warehouse.start
    changes = []

    def start_then_die(*args, **kwargs):
        started = original_start(*args, **kwargs)
        changes.append(ports.warehouse.finish(started.statement_id, columns=COLUMNS, pages=["1,a\n"]))
        raise RuntimeError("the executor's environment went away")

    ports.warehouse.start = start_then_die
    with pytest.raises(RuntimeError):
        execute_job(ports, message)
    with pytest.raises(StartNotRecorded):
        complete_statement(ports, changes[0])
    assert ports.jobs.get(message.job_id).status is JobStatus.QUEUED
    ports.warehouse.start = original_start
    assert execute_job(ports, message).statement_id == changes[0].statementId  # the redelivered message
    assert complete_statement(ports, changes[0]).status is JobStatus.COMPLETED  # the event, again
    assert len(ports.warehouse.statements) == 1


def test_throttling_on_the_last_delivery_fails_the_job_with_the_reason(ports):
    message = queued(ports)
    ports.warehouse.throttle_next()
    with pytest.raises(Throttled):
        execute_job(ports, message)  # an earlier delivery: retried later
    ports.warehouse.throttle_next()
    assert execute_job(ports, message, final_attempt=True) is None
    job = ports.jobs.get(message.job_id)
    assert (job.status, job.error.code) == (JobStatus.FAILED, "warehouse_unavailable")
    assert "Rate exceeded" in job.error.message
    assert ports.events.types() == ["Job Failed"]


# -- results that cannot be converted -------------------------------------------------------------------------------


def test_a_result_too_large_to_collect_in_a_run_fails_the_job_after_its_attempts_not_a_day_later(ports, monkeypatch):
    """The template review: Lambda's timeout cuts a collection without raising, so nothing counted it, and a result
    too large to collect in 90 s came back (the whole batch with it) until the Data API forgot the statement (24
    hours), the job holding its tenant's slot. Cut off within the invocation's time, a collection that had a fair
    share of a run counts as an attempt, and the last fails the job saying to ask for an export."""
    from spectra import deadline

    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n", "2,b\n"], rows=2)
    readings = []  # the clock deadline reads: the time left when a collection starts, then none
    monkeypatch.setattr(deadline, "_clock", lambda: readings.pop(0) if readings else 1_000.0)
    for attempt in range(1, ports.settings.result_max_attempts + 1):
        readings[:] = [0.0, 0.0]  # lasting's, and the collection's start: a full run's time left
        with deadline.lasting(deadline.FAIR_SECONDS + deadline.MARGIN_SECONDS):
            if attempt < ports.settings.result_max_attempts:
                with pytest.raises(deadline.OutOfTime):
                    complete_statement(ports, change)
                assert ports.jobs.get(job.job_id).result_attempts == attempt
            else:
                failed = complete_statement(ports, change)
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "result_failed")
    assert "took longer than the function may run: ask for delivery export" in failed.error.message
    assert ports.events.types() == ["Job Failed"]


def test_a_collection_begun_with_too_little_time_left_is_tried_again_uncounted(ports):
    """A small result after a large one in the same batch: cut off for want of time, not for its size."""
    from spectra import deadline

    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n", "2,b\n"], rows=2)
    with deadline.lasting(deadline.MARGIN_SECONDS), pytest.raises(deadline.OutOfTime):  # no time at all left
        complete_statement(ports, change)
    assert (ports.jobs.get(job.job_id).status, ports.jobs.get(job.job_id).result_attempts) == (JobStatus.SUBMITTED, 0)
    done = complete_statement(ports, change)  # the event again, in a run of its own
    assert (done.status, done.result.row_count) == (JobStatus.COMPLETED, 2)


def test_the_reconciler_says_out_of_time_not_throttled_when_a_collection_is_cut(ports, monkeypatch):
    """The second diff review: a collection cut in the reconciler was caught as the Data API's throttling ("reconciler
    throttled", throttled: true), and the query jobs after it were not looked at in the run's second pass."""
    from spectra import deadline

    job = running(ports)
    ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n", "2,b\n"], rows=2)  # its event lost
    readings = [0.0, 0.0]  # lasting's, and the collection's start: a full run's time left; then none
    monkeypatch.setattr(deadline, "_clock", lambda: readings.pop(0) if readings else 1_000.0)
    with deadline.lasting(deadline.FAIR_SECONDS + deadline.MARGIN_SECONDS):
        summary = reconcile(ports, now=utcnow() + timedelta(minutes=10))
    assert (summary.out_of_time, summary.throttled) == (True, False)
    assert ports.jobs.get(job.job_id).result_attempts == 1  # a fair share of a run: counted


def test_a_one_page_result_is_collected_however_little_time_is_left(ports):
    """The second diff review: the first page comes with the call that opens the result, and writing it takes
    moments; refused with 9 s left, a one-row result waited minutes for its event to come back."""
    from spectra import deadline

    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"], rows=1)
    with deadline.lasting(deadline.MARGIN_SECONDS - 1):
        assert complete_statement(ports, change).status is JobStatus.COMPLETED


def test_a_result_that_cannot_be_converted_fails_the_job_after_its_attempts(ports, caplog):
    """Each completion attempt (the status event redelivered, or the reconciler) counts; the last one fails the job
    with the reason instead of leaving it SUBMITTED for the reconciler to retry every minute for ever. The row it
    could not read is the job's error's (the tenant's own), never a log line's: pyarrow's error quotes it, and the
    tracebacks logged at ERROR printed it (found by the logs review)."""
    from spectra import logs
    from spectra.errors import ResultUnconvertible
    from spectra.reconciliation import reconcile

    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a,one field too many\n"], rows=1)
    caplog.set_level(logging.INFO)
    with pytest.raises(ResultUnconvertible), logs.record(job_id=job.job_id):
        complete_statement(ports, change)  # the status event's first delivery
    assert ports.jobs.get(job.job_id).status is JobStatus.SUBMITTED
    assert ports.jobs.get(job.job_id).result_attempts == 1

    later = utcnow() + timedelta(minutes=5)
    first_sweep = reconcile(ports, now=later)  # the reconciler tries too, and counts
    assert (first_sweep.errors, ports.jobs.get(job.job_id).result_attempts) == (1, 2)
    assert reconcile(ports, now=later + timedelta(seconds=30)).checked == 0  # it went to the back of the index
    second_sweep = reconcile(ports, now=later + timedelta(minutes=3))
    assert second_sweep.completed == 1

    failed = ports.jobs.get(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error.code == "result_unconvertible"
    assert "could not be converted to json" in failed.error.message and "Expected 2 columns" in failed.error.message
    assert ports.events.types() == ["Job Failed"]
    assert reconcile(ports, now=later + timedelta(minutes=6)).checked == 0  # nothing left for the reconciler
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) >= 3  # a retry, an error, the give-up
    assert "one field too many" not in caplog.text


def test_a_collection_that_outlives_the_reconciler_does_not_block_the_jobs_behind_it(ports, monkeypatch):
    """A run killed at its function's timeout while collecting one result counts no attempt: that job used to stay
    first in the index, so every later run died on it and nothing behind it was ever handled."""
    from spectra.reconciliation import reconcile

    class Killed(BaseException):
        """The function's timeout: nothing after it runs."""

    slow, other = running(ports), running(ports)
    for job in (slow, other):
        ports.warehouse.finish(job.statement_id, rows=0)  # both status events lost
    collect = lifecycle.collect_result

    def outlives_the_run(ports_, job, statement_id, info):
        if job.job_id == slow.job_id:
            raise Killed
        return collect(ports_, job, statement_id, info)

    monkeypatch.setattr(lifecycle, "collect_result", outlives_the_run)
    later = utcnow() + timedelta(minutes=5)
    for minute in range(3):
        with contextlib.suppress(Killed):
            reconcile(ports, now=later + timedelta(minutes=minute))
    assert ports.jobs.get(other.job_id).status is JobStatus.COMPLETED


def test_copies_of_a_status_event_racing_each_count_their_attempt(ports, monkeypatch):
    """Both copies read the job before either counted: each attempt still counts (it was read, plus one, written)."""
    from spectra.errors import ResultUnconvertible

    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a,one field too many\n"], rows=1)
    seen = ports.jobs.get(job.job_id)
    monkeypatch.setattr(ports.jobs, "get", lambda job_id: seen)
    for _ in range(2):
        with pytest.raises(ResultUnconvertible):
            complete_statement(ports, change)
    monkeypatch.undo()
    assert ports.jobs.get(job.job_id).result_attempts == 2


def test_a_slow_collection_outlived_by_other_handlers_giving_the_result_up_announces_one_ending(ports, monkeypatch):
    """The status event's copy read the job with no failed attempt, so it would publish "Job Completed" before its
    write. Its collection took minutes, while the reconciler's three collections failed and gave the result up:
    FAILED, "Job Failed". The copy then published "Job Completed" and its write was refused: two contradicting
    endings (found by the reconciler review). A slow collection writes first."""
    from botocore.exceptions import ClientError

    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"], rows=1)
    real_collect, clock = lifecycle.collect_result, [1000.0]
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: clock[0])

    def collect(ports_, job_, statement_id, info=None):
        if len(calls) > 0:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "PutObject")
        calls.append(statement_id)
        result = real_collect(ports_, job_, statement_id, info)
        for _ in range(ports.settings.result_max_attempts):  # the reconciler's runs, minutes apart, each failing
            with contextlib.suppress(ClientError):
                complete_statement(ports, change)
        clock[0] += 180
        return result

    calls: list[str] = []
    monkeypatch.setattr(lifecycle, "collect_result", collect)
    assert complete_statement(ports, change) is None  # given up meanwhile: this ending is not written
    assert ports.jobs.get(job.job_id).status is JobStatus.FAILED
    assert ports.events.types() == ["Job Failed"]


def fails_on_the_last_attempt(ports, job, change):
    """Two attempts that raise and count, then the third (``result_max_attempts``) that fails the job."""
    from botocore.exceptions import ClientError

    for attempt in (1, 2):
        with pytest.raises(ClientError):
            complete_statement(ports, change)
        assert ports.jobs.get(job.job_id).result_attempts == attempt
    failed = complete_statement(ports, change)
    assert (failed.status, failed.error.code, failed.result_attempts) == (JobStatus.FAILED, "result_failed", 3)
    return failed


def test_any_failure_to_collect_a_result_counts_and_the_last_attempt_fails_the_job(ports, monkeypatch):
    """Not only a page that cannot be converted: a result file S3 refuses (say) was retried with no end, the job
    SUBMITTED and holding its tenant's slot until the Data API forgot the statement a day later. A throttled read is
    not the result's fault and counts nothing."""
    from botocore.exceptions import ClientError

    from spectra import lifecycle
    from spectra.errors import Throttled

    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"], rows=1)
    denied = (  # as IAM words it: the function's role, the account, the bucket and the key
        "User: arn:aws:sts::123456789012:assumed-role/spectra-CompletionRole/spectra-completion is not authorized to"
        ' perform: s3:PutObject on resource: "arn:aws:s3:::spectra-results-123456789012/acme/j_1/part-00000.csv.gz"'
        " because no identity-based policy allows the s3:PutObject action"
    )
    refused = ClientError({"Error": {"Code": "AccessDenied", "Message": denied}}, "PutObject")

    def collect(*_args, **_kwargs):
        raise next(failures)

    failures = iter([Throttled("slow down"), refused, refused, refused])
    monkeypatch.setattr(lifecycle, "collect_result", collect)
    with pytest.raises(Throttled):
        complete_statement(ports, change)
    assert ports.jobs.get(job.job_id).result_attempts == 0
    failed = fails_on_the_last_attempt(ports, job, change)
    assert "AccessDenied: User: … is not authorized to perform: s3:PutObject on resource" in failed.error.message
    # the tenant is told what was refused, not the service's role, account, bucket or keys (found by the isolation
    # review: the whole of botocore's text went into the job's error, its event and its webhooks)
    for internal in ("arn:", "123456789012", "spectra-CompletionRole", "spectra-results", "part-00000"):
        assert internal not in failed.error.message
    assert ports.events.types() == ["Job Failed"]


def test_a_terminal_write_refused_counts_as_an_attempt_and_the_last_fails_the_job(ports, monkeypatch):
    """DynamoDB refusing the COMPLETED write (an item past 400 KB) was retried outside the attempts: the status event
    went to the DLQ, then the reconciler retried every minute for a day, publishing "Job Completed" each time."""
    from botocore.exceptions import ClientError

    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"], rows=1)
    too_large = ClientError(
        {"Error": {"Code": "ValidationException", "Message": "Item size has exceeded the maximum allowed size"}},
        "TransactWriteItems",
    )
    finish = ports.jobs.finish

    def refuse_completion(job, to, **kwargs):
        if to is JobStatus.COMPLETED:
            raise too_large
        return finish(job, to, **kwargs)

    monkeypatch.setattr(ports.jobs, "finish", refuse_completion)
    failed = fails_on_the_last_attempt(ports, job, change)
    assert "Item size has exceeded" in failed.error.message
    # the first try announces before its write; the tries after a failed attempt write first, and announce nothing
    # when refused
    assert ports.events.types() == ["Job Completed", "Job Failed"]


def test_a_bus_or_data_api_hiccup_at_the_terminal_write_counts_no_attempt(ports, monkeypatch):
    """Only a refused terminal write is the result's fault: a failed PutEvents (the event goes out first) or the
    Data API's throttling is retried as it is, or three passing hiccups failed a correct result."""
    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"], rows=1)
    finish = ports.jobs.finish
    hiccups = iter([PublishFailed("the bus is down"), Throttled("slow down")])

    def hiccup_then_finish(job, to, **kwargs):
        failure = next(hiccups, None)
        if failure is not None:
            raise failure
        return finish(job, to, **kwargs)

    monkeypatch.setattr(ports.jobs, "finish", hiccup_then_finish)
    for raised in (PublishFailed, Throttled):
        with pytest.raises(raised):
            complete_statement(ports, change)
        assert ports.jobs.get(job.job_id).result_attempts == 0
    assert complete_statement(ports, change).status is JobStatus.COMPLETED


def _aws_trouble():
    """What boto3 raises once its own retries are spent, for trouble that passes: throttled, a 5xx, no answer."""
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    def answered(code: str, status: int) -> ClientError:
        return ClientError(
            {"Error": {"Code": code, "Message": "try later"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Call"
        )

    return [
        answered("ThrottlingException", 400),  # EventBridge, DynamoDB's on-demand tables
        answered("ProvisionedThroughputExceededException", 400),
        answered("SlowDown", 503),  # S3
        answered("InternalServerError", 500),
        ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
        EndpointConnectionError(endpoint_url="https://events.us-east-1.amazonaws.com"),
    ]


@pytest.mark.parametrize("at", ["collection", "terminal write"])
def test_passing_aws_trouble_counts_no_attempt_and_a_good_result_completes(ports, monkeypatch, at):
    """Found by the AWS failures review: a DynamoDB, S3 or EventBridge call still throttled (or failing on AWS's side,
    or unanswered) after botocore's retries counted as a failed attempt, so three of them (minutes of an outage)
    failed a job whose result was fine, and one whose "Job Completed" had gone out then announced "Job Failed"."""
    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"], rows=1)
    troubles = _aws_trouble()
    hiccups = iter(troubles)
    if at == "collection":
        collect = lifecycle.collect_result

        def troubled(*args, **kwargs):
            failure = next(hiccups, None)
            if failure is not None:
                raise failure
            return collect(*args, **kwargs)

        monkeypatch.setattr(lifecycle, "collect_result", troubled)
    else:
        finish = ports.jobs.finish

        def troubled(job, to, **kwargs):
            failure = next(hiccups, None)
            if failure is not None:
                raise failure
            return finish(job, to, **kwargs)

        monkeypatch.setattr(ports.jobs, "finish", troubled)
    for failure in troubles:
        with pytest.raises(type(failure)):
            complete_statement(ports, change)
        assert ports.jobs.get(job.job_id).result_attempts == 0
    done = complete_statement(ports, change)
    assert done.status is JobStatus.COMPLETED and done.result.row_count == 1
    assert set(ports.events.types()) == {"Job Completed"}  # announced on each try of the write, never "Job Failed"


def test_a_long_statement_meeting_passing_trouble_as_it_ends_completes_and_announces_one_ending(ports, monkeypatch):
    """Found by the diff review of a bound put on passing trouble (counted from 6 hours after the statement started):
    a statement that had run 7 hours and then met three minutes of DynamoDB throttling at its terminal write failed
    ``result_failed`` after its "Job Completed" had gone out. Passing trouble counts nothing, however long the
    statement ran."""
    from botocore.exceptions import ClientError

    job = running(ports)
    job = ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], submitted_at=utcnow() - timedelta(hours=7))
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"], rows=1)
    finish = ports.jobs.finish
    throttles = iter(range(ports.settings.result_max_attempts))

    def throttled(job, to, **kwargs):
        if to is JobStatus.COMPLETED and next(throttles, None) is not None:
            answer = {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}
            raise ClientError({**answer, "ResponseMetadata": {"HTTPStatusCode": 400}}, "TransactWriteItems")
        return finish(job, to, **kwargs)

    monkeypatch.setattr(ports.jobs, "finish", throttled)
    for _ in range(ports.settings.result_max_attempts):
        with pytest.raises(ClientError):
            complete_statement(ports, change)
    assert complete_statement(ports, change).status is JobStatus.COMPLETED
    assert set(ports.events.types()) == {"Job Completed"}


def test_a_result_too_big_for_inline_fails_at_once(ports):
    job = running(ports, delivery=Delivery.INLINE)
    pages = ["".join(f"{i},x\n" for i in range(ports.settings.inline_max_rows + 1))]
    done = complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=pages))
    assert done.status is JobStatus.FAILED
    assert done.error.code == "result_too_large"
    assert done.result is None
    assert "inline holds at most" in done.error.message


def test_an_export_job_runs_an_unload_into_its_own_prefix_as_the_tenant(ports):
    job = running(ports, delivery=Delivery.EXPORT, format=ResultFormat.PARQUET, parameters=[])
    statement = ports.warehouse.statements[job.statement_id]
    bucket = ports.settings.results_bucket
    assert statement.sql.startswith("UNLOAD ('select n, s from t where n > :min') TO ")
    assert f"'s3://{bucket}/acme/{job.job_id}/part-'" in statement.sql
    assert "FORMAT AS PARQUET" in statement.sql and "MANIFEST VERBOSE" in statement.sql
    assert statement.identity == DatabaseIdentity(db_user="tenant_acme")


def test_an_exports_files_outlive_its_expiry_when_a_later_attempt_records_its_unload(ports, monkeypatch):
    """Found by the clocks review: an export's expires_at counted from submitted_at, stamped when an attempt records
    its statement. An attempt that started the UNLOAD and died before recording it left that to the redelivery (or
    the reconciler's re-queue, 5 minutes on), which got the same statement through its ClientToken: expires_at fell
    minutes past the parts' own lifetime, and across a UTC midnight GET /results handed out URLs to deleted files."""
    message = queued(ports, delivery=Delivery.EXPORT, format=ResultFormat.CSV, parameters=[])
    made = ports.jobs.get(message.job_id).created_at
    transition = ports.jobs.transition

    def dies_before_recording(job_id, status, **changes):
        if status is JobStatus.SUBMITTED:
            raise RuntimeError("the executor's environment went away")
        return transition(job_id, status, **changes)

    with monkeypatch.context() as attempt:  # the UNLOAD starts writing its parts; the attempt dies
        attempt.setattr(ports.jobs, "transition", dies_before_recording)
        with pytest.raises(RuntimeError):
            execute_job(ports, message, first_delivery=True)
    [statement_id] = ports.warehouse.statements
    monkeypatch.setattr(lifecycle, "utcnow", lambda: made + timedelta(minutes=5))  # the re-queued message
    assert execute_job(ports, message).statement_id == statement_id  # the same UNLOAD, through the ClientToken
    bucket = ports.settings.results_bucket
    part = {"url": f"s3://{bucket}/acme/{message.job_id}/part-000", "meta": {"content_length": 9, "record_count": 2}}
    manifest = {"entries": [part], "schema": {"elements": [{"name": "n", "type": {"base": "integer"}}]}}
    ports.bulk.files.client.put_object(  # the one FakeS3 behind every port
        Bucket=bucket, Key=f"acme/{message.job_id}/part-manifest", Body=json.dumps(manifest).encode()
    )
    done = complete_statement(ports, ports.warehouse.finish(statement_id))
    assert done.status is JobStatus.COMPLETED
    # the parts were written from the UNLOAD's start on, after the job was made: the bucket keeps them that long
    assert done.result.expires_at <= made + timedelta(days=ports.settings.result_retention_days)


def test_a_cancel_recorded_while_a_job_starts_again_stops_its_statement(ports):
    """A job SUBMITTED without its statement (an earlier executor stopped between its writes) is started again; a
    DELETE marks it cancel_requested while ExecuteStatement runs. The executor's write succeeds (the job is still
    SUBMITTED), and only its look at cancel_requested_at stops the statement, which would else run to its end."""
    message = queued(ports, status=JobStatus.SUBMITTED, submitted_at=utcnow())
    start = ports.warehouse.start

    def cancelled_meanwhile(*args, **kwargs):
        started = start(*args, **kwargs)
        ports.jobs.update(message.job_id, [JobStatus.SUBMITTED], cancel_requested_at=utcnow())
        return started

    ports.warehouse.start = cancelled_meanwhile
    job = execute_job(ports, message)
    assert job is not None and job.statement_id and job.cancel_requested_at is not None
    assert ports.warehouse.statements[job.statement_id].status == "ABORTED"


def test_a_write_cancelled_while_its_message_waited_never_reaches_the_warehouse():
    """The first delivery trusts the job its message carries, sent a moment after the job was made, however long the
    message then waited in the queue: a job cancelled meanwhile had its statement started, then cancelled, and a
    quick write could commit first. A job that may write is read before it starts; a read still is not."""
    ports = make_ports(settings=make_settings(tenant_cache_seconds=0))
    tenant = ports.tenants.create_tenant("acme", db_user="tenant_acme", allow_writes=True, owned_schemas=["acme"])
    writer = Caller.of(tenant)
    job, _ = submit_query(
        ports, writer, sql="delete from acme.orders where id = 7", parameters=[], fmt=ResultFormat.JSON
    )
    assert cancel_job(ports, writer, job.job_id).status is JobStatus.CANCELLED
    (message,) = ports.queue.messages
    execute_job(ports, message, first_delivery=True, sent_at=job.created_at + timedelta(milliseconds=20))
    assert ports.warehouse.calls == []

    reader = Caller.of(ports.tenants.create_tenant("globex", db_user="tenant_globex"))
    read, _ = submit_query(ports, reader, sql="select 1", parameters=[], fmt=ResultFormat.JSON)
    reads = CountingReads(ports.jobs)
    execute_job(replace(ports, jobs=reads), ports.queue.messages[-1], first_delivery=True, sent_at=read.created_at)
    assert reads.reads == 0 and ports.jobs.get(read.job_id).status is JobStatus.SUBMITTED


def test_a_failed_statements_message_reaches_the_tenant_without_arns(ports):
    """An export's UNLOAD (and a bulk job's COPY) run with the service's IAM role, and Redshift names it when it
    refuses: "Not authorized to get credentials of role arn:aws:iam::<account>:role/..." (found by the diff
    review). The tenant's own values stay: numbers are not taken out of a statement's message."""
    job = execute_job(ports, queued(ports, delivery=Delivery.EXPORT))
    error = (
        "Not authorized to get credentials of role arn:aws:iam::123456789012:role/spectra-unload (value 123456789012)"
    )
    failed = complete_statement(ports, ports.warehouse.fail(job.statement_id, error))
    assert failed.status is JobStatus.FAILED
    assert failed.error.message == "Not authorized to get credentials of role … (value 123456789012)"


# -- endings raced (found by the mutation review: only the ending that is written is announced) --------------------


def test_giving_a_result_up_while_another_handler_completes_the_job_announces_one_ending(ports, monkeypatch):
    """The last attempt's collection fails; between its count and its FAILED write, another handler (a copy of the
    status event, the reconciler) collects the result fine and completes the job. The give-up writes first, is
    refused, and announces nothing: no "Job Failed" after "Job Completed"."""
    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"], rows=1)
    ports.jobs.update(job.job_id, [JobStatus.SUBMITTED], result_attempts=ports.settings.result_max_attempts - 1)
    real_collect, real_count = lifecycle.collect_result, ports.jobs.count_result_attempt
    failing = [True]

    def collect(ports_, job_, statement_id, info=None):
        if failing[0]:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "PutObject")
        return real_collect(ports_, job_, statement_id, info)

    def count_then_another_handler_completes(job_id):
        counted = real_count(job_id)
        failing[0] = False
        assert complete_statement(ports, change).status is JobStatus.COMPLETED
        return counted

    monkeypatch.setattr(lifecycle, "collect_result", collect)
    monkeypatch.setattr(ports.jobs, "count_result_attempt", count_then_another_handler_completes)
    assert complete_statement(ports, change) is None
    assert ports.jobs.get(job.job_id).status is JobStatus.COMPLETED
    assert ports.events.types() == ["Job Completed"]


def test_a_cancel_seen_after_another_handler_failed_the_aborted_job_announces_nothing(ports, monkeypatch):
    """Handler A read the aborted job before the DELETE and failed it; handler B read it after the DELETE (cancel
    asked) but before A's write: B's CANCELLED write is refused, and B must not have announced it first."""
    job = running(ports)
    change = ports.warehouse.abort(job.statement_id)
    seen_by_b = ports.jobs.get(job.job_id).model_copy(update={"cancel_requested_at": utcnow()})
    assert complete_statement(ports, change).status is JobStatus.FAILED  # A
    get = ports.jobs.get
    monkeypatch.setattr(ports.jobs, "get", lambda job_id: seen_by_b if job_id == job.job_id else get(job_id))
    assert complete_statement(ports, change) is None  # B
    assert ports.events.types() == ["Job Failed"]


def test_a_late_handler_rewriting_a_first_row_that_spells_the_column_names_leaves_the_completed_files_whole(
    ports, monkeypatch
):
    """A first row equal to the column names is first read as a header line, and its result is written again once
    the row count shows it was data. Handler B (a copy of the status event, the reconciler) read the job SUBMITTED;
    handler A then completed it. B's first pass wrote over A's files at the same keys without that row (and a
    manifest of one row fewer), and B's second pass was throttled: B's retry found the job COMPLETED and stopped,
    so the job kept pointing at files that lost its first row. The second pass writes apart from the first."""
    import csv
    import gzip
    import io

    job = running(ports, format=ResultFormat.CSV)
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "varchar")], pages=["n\nx\n"], rows=2)
    seen_by_b = ports.jobs.get(job.job_id)
    done = complete_statement(ports, change)  # A
    assert (done.status, done.result.row_count) == (JobStatus.COMPLETED, 2)

    get = ports.jobs.get

    def throttled(statement_id):
        raise Throttled("Redshift Data API: ThrottlingException: Rate exceeded")

    monkeypatch.setattr(ports.jobs, "get", lambda job_id: seen_by_b if job_id == job.job_id else get(job_id))
    monkeypatch.setattr(ports.warehouse, "csv_result", throttled)  # the second pass's read
    with pytest.raises(Throttled):
        complete_statement(ports, change)  # B, to be retried
    monkeypatch.undo()
    assert complete_statement(ports, change).status is JobStatus.COMPLETED  # B's retry: nothing left to do

    result = ports.jobs.get(job.job_id).result
    s3 = ports.results._s3
    bucket = ports.settings.results_bucket
    parts = [list(csv.reader(io.StringIO(gzip.decompress(s3.body(bucket, f.key)).decode()))) for f in result.files]
    assert parts == [[["n"], ["n"], ["x"]]]  # the header line, then both rows
    assert json.loads(s3.body(bucket, result.manifest_key))["row_count"] == 2


def test_a_slow_result_too_big_for_inline_outlived_by_other_handlers_giving_it_up_announces_one_ending(
    ports, monkeypatch
):
    """As a slow collection that completes (above), one that finds the result too large for inline: it published
    "Job Failed" (result_too_large) before its write, whatever happened meanwhile. The reconciler's three
    collections had failed and given the result up (FAILED result_failed, announced): the job had two failures
    announced, for two reasons, and kept the other's. A slow refusal writes first too."""
    job = running(ports, delivery=Delivery.INLINE)
    pages = ["".join(f"{i},x\n" for i in range(ports.settings.inline_max_rows + 1))]
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=pages)
    real_collect, clock = lifecycle.collect_result, [1000.0]
    monkeypatch.setattr(lifecycle.time, "monotonic", lambda: clock[0])

    def collect(ports_, job_, statement_id, info=None):
        if calls:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "denied"}}, "GetStatementResultV2")
        calls.append(statement_id)
        for _ in range(ports.settings.result_max_attempts):  # the reconciler's runs, minutes apart, each failing
            with contextlib.suppress(ClientError):
                complete_statement(ports, change)
        clock[0] += 180
        return real_collect(ports_, job_, statement_id, info)  # too large for inline

    calls: list[str] = []
    monkeypatch.setattr(lifecycle, "collect_result", collect)
    assert complete_statement(ports, change) is None  # given up meanwhile: this ending is not written
    assert ports.jobs.get(job.job_id).error.code == "result_failed"
    assert ports.events.types() == ["Job Failed"]


@pytest.mark.parametrize("first", [JobStatus.COMPLETED, JobStatus.FAILED], ids=["completed-first", "refused-first"])
def test_an_inline_job_one_handler_completes_and_another_refuses_is_announced_once(ports, monkeypatch, first):
    """Whether rows fit inline is measured against the job item as each handler read it, and a cancel request stamped
    between two handlers' reads makes it longer: one handler can complete the job while another, just as quickly,
    refuses the same rows as too large. The one that did not win published its ending before its refused write, so
    the job was announced both Completed and Failed: a quick refusal after a completion, and (found by the diff
    review) a quick completion after a refusal. Every ending of an inline job is written first now."""
    job = running(ports, delivery=Delivery.INLINE)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,x\n"])
    real_collect = lifecycle.collect_result
    refused = ResultTooLarge("the rows do not fit inline beside this handler's copy of the job")

    def collect(ports_, job_, statement_id, info=None):
        if calls:  # the other handler, meanwhile: it refuses if this one completes, and the other way round
            if first is JobStatus.FAILED:
                raise refused
            return real_collect(ports_, job_, statement_id, info)
        calls.append(statement_id)
        assert complete_statement(ports, change).status is first
        if first is JobStatus.COMPLETED:
            raise refused
        return real_collect(ports_, job_, statement_id, info)

    calls: list[str] = []
    monkeypatch.setattr(lifecycle, "collect_result", collect)
    assert complete_statement(ports, change) is None  # its ending is refused: the other one's was written
    assert ports.jobs.get(job.job_id).status is first
    assert ports.events.types() == ["Job Completed" if first is JobStatus.COMPLETED else "Job Failed"]
