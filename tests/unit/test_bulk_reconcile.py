"""The reconciler's bulk sweep (spectra.bulk.reconcile) on in-memory ports, its clock moved instead of waited for:
lost queue messages are re-sent and then given up on, lost completion events are replaced by DescribeStatement, and
an ended job's owed event and result files are settled, after which it leaves the pending index for good."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events import BulkJobQueuedMessage, BulkResultsRequested
from spectra.bulk.downloads import job_results
from spectra.bulk.lifecycle import complete_bulk_statement, start_bulk_job, write_owed_results
from spectra.bulk.models import BulkOperation, BulkState
from spectra.bulk.reconcile import RESULTS_ASKED_AGAIN_AFTER, RESULTS_GIVEN_UP_AFTER, reconcile_bulk
from spectra.errors import ResultsUnavailable
from spectra.jobs import utcnow
from spectra.publisher import PublishFailed
from spectra.reconciliation import ReconcileSummary, Thresholds, reconcile
from spectra.tenants import Caller
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import make_ports, make_settings

pytestmark = pytest.mark.unit

BODY = b"id,name,city\n1,Ann,Oslo\n2,Bob,Rome\n"


def bulk_ports(**settings):
    ports = make_ports(settings=make_settings(**settings))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name", "city"])
    return ports


@pytest.fixture
def ports():
    return bulk_ports()


def queued(ports, *, waited: timedelta = timedelta(0)) -> BulkJobQueuedMessage:
    """A job UploadComplete since ``waited`` ago (created then too)."""
    since = utcnow() - waited
    ports.tenants.backdate("acme", min(since, ports.tenants.get("acme").created_at))
    job = bulk_job(BulkOperation.INSERT, state=BulkState.UPLOAD_COMPLETE, queued_at=since, created_at=since)
    source = ports.bulk.files.put(f"acme/{job.job_id}/uploads/batch.csv", BODY)
    ports.bulk.jobs.create(job.model_copy(update={"files": [source]}))
    return BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme")


def sweep(ports, after_seconds: float) -> ReconcileSummary:
    summary = ReconcileSummary()
    reconcile_bulk(
        ports, utcnow() + timedelta(seconds=after_seconds), Thresholds.from_settings(ports.settings), summary
    )
    return summary


def job_of(ports, message):
    return ports.bulk.jobs.get(message.job_id)


def started(ports):
    message = queued(ports)
    return start_bulk_job(ports, message)


# -- jobs that never reached the warehouse --------------------------------------------------------------------------


def test_a_queued_job_waits_then_is_queued_again_spaced_by_the_requeue_delay(ports):
    message = queued(ports)
    assert sweep(ports, 30).checked == 0  # not quiet for reconcile_after_seconds yet
    assert sweep(ports, 120).waiting == 1  # SQS's own retry comes first
    assert ports.queue.messages == []

    summary = sweep(ports, 301)
    assert (summary.checked, summary.requeued) == (1, 1)
    assert ports.queue.messages == [BulkJobQueuedMessage(job_id=message.job_id, tenant_id="acme")]
    checked_at = ports.bulk.jobs.pending_since(message.job_id)
    assert checked_at > utcnow() + timedelta(seconds=290)  # moved to the back of the index
    assert sweep(ports, 301 + 120).waiting == 1  # not re-sent at every run
    assert sweep(ports, 301 + 301).requeued == 1
    assert len(ports.queue.messages) == 2
    assert job_of(ports, message).state is BulkState.UPLOAD_COMPLETE


def test_a_requeued_message_starts_the_job_once(ports):
    message = queued(ports)
    sweep(ports, 301)
    job = start_bulk_job(ports, ports.queue.messages[0])
    assert start_bulk_job(ports, message) is None  # the original shows up late: nothing more
    assert [m for m, _ in ports.warehouse.calls].count("execute_batch") == 1
    assert job.statement_id


def test_a_job_started_but_never_submitted_is_queued_again(ports):
    message = queued(ports)
    ports.bulk.jobs.transition(message.job_id, BulkState.IN_PROGRESS)  # the executor died between its writes
    assert sweep(ports, 301).requeued == 1


def test_a_job_that_never_starts_is_given_up_with_the_reason(ports):
    message = queued(ports)
    summary = sweep(ports, 3600)
    assert summary.expired == 1
    job = job_of(ports, message)
    assert (job.state, job.error.code) == (BulkState.FAILED, "not_started")
    assert "3600 seconds" in job.error.message
    assert ports.events.types() == ["Bulk Job Failed"]
    assert job.results_ready and ports.bulk.jobs.pending_since(job.job_id) is None
    assert ports.queue.messages == []


# -- lost completion events -----------------------------------------------------------------------------------------


def test_a_running_statement_is_left_running_and_moved_back(ports):
    job = started(ports)
    summary = sweep(ports, 120)
    assert summary.still_running == 1
    assert job_of(ports, job).state is BulkState.IN_PROGRESS
    assert ports.bulk.jobs.pending_since(job.job_id) > utcnow() + timedelta(seconds=110)


def test_a_finished_statement_whose_event_was_lost_completes_the_job(ports):
    job = started(ports)
    ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []})  # no event delivered
    summary = sweep(ports, 120)
    assert summary.completed == 1
    done = job_of(ports, job)
    assert (done.state, done.counts.processed, done.counts.failed) == (BulkState.JOB_COMPLETE, 2, 0)
    assert ports.events.types() == ["Bulk Job Completed"]
    assert ports.bulk.jobs.pending_since(job.job_id) is None


def test_a_statement_the_warehouse_forgot_fails_the_job(ports):
    job = started(ports)
    del ports.warehouse.statements[job.statement_id]  # results expire after 24 hours
    assert sweep(ports, 120).expired == 1
    failed = job_of(ports, job)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "statement_lost")


def test_throttling_stops_the_sweep(ports):
    first, second = started(ports), started(ports)
    ports.warehouse.throttle_next("describe")
    summary = sweep(ports, 120)
    assert summary.throttled is True and summary.more_pending is True
    assert summary.still_running == 0
    assert {job_of(ports, j).state for j in (first, second)} == {BulkState.IN_PROGRESS}


# -- settling what an ended job owes --------------------------------------------------------------------------------


def test_an_unpublished_event_is_published_and_the_job_leaves_the_index(ports):
    job = started(ports)
    ports.events.fail_next()
    with pytest.raises(PublishFailed):
        complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []}))
    ended = job_of(ports, job)
    assert (ended.state, ended.results_ready, ended.event_published) == (BulkState.JOB_COMPLETE, True, False)

    assert sweep(ports, 120).published == 1
    assert ports.events.types() == ["Bulk Job Completed"]
    assert job_of(ports, job).event_published is True
    assert ports.bulk.jobs.pending_since(job.job_id) is None  # settled: not read again by every later run
    assert sweep(ports, 600).checked == 0


def test_lost_result_files_are_asked_for_again_once_a_writer_would_have_finished():
    """While the files may be being written (the results function runs up to 900 s), nobody asks again: a second
    writer would only rewrite the same files beside the first. Past that, the request was lost: ask again."""
    ports = bulk_ports(bulk_inline_results_max_bytes=1)
    job = started(ports)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []}))
    ports.bulk.results_queue.messages.clear()  # the request was lost
    for minute in range(2, 16):
        assert sweep(ports, minute * 60).waiting == 1
    assert ports.bulk.results_queue.messages == []

    assert sweep(ports, RESULTS_ASKED_AGAIN_AFTER.total_seconds() + 60).published == 1
    assert ports.bulk.results_queue.messages == [BulkResultsRequested(job_id=job.job_id, tenant_id="acme")]
    assert ports.bulk.jobs.pending_since(job.job_id) is not None  # still owed
    assert ports.events.types() == ["Bulk Job Completed"]  # the event was out already: not sent twice


def test_while_the_event_is_owed_the_result_files_are_still_asked_for_once_per_writer():
    """PutEvents failing for a while: each run tries the event again, but asked for the result files again too, a
    new writer every minute beside one that runs up to 900 s (found by review: 11 requests in 10 minutes)."""
    ports = bulk_ports(bulk_inline_results_max_bytes=1)  # a large job: its files come from the results function
    job = started(ports)
    ports.events.fail_next(1000)
    with pytest.raises(PublishFailed):
        complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []}))
    assert len(ports.bulk.results_queue.messages) == 1
    for minute in range(1, 16):
        sweep(ports, minute * 61)
    assert len(ports.bulk.results_queue.messages) == 1  # the first request's writer may still be running
    for minute in range(16, 33):
        sweep(ports, minute * 61)
    assert len(ports.bulk.results_queue.messages) == 3  # once per 960 s since the job ended
    assert not job_of(ports, job).event_published


def test_result_files_the_load_no_longer_answers_for_are_given_up_not_retried_for_ever():
    """The files are written from the load's answers (its rejected rows), which the Data API keeps 24 hours: once it
    has forgotten them every attempt failed alike, the reconciler asked again every 16 minutes for good, and the
    result routes answered 409 'being written' for good. The routes now say they are gone, and why."""
    ports = bulk_ports(bulk_inline_results_max_bytes=1)
    job = started(ports)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []}))
    del ports.warehouse.statements[job.statement_id]  # 24 hours later
    write_owed_results(ports, BulkResultsRequested(job_id=job.job_id, tenant_id="acme"))
    ended = job_of(ports, job)
    assert ended.state is BulkState.JOB_COMPLETE and ended.results_ready
    assert ended.error.code == "results_unavailable" and "no longer kept" in ended.error.message
    assert ended.counts.processed == 2  # the warehouse's counts stand
    with pytest.raises(ResultsUnavailable) as gone:
        job_results(ports, Caller.of(ports.tenants.get("acme")), job.job_id, "successfulResults")
    assert gone.value.status == 410 and "no longer kept" in gone.value.message
    ports.bulk.results_queue.messages.clear()
    assert sweep(ports, 2 * RESULTS_ASKED_AGAIN_AFTER.total_seconds()).checked == 0  # settled: not asked again


def test_result_files_still_owed_20_hours_after_the_job_ended_are_given_up():
    """Input too large to write within the function's 15 minutes times out on every attempt: asked again every 16
    minutes with no end, burning a function's whole run each time."""
    ports = bulk_ports(bulk_inline_results_max_bytes=1)
    job = started(ports)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []}))
    ports.bulk.results_queue.messages.clear()  # every attempt dies
    assert sweep(ports, RESULTS_GIVEN_UP_AFTER.total_seconds() - 60).published == 1  # asked again
    assert not job_of(ports, job).results_ready
    ports.bulk.results_queue.messages.clear()
    assert sweep(ports, RESULTS_GIVEN_UP_AFTER.total_seconds() + 60).expired == 1
    ended = job_of(ports, job)
    assert ended.results_ready and ended.error.code == "results_unavailable" and "20 hours" in ended.error.message
    assert ports.bulk.results_queue.messages == [] and ports.bulk.jobs.pending_since(job.job_id) is None


def test_result_files_a_run_is_writing_are_not_given_up_under_it():
    """A run holding the lease when the 20 hours pass finishes its files: given up under it, they answered 410 over
    files that exist (found by the diff review)."""
    ports = bulk_ports(bulk_inline_results_max_bytes=1)
    job = started(ports)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []}))
    ports.bulk.results_queue.messages.clear()
    late = RESULTS_GIVEN_UP_AFTER.total_seconds() + 60
    writing = (utcnow() + timedelta(seconds=late + 600)).timestamp()  # the lease as the sweep's clock sees it
    ports.bulk.jobs.lease_results(job_of(ports, job), until=int(writing))
    summary = sweep(ports, late)
    assert (summary.expired, summary.published) == (0, 0)
    assert not job_of(ports, job).results_ready
    assert sweep(ports, late + 700).expired == 1  # its lease over: the run was stopped


def test_a_failed_jobs_result_files_given_up_answer_410_and_the_job_keeps_its_reason():
    ports = bulk_ports(bulk_inline_results_max_bytes=1)
    job = started(ports)
    complete_bulk_statement(ports, ports.warehouse.fail_batch(job.statement_id, "disk full", at=0))
    ports.bulk.results_queue.messages.clear()
    assert sweep(ports, RESULTS_GIVEN_UP_AFTER.total_seconds() + 60).expired == 1
    ended = job_of(ports, job)
    assert ended.state is BulkState.FAILED and "disk full" in ended.error.message  # its own reason stands
    with pytest.raises(ResultsUnavailable) as gone:  # not a 404 for a file never written
        job_results(ports, Caller.of(ports.tenants.get("acme")), job.job_id, "unprocessedrecords")
    assert "20 hours" in gone.value.message


def test_a_load_an_executor_is_starting_is_neither_given_up_nor_queued_again():
    """An hour waiting under its tenant's cap, then an executor takes it (InProgress, its statement not recorded yet)
    while the reconciler looks: the job is left to the executor, not failed "not_started" as its load commits."""
    ports = bulk_ports()
    message = queued(ports)
    ports.bulk.jobs.transition(
        message.job_id,
        BulkState.IN_PROGRESS,
        expected={BulkState.UPLOAD_COMPLETE},
        started_at=utcnow() + timedelta(hours=1),
    )
    summary = sweep(ports, 3601)
    assert summary.waiting == 1 and summary.expired == 0
    assert job_of(ports, message).state is BulkState.IN_PROGRESS and ports.queue.messages == []


# -- an executor that died between starting its load and recording it ----------------------------------------------

#: waited under its tenant's running cap for almost pending_max_age before an executor took it
LATE = timedelta(minutes=59)


def died_recording(ports, *, waited: timedelta = LATE) -> tuple[BulkJobQueuedMessage, str]:
    """A job started just now after waiting ``waited``, whose executor died right after BatchExecuteStatement (its
    message's retries then ran out): its message, and the statement that runs on unrecorded."""
    message = queued(ports, waited=waited)
    ports.bulk.jobs.die_recording_statement()
    with pytest.raises(RuntimeError):
        start_bulk_job(ports, message)
    assert job_of(ports, message).statement_id is None
    [statement_id] = [s for s in ports.warehouse.statements if ":" not in s]
    return message, statement_id


def test_a_load_that_committed_unrecorded_is_queued_again_and_its_next_executor_records_it(ports):
    """Not failed "not_started" (the hour since it was queued has passed): its rows are in the table, and a tenant
    told otherwise would send them again. Queued again, the next executor's ClientToken gets the same statement back
    and records it, and the job ends as the load did."""
    message, statement_id = died_recording(ports)
    ports.warehouse.finish_batch(statement_id, {0: 2, 1: []})  # it ran on and committed; its event was lost
    summary = sweep(ports, 301)
    assert (summary.expired, summary.requeued) == (0, 1)
    assert ports.queue.messages[-1] == message
    start_bulk_job(ports, message)  # the message queued again
    assert job_of(ports, message).statement_id == statement_id  # the same statement, not a second load
    assert sweep(ports, 700).completed == 1  # its event was lost: the recorded statement's ordinary check
    done = job_of(ports, message)
    assert (done.state, done.error) == (BulkState.JOB_COMPLETE, None)
    assert (done.counts.processed, done.counts.failed, done.counts.created) == (2, 0, 2)
    assert ports.events.types() == ["Bulk Job Completed"]


def test_a_job_started_late_has_its_full_time_from_its_start():
    """Queued two hours ago, started just now, its executor gone before its statement: queued again, not failed at
    once; given up "not_started" only pending_max_age after its start."""
    ports = bulk_ports()
    message = queued(ports, waited=timedelta(hours=2))
    ports.bulk.jobs.transition(
        message.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE}, started_at=utcnow()
    )
    assert sweep(ports, 301).requeued == 1
    assert sweep(ports, 3500).requeued == 1  # nor near the hour since its start
    assert job_of(ports, message).state is BulkState.IN_PROGRESS
    summary = sweep(ports, 3601)
    assert summary.expired == 1
    failed = job_of(ports, message)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "not_started")
    assert ports.events.types() == ["Bulk Job Failed"]
    assert ports.warehouse.calls == []  # the reconciler cannot see the executor's statements (another IAM role)


def test_a_settled_job_still_in_the_index_is_skipped_and_dropped_from_it(ports):
    job = started(ports)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []}))
    ports.bulk.jobs.mark_checked(job.job_id, BulkState.JOB_COMPLETE, utcnow())  # as an index lagging behind
    assert sweep(ports, 120).skipped == 1
    assert ports.bulk.jobs.pending_since(job.job_id) is None
    assert ports.events.types() == ["Bulk Job Completed"]


def test_the_reconciler_sweeps_bulk_jobs_after_query_jobs(ports):
    message = queued(ports)
    summary = reconcile(ports, now=utcnow() + timedelta(seconds=301))
    assert (summary.checked, summary.requeued) == (1, 1)
    assert ports.queue.messages == [BulkJobQueuedMessage(job_id=message.job_id, tenant_id="acme")]


def test_a_bulk_job_waiting_its_turn_is_not_queued_again():
    """A bulk job parked at its tenant's cap has lost no message: the release of a slot sends it."""
    ports = bulk_ports(tenant_max_running_statements=1)
    running = started(ports)
    message = queued(ports)
    assert start_bulk_job(ports, message) is None  # at the cap: it waits on the list
    assert message.job_id in ports.slots.waiting("acme")
    ports.queue.messages.clear()
    assert sweep(ports, 400).waiting >= 1
    assert ports.queue.messages == [] and message.job_id in ports.slots.waiting("acme")
    ports.slots.release("acme", running.job_id)  # its release lost: the slot stays free, the waiter in line
    sweep(ports, 800)
    assert ports.queue.messages == [BulkJobQueuedMessage(job_id=message.job_id, tenant_id="acme")]


def test_a_bulk_job_asked_to_abort_while_starting_then_parked_in_line_ends_aborted():
    """The diff review, the query side's mend (4037cea) on the bulk side: aborted while an executor held its slot
    (answered InProgress), the executor died, the slot went to another job, and the job's redelivery parked it in
    line: left there, it waited for a slot to be woken into, and at the hour failed not_started."""
    ports = bulk_ports(tenant_max_running_statements=1)
    message = queued(ports)
    ports.bulk.jobs.transition(message.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE})
    ports.bulk.jobs.update(message.job_id, [BulkState.IN_PROGRESS], abort_requested_at=utcnow())  # the PATCH
    running = started(ports)  # another job holds the tenant's one slot
    assert start_bulk_job(ports, message) is None and message.job_id in ports.slots.waiting("acme")
    assert sweep(ports, 400).expired == 1
    job = job_of(ports, message)
    assert (job.state, job.error) == (BulkState.ABORTED, None)
    assert message.job_id not in ports.slots.waiting("acme")
    assert {s.name for s in ports.warehouse.statements.values()} == {running.job_id}  # its load alone ran


def test_a_bulk_job_waiting_on_a_paused_tenant_since_deactivated_fails_tenant_inactive():
    """Paused (cap 0) frees no slot to wake the job: once its tenant was deactivated it waited for the one-hour
    give-up and failed not_started (found by the operations review)."""
    from spectra import tenant_cache

    ports = bulk_ports(tenant_max_running_statements=0)
    message = queued(ports)
    assert start_bulk_job(ports, message) is None and message.job_id in ports.slots.waiting("acme")
    assert sweep(ports, 400).waiting == 1  # paused only: it keeps its place
    ports.tenants.set_active("acme", False)
    tenant_cache.forget(ports.tenants)
    assert sweep(ports, 800).expired == 1
    job = job_of(ports, message)
    assert (job.state, job.error.code) == (BulkState.FAILED, "tenant_inactive")
    assert ports.slots.waiting("acme") == {} and ports.warehouse.statements == {}


def test_an_outcome_that_cannot_be_recorded_fails_the_job_after_its_attempts(ports, monkeypatch):
    """Bulk completion counted no attempts: a terminal write DynamoDB refuses (an export whose list of parts passes
    the item size) kept the job InProgress and its tenant's slot held for the Data API's 24 hours, retried every
    minute, and then failed it 'statement_lost' (found by the reconciler review)."""
    from botocore.exceptions import ClientError

    job = started(ports)
    transition = ports.bulk.jobs.transition

    def too_large(job_id, to, **changes):
        if to is BulkState.JOB_COMPLETE:
            refusal = {"Error": {"Code": "ValidationException", "Message": "Item size too large"}}
            raise ClientError(refusal, "UpdateItem")
        return transition(job_id, to, **changes)

    monkeypatch.setattr(ports.bulk.jobs, "transition", too_large)
    change = ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []})
    for _ in range(ports.settings.result_max_attempts - 1):
        with pytest.raises(ClientError):
            complete_bulk_statement(ports, change)  # the event's deliveries, or the reconciler
    failed = complete_bulk_statement(ports, change)
    assert (failed.state, failed.error.code) == (BulkState.FAILED, "completion_failed")
    assert "could not be recorded after 3 attempts" in failed.error.message and "Item size" in failed.error.message
    assert job.job_id not in ports.slots.holders("acme")
    assert ports.events.types() == ["Bulk Job Failed"]


def test_passing_aws_trouble_recording_an_outcome_counts_no_attempt(ports, monkeypatch):
    """Found by the AWS failures review, as for query jobs: DynamoDB throttled (or failing on its side, or not
    answering) past botocore's retries at the terminal write counted as a failed attempt, and three of them failed
    a load that had committed ``completion_failed``."""
    from botocore.exceptions import ClientError, ReadTimeoutError

    job = started(ports)
    transition = ports.bulk.jobs.transition
    throttled = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
    troubles = [
        ClientError(throttled, "UpdateItem"),
        ClientError({"Error": {"Code": "InternalServerError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}, "Update"),
        ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    ]
    hiccups = iter(troubles)

    def troubled(job_id, to, **changes):
        failure = next(hiccups, None) if to is BulkState.JOB_COMPLETE else None
        if failure is not None:
            raise failure
        return transition(job_id, to, **changes)

    monkeypatch.setattr(ports.bulk.jobs, "transition", troubled)
    change = ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: []})
    for failure in troubles:
        with pytest.raises(type(failure)):
            complete_bulk_statement(ports, change)
        assert ports.bulk.jobs.get(job.job_id).result_attempts == 0
    done = complete_bulk_statement(ports, change)
    assert done.state is BulkState.JOB_COMPLETE and done.counts.processed == 2
    assert ports.events.types() == ["Bulk Job Completed"]
