"""Bulk job start and end behaviour no test held before (found by mutation testing spectra/bulk/lifecycle.py): a late
message for an ended job gives back the slot it took, a job left waiting for a full warehouse moves back in the pending
index, a redelivery that finds the statement an earlier attempt started records it and starts nothing more, a plan
written exactly 120 s ago no longer holds off an abort, a replaced dropped file's job ends with nothing owed however
large the file was, an upsert's plan keeps its id column's type, length and scale, an ending that ran nothing writes the
result files of up to 2 MiB of input itself, a results run holds a job's files for 960 s, and a bulk job's event carries
the time the job ended and a failed
statement's job names it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from events import BulkResultsRequested
from spectra.bulk import lifecycle, outcomes
from spectra.bulk.drops import accept_drop
from spectra.bulk.lifecycle import complete_bulk_statement, start_bulk_job, write_owed_results
from spectra.bulk.models import BulkOperation, BulkState
from spectra.errors import IdentityRefused, StartUnderWay, Throttled
from spectra.jobs import utcnow
from tests.unit.bulk_helpers import T0
from tests.unit.test_bulk_drops import drop
from tests.unit.test_bulk_lifecycle import (
    MIXED,
    bulk_ports_with,
    owing_results,
    queued,
    stored,
    warehouse_calls,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def ports():
    return bulk_ports_with()


def _clock_at(monkeypatch, now) -> None:
    """The lifecycle's clock stopped at ``now``."""
    monkeypatch.setattr("spectra.bulk.lifecycle.utcnow", lambda: now)


def test_a_late_message_for_an_ended_job_gives_back_the_slot_it_took(ports):
    """The executor takes one of the tenant's running slots before it reads the job: a copy of the message arriving
    after the job was aborted must give that slot back, or the tenant runs one job fewer until the slot's lease."""
    message = queued(ports)
    ports.bulk.jobs.transition(message.job_id, BulkState.ABORTED)
    assert start_bulk_job(ports, message) is None
    assert list(ports.slots.holders("acme")) == []


def test_a_redelivery_after_an_attempt_died_mid_start_records_its_statement_and_starts_nothing_more(ports):
    """An executor died between BatchExecuteStatement and recording the statement: the message's next delivery
    records the statement it finds under the job's name and stops there, neither checking the files and table again
    nor writing a new plan nor starting the batch again."""
    message = queued(ports)
    ports.bulk.jobs.die_recording_statement()
    with pytest.raises(RuntimeError):
        start_bulk_job(ports, message)
    [statement_id] = [s for s in ports.warehouse.statements if ":" not in s]
    plan = stored(ports, message.job_id).plan
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.statement_id, job.plan) == (BulkState.IN_PROGRESS, statement_id, plan)
    assert warehouse_calls(ports) == ["describe_table", "execute_batch", "find"]


def test_a_load_left_waiting_for_a_full_warehouse_moves_back_in_the_pending_index(ports):
    """On the message's last delivery a full warehouse sends the message again after a pause: the job moves to the
    back of the pending index, so the reconciler, counting from the first attempt, queues no copy of its own while
    that message is still to come."""
    message = queued(ports)
    ports.warehouse.throttle_next("execute_batch", aws_error="ActiveStatementsExceededException", times=2)
    with pytest.raises(Throttled):
        start_bulk_job(ports, message)  # an earlier delivery
    between = utcnow()
    assert start_bulk_job(ports, message, final_attempt=True) is None
    assert stored(ports, message.job_id).state is BulkState.IN_PROGRESS
    assert ports.bulk.jobs.pending_since(message.job_id) > between


@pytest.mark.parametrize(
    ("id_column", "recorded"),
    [
        ({"typeName": "varchar", "length": 8}, ("varchar", 8, None)),
        ({"typeName": "numeric", "precision": 10, "scale": 2}, ("numeric", 10, 2)),
        ({"typeName": "decimal", "precision": 12, "scale": 3}, ("decimal", 12, 3)),
    ],
    ids=["varchar-8", "numeric-10-2", "decimal-12-3"],
)
def test_an_upserts_plan_records_its_id_columns_type_length_and_scale(ports, id_column, recorded):
    """The result files match the ids the warehouse prints against the ids sent, which needs the id column's type as
    DescribeTable shows it: a VARCHAR's length (blanks past it are cut), a NUMERIC's precision and scale (2.5 is
    printed 2.50)."""
    ports.warehouse.tables[("public", "accounts")] = [
        {"name": "id", "nullable": 0, **id_column},
        {"name": "name", "typeName": "varchar", "nullable": 1, "length": 256},
        {"name": "city", "typeName": "varchar", "nullable": 1, "length": 256},
    ]
    job = start_bulk_job(ports, queued(ports, BulkOperation.UPSERT))
    plan = job.plan
    assert (plan.external_id_type, plan.external_id_length, plan.external_id_scale) == recorded


def test_a_copy_refused_its_identity_after_another_copy_started_the_load_leaves_the_job_to_that_load(
    ports, monkeypatch
):
    """Two copies of the message (an S3 event delivered twice): one is refused the tenant's identity while the other
    starts the load and records its statement. The refused copy is done, quietly: no ending (the load runs on), and
    no error that would send its message back until the dead-letter queue."""
    message = queued(ports)
    real, calls = lifecycle.identity_for, []

    def other_copy_starts_first(ports, job):
        calls.append(job.job_id)
        if len(calls) == 1:
            assert start_bulk_job(ports, message).statement_id  # the other copy, meanwhile
            raise IdentityRefused("the tenant's database user is not a tenant identity; the job was not run")
        return real(ports, job)

    monkeypatch.setattr(lifecycle, "identity_for", other_copy_starts_first)
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error) == (BulkState.IN_PROGRESS, None) and job.statement_id
    assert warehouse_calls(ports).count("execute_batch") == 1


@pytest.mark.parametrize(
    ("end", "code"),
    [
        (lambda warehouse, statement_id: warehouse.fail_batch(statement_id, "disk full", at=0), "statement_failed"),
        (lambda warehouse, statement_id: warehouse.abort(statement_id), "statement_aborted"),
    ],
    ids=["failed", "aborted-by-the-warehouse"],
)
def test_a_fast_statement_failing_before_its_id_is_recorded_fails_the_job_with_the_statement_named(
    ports, monkeypatch, end, code
):
    """The failure event overtakes the executor's write of the statement id: the job ends Failed naming the
    statement that failed, and the executor, finding it recorded, cancels nothing."""
    message = queued(ports)
    real_execute = ports.warehouse.execute_batch

    def execute_and_fail_at_once(sqls, **kwargs):
        statement_id = real_execute(sqls, **kwargs)
        complete_bulk_statement(ports, end(ports.warehouse, statement_id))
        return statement_id

    monkeypatch.setattr(ports.warehouse, "execute_batch", execute_and_fail_at_once)
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    [statement_id] = [s for s in ports.warehouse.statements if ":" not in s]
    assert (job.state, job.error.code, job.statement_id) == (BulkState.FAILED, code, statement_id)
    assert "cancel" not in warehouse_calls(ports)


def _throttled_then_aborted(ports, planned_ago: timedelta):
    """A job whose first start was throttled after its plan was written ``planned_ago`` before T0, then aborted."""
    message = queued(ports)
    ports.warehouse.throttle_next("execute_batch")
    with pytest.raises(Throttled):
        start_bulk_job(ports, message)
    ports.bulk.jobs.update(message.job_id, [BulkState.IN_PROGRESS], abort_requested_at=T0)
    ports.bulk.jobs._items[message.job_id]["plan"]["planned_at"] = (T0 - planned_ago).isoformat()
    return message


def test_an_abort_waits_for_a_plan_written_119_seconds_ago(ports, monkeypatch):
    """An executor is taken to be inside BatchExecuteStatement for up to 120 s after writing its plan (as a query
    job's start is, spectra.lifecycle): an abort within that time is left to it (the message comes back later)."""
    message = _throttled_then_aborted(ports, timedelta(seconds=119))
    _clock_at(monkeypatch, T0)
    with pytest.raises(StartUnderWay):
        start_bulk_job(ports, message)
    assert stored(ports, message.job_id).state is BulkState.IN_PROGRESS


def test_an_abort_of_a_job_whose_plan_was_written_exactly_120_seconds_ago_ends_it_aborted(ports, monkeypatch):
    """120 s after the plan no executor is taken to be starting the load: the abort ends the job at once."""
    message = _throttled_then_aborted(ports, timedelta(seconds=120))
    _clock_at(monkeypatch, T0)
    assert start_bulk_job(ports, message) is None
    assert stored(ports, message.job_id).state is BulkState.ABORTED
    assert "execute_batch" not in warehouse_calls(ports)


def test_a_bulk_jobs_event_says_when_the_job_ended_not_when_the_event_was_sent(ports, monkeypatch):
    """The "Bulk Job Completed" event carries the job's own completed_at, as GET shows it, whenever it is published
    (a retry of a lost publish comes later)."""
    job = start_bulk_job(ports, queued(ports))
    _clock_at(monkeypatch, T0 + timedelta(days=400))  # the clock the event would read, were it not the job's
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 1, 1: []}))
    ended = stored(ports, job.job_id)
    [event] = ports.events.events
    assert ended.completed_at is not None and event.detail.completed_at == ended.completed_at


def test_a_job_whose_large_dropped_file_was_replaced_ends_with_nothing_owed():
    """A job failed file_replaced keeps no files (the newer upload's job lists them), so it owes no result files
    however large the file was: it shows Failed at once, and no request for its files is queued."""
    ports = bulk_ports_with(bulk_inline_results_max_bytes=10)
    ports.warehouse.add_table("public", "accounts", ["id", "name"])
    first = drop(ports, "acme/accounts/jan.csv")
    accept_drop(ports, first)
    accept_drop(ports, drop(ports, "acme/accounts/jan.csv", b"id,name\n3,Cid\n"))
    replaced, _ = ports.queue.messages
    assert start_bulk_job(ports, replaced) is None
    job = stored(ports, first.job_id)
    assert (job.state, job.error.code, job.files, job.results_ready) == (BulkState.FAILED, "file_replaced", [], True)
    assert ports.bulk.results_queue.messages == []


def _refused_of(ports, size: int):
    """A job of one record refused for its unknown column, its file ``size`` bytes long; started."""
    head = b"id,name,shoe_size\n1,a,"
    message = queued(ports, BulkOperation.INSERT, head + b"4" * (size - len(head) - 1) + b"\n")
    assert start_bulk_job(ports, message) is None
    return stored(ports, message.job_id)


def test_an_ending_that_ran_nothing_writes_the_result_files_of_2_mib_of_input_itself(ports):
    """README: past 2 MiB of input, an ending that ran nothing leaves its result files to the bulk results function;
    at 2 MiB exactly it writes them itself, and the job shows Failed with its files ready."""
    job = _refused_of(ports, 2 * 1024 * 1024)
    assert (job.state, job.error.code, job.results_ready) == (BulkState.FAILED, "unknown_columns", True)
    assert ports.bulk.results_queue.messages == []


def test_an_ending_that_ran_nothing_leaves_the_result_files_of_more_than_2_mib_to_the_results_function(ports):
    job = _refused_of(ports, 2 * 1024 * 1024 + 1)
    assert (job.state, job.error.code, job.results_ready) == (BulkState.FAILED, "unknown_columns", False)
    assert ports.bulk.results_queue.messages == [BulkResultsRequested(job_id=job.job_id, tenant_id="acme")]


def test_a_results_run_holds_the_jobs_files_for_960_seconds(monkeypatch):
    """The lease outlives the bulk results function's 900 s Timeout: a run holds the job's files until 960 s after
    it took them, so no other run takes them over while it may still be writing."""
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    _, request = owing_results(ports)
    _clock_at(monkeypatch, T0)
    write_results, held = outcomes.write_results, []

    def writing(ports, leased):
        held.append(stored(ports, leased.job_id).results_writer_until)
        return write_results(ports, leased)

    monkeypatch.setattr(outcomes, "write_results", writing)
    assert write_owed_results(ports, request).results_ready
    assert held == [int(T0.timestamp()) + 960]
