"""The executor and the completion consumer (spectra.lifecycle) on in-memory ports: every step safe to repeat."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events import JobEventDetail, JobQueuedMessage, JobStatus, ResultFormat, StatementState, StatementStatusChange
from spectra.errors import Throttled
from spectra.jobs import Job, QueryParameter, new_job_id, utcnow
from spectra.lifecycle import complete_statement, execute_job
from spectra.publisher import PublishFailed
from spectra.warehouse import Column, DatabaseIdentity
from tests.unit.fakes import make_ports, make_settings

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
        parameters=[QueryParameter(name="min", value="0")],
        created_at=now,
        updated_at=now,
        **fields,
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


def test_throttling_propagates_and_leaves_the_job_resumable(ports):
    message = queued(ports)
    ports.warehouse.throttle_next()
    with pytest.raises(Throttled):
        execute_job(ports, message)
    stuck = ports.jobs.get(message.job_id)
    assert (stuck.status, stuck.statement_id) == (JobStatus.SUBMITTED, None)
    assert ports.events.events == []

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
    assert (done.result.row_count, done.result.inline, done.event_published) == (2, True, False)
    assert ports.jobs.get(job.job_id).event_published is True

    [event] = ports.events.events
    assert event.detail_type == "Job Completed" and event.resources == [job.job_id]
    detail: JobEventDetail = event.detail
    assert (detail.job_id, detail.tenant_id, detail.status, detail.row_count) == (job.job_id, "acme", "COMPLETED", 2)
    assert detail.result_location == f"s3://{ports.settings.results_bucket}/acme/{job.job_id}/"

    assert complete_statement(ports, change).status is JobStatus.COMPLETED  # a duplicate event
    assert len(ports.events.events) == 1
    assert [call for call in ports.warehouse.calls if call[0] == "csv_result"] == [("csv_result", job.statement_id)]


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


def test_a_statement_aborted_by_the_warehouse_fails_the_job(ports):
    job = running(ports)  # nobody asked to cancel: an administrator or a timeout stopped it
    failed = complete_statement(ports, ports.warehouse.abort(job.statement_id))
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "statement_aborted")
    assert ports.events.types() == ["Job Failed"]


def test_a_failed_publish_is_retried_on_redelivery_without_changing_the_job_again(ports):
    job = running(ports)
    change = ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"])
    ports.events.fail_next()
    with pytest.raises(PublishFailed):
        complete_statement(ports, change)
    finished = ports.jobs.get(job.job_id)
    assert (finished.status, finished.event_published) == (JobStatus.COMPLETED, False)
    assert ports.jobs.pending_since(job.job_id) is not None  # the reconciler would find it too

    complete_statement(ports, change)  # a copy of the event at once: the finisher may still be announcing it
    assert ports.events.types() == []
    # the completion queue redelivers the event after its visibility timeout (minutes)
    ports.jobs.update(job.job_id, [JobStatus.COMPLETED], completed_at=finished.completed_at - timedelta(minutes=5))
    complete_statement(ports, change)
    assert ports.events.types() == ["Job Completed"]
    again = ports.jobs.get(job.job_id)
    assert again.event_published is True
    assert again.result == finished.result
    assert [call for call in ports.warehouse.calls if call[0] == "csv_result"] == [("csv_result", job.statement_id)]
    assert ports.jobs.pending_since(job.job_id) is None


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


def test_dml_without_a_result_set_counts_the_rows_affected(ports):
    job = running(ports)
    done = complete_statement(ports, ports.warehouse.finish(job.statement_id, rows=42))
    assert done.status is JobStatus.COMPLETED
    assert done.result.row_count == 42
    assert done.result.columns == []
    assert ports.events.events[0].detail.row_count == 42


@pytest.mark.parametrize("fmt", list(ResultFormat))
def test_every_format_completes(ports, fmt):
    job = running(ports, format=fmt)
    done = complete_statement(ports, ports.warehouse.finish(job.statement_id, columns=COLUMNS, pages=["1,a\n"]))
    assert done.result.row_count == 1
    assert done.result.files[0].key.startswith(f"acme/{job.job_id}/part-00000.")


def test_a_first_row_equal_to_the_column_names_is_kept(ports):
    job = running(ports, format=ResultFormat.JSON)
    change = ports.warehouse.finish(job.statement_id, columns=[Column("n", "varchar")], pages=["n\nx\n"], rows=2)
    done = complete_statement(ports, change)
    assert done.result.row_count == 2
    assert ports.results.read_inline(done.result)["rows"] == [["n"], ["x"]]


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


def test_a_statement_that_finishes_before_the_executor_records_it_is_not_cancelled(ports):
    message = queued(ports)
    original_execute = ports.warehouse.execute

    def execute_and_complete_at_once(*args, **kwargs):
        statement_id = original_execute(*args, **kwargs)
        # the completion event lands before the executor's second write
        complete_statement(ports, ports.warehouse.finish(statement_id, columns=COLUMNS, pages=["1,a\n"], rows=1))
        return statement_id

    ports.warehouse.execute = execute_and_complete_at_once
    assert execute_job(ports, message) is None
    assert ports.jobs.get(message.job_id).status is JobStatus.COMPLETED
    assert not [call for call in ports.warehouse.calls if call[0] == "cancel"]


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
