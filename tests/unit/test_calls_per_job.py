"""What a job costs in AWS calls, step by step, on in-memory ports whose every call is logged (issue 8: at most 9 for
a small inline job), and the guarantees the saving must keep: the job in its queue message only on a first delivery,
the terminal write and the slot's release in one transaction (a waiting job still woken, a reclaimed slot left
alone), no DescribeStatement for a finished statement's result.

The fakes answer one call per AWS call (``slots.releasing`` only builds a request): ``bench/bench_pipeline.py``
counts the real calls on the local stack.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from events import JobStatus, ResultFormat
from spectra.jobs import Job, new_job_id, utcnow
from spectra.lifecycle import (
    JOB_IN_MESSAGE_MAX_BYTES,
    JOB_IN_MESSAGE_TRUST_SECONDS,
    complete_statement,
    execute_job,
    queued_message,
)
from spectra.queries import cancel_job, submit_query
from spectra.tenants import Caller
from spectra.warehouse import Column
from tests.unit.fakes import make_ports, make_settings

pytestmark = pytest.mark.unit

#: methods of the ports that make no AWS call
_NOT_CALLS = {"releasing"}


class Logged:
    """A port whose public method calls are appended to ``log`` as ``<port>.<method>``."""

    def __init__(self, target: Any, name: str, log: list[str]) -> None:
        self._target, self._name, self._log = target, name, log

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._target, attr)
        if not callable(value) or attr.startswith("_") or attr in _NOT_CALLS:
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            self._log.append(f"{self._name}.{attr}")
            return value(*args, **kwargs)

        return call


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def ports(log):
    plain = make_ports(settings=make_settings(tenant_max_running_statements=1))
    plain.tenants.create_tenant("acme", db_user="tenant_acme")
    logged = {
        name: Logged(getattr(plain, name), name, log) for name in ("jobs", "queue", "warehouse", "events", "slots")
    }
    return dataclasses.replace(plain, **logged)


CALLER = Caller(tenant_id="acme", db_user="tenant_acme")
COLUMNS = [Column("one", "int4")]


def ended(ports, statement_id: str, **outcome: Any):
    """The statement's status event (scripting the fake warehouse is no call)."""
    return ports.warehouse._target.finish(statement_id, **outcome)


def submit(ports) -> Job:
    job, _ = submit_query(ports, CALLER, sql="select 1 as one", parameters=[], fmt=ResultFormat.JSON)
    return job


def delivered(ports, *, first: bool = True):
    """The message the API sent, as the executor's event source hands it over."""
    message = ports.queue.messages[-1]
    return execute_job(ports, message, first_delivery=first)


def test_a_small_inline_job_costs_nine_calls(ports, log):
    job = submit(ports)
    assert log == ["jobs.create", "queue.send"]
    log.clear()

    started = delivered(ports)
    assert log == ["slots.claim", "warehouse.start", "jobs.transition"]  # the job came in the message
    log.clear()

    finished = complete_statement(ports, ended(ports, started.statement_id, columns=COLUMNS, pages=["1\n"]))
    assert finished.status is JobStatus.COMPLETED and finished.result.inline_rows
    # no DescribeStatement: the result's first page has the row count; the slot goes back in the terminal write
    assert log == ["jobs.get", "warehouse.open_result", "events.publish", "jobs.finish"]
    assert ports.jobs.get(job.job_id).event_published
    assert ports.slots.holders("acme") == {}
    assert ports.slots.sessions("acme")[started.session_id].job_id is None  # the session is back, idle


def test_the_job_in_the_message_is_read_again_on_a_redelivery(ports, log):
    submit(ports)
    message = ports.queue.messages[-1]
    started = execute_job(ports, message, first_delivery=True)
    complete_statement(ports, ended(ports, started.statement_id, columns=COLUMNS, pages=["1\n"]))
    log.clear()
    # the same message again (SQS redelivered it): it still says QUEUED, but the job store says COMPLETED
    assert execute_job(ports, message, first_delivery=False) is None
    assert "jobs.get" in log and "warehouse.start" not in log
    assert ports.slots.holders("acme") == {}  # the slot the late message took is given back
    assert len(ports.warehouse.statements) == 1


def test_a_message_sent_long_after_its_job_was_made_is_not_trusted(ports, log):
    """A copy moved back from the dead-letter queue is received for the first time, but its job may have ended long
    since: sent more than JOB_IN_MESSAGE_TRUST_SECONDS after the job was made, the job is read, and starts nothing."""
    job = submit(ports)
    message = ports.queue.messages[-1]
    cancel_job(ports, Caller(tenant_id="acme"), job.job_id)
    log.clear()
    moved_back = job.created_at + timedelta(seconds=JOB_IN_MESSAGE_TRUST_SECONDS + 1)
    assert execute_job(ports, message, first_delivery=True, sent_at=moved_back) is None
    assert "jobs.get" in log and "warehouse.start" not in log
    second = submit(ports)
    log.clear()
    sent = second.created_at + timedelta(seconds=1)  # the API's own message is still trusted: no read
    assert execute_job(ports, ports.queue.messages[-1], first_delivery=True, sent_at=sent) is not None
    assert "jobs.get" not in log


def test_a_message_for_another_job_or_state_is_not_trusted(ports, log):
    job = submit(ports)
    message = ports.queue.messages[-1]
    forged = message.model_copy(update={"job": {**message.job, "status": "SUBMITTED", "statement_id": "x"}})
    started = execute_job(ports, forged, first_delivery=True)
    assert "jobs.get" in log  # read from the store instead
    assert started.status is JobStatus.SUBMITTED and started.job_id == job.job_id


def test_a_job_cancelled_while_its_statement_starts_is_stopped_in_the_warehouse(ports, log):
    job = submit(ports)
    original_start = ports.warehouse.start

    def cancelled_meanwhile(*args, **kwargs):
        started = original_start(*args, **kwargs)
        assert cancel_job(ports, CALLER, job.job_id).status is JobStatus.CANCELLED  # DELETE while still QUEUED
        return started

    ports.warehouse._target.start = cancelled_meanwhile
    assert delivered(ports) is None
    assert ports.jobs.get(job.job_id).status is JobStatus.CANCELLED
    [statement] = ports.warehouse.statements.values()
    assert statement.status == "ABORTED"  # the write after ExecuteStatement was refused: the statement cancelled
    assert ports.slots.holders("acme") == {}


def test_a_job_too_large_for_a_message_goes_by_id_and_is_read():
    now = utcnow()
    job = Job(
        job_id=new_job_id(),
        tenant_id="acme",
        db_user="tenant_acme",
        sql="select '" + "x" * JOB_IN_MESSAGE_MAX_BYTES + "'",
        created_at=now,
        updated_at=now,
    )
    assert queued_message(job).job is None
    assert queued_message(job.model_copy(update={"sql": "select 1"})).job is not None


def test_a_freed_slot_wakes_the_waiting_job_in_the_same_transaction(ports, log):
    first, waiting = submit(ports), submit(ports)
    started = execute_job(ports, ports.queue.messages[0], first_delivery=True)
    assert execute_job(ports, ports.queue.messages[1], first_delivery=True) is None  # the cap is 1: it waits
    assert list(ports.slots.waiting("acme")) == [waiting.job_id]
    sent = len(ports.queue.messages)
    log.clear()
    complete_statement(ports, ended(ports, started.statement_id, columns=COLUMNS, pages=["1\n"]))
    # refused once (somebody waits: the refusal says who), then the terminal write, the release and the waiting job
    # taken off the list in one transaction; no separate release or unpark
    assert [call for call in log if call.startswith(("jobs.", "slots."))] == ["jobs.get", "jobs.finish", "jobs.finish"]
    assert ports.jobs.get(first.job_id).status is JobStatus.COMPLETED
    assert [m.job_id for m in ports.queue.messages[sent:]] == [waiting.job_id]
    assert ports.queue.messages[-1].job is None  # a woken job is read: its message is not the API's
    assert ports.slots.waiting("acme") == {} and ports.slots.holders("acme") == {}
    assert execute_job(ports, ports.queue.messages[-1], first_delivery=True).status is JobStatus.SUBMITTED


def test_a_first_delivery_over_the_cap_waits_in_its_place_without_reading_the_job(ports, log):
    submit(ports)
    delivered(ports)
    waiting = submit(ports)
    log.clear()
    assert delivered(ports) is None  # the cap is 1
    assert [call for call in log if call.startswith("jobs.")] == []  # its place came with the message's job
    assert ports.slots.waiting("acme") == {waiting.job_id: waiting.created_at.timestamp()}


def test_a_job_whose_slot_was_reclaimed_is_finished_without_a_release(ports, log):
    started = (submit(ports), delivered(ports))[1]
    stamp = ports.slots.holders("acme")[started.job_id]
    assert ports.slots.evict("acme", started.job_id, stamp=stamp)  # its lease ran out and a claim reclaimed it
    other = submit(ports)
    assert delivered(ports).job_id == other.job_id  # the freed slot is someone else's now
    log.clear()
    finished = complete_statement(ports, ended(ports, started.statement_id, columns=COLUMNS, pages=["1\n"]))
    assert finished.status is JobStatus.COMPLETED
    assert ports.slots.holders("acme") == {other.job_id: ports.slots.holders("acme")[other.job_id]}
    assert "slots.release" not in log


def test_a_duplicate_status_event_writes_nothing(ports, log):
    submit(ports)
    started = delivered(ports)
    change = ended(ports, started.statement_id, columns=COLUMNS, pages=["1\n"])
    complete_statement(ports, change)
    log.clear()
    assert complete_statement(ports, change).status is JobStatus.COMPLETED
    assert log == ["jobs.get"]


def test_a_command_without_a_result_set_is_described_for_the_rows_it_changed(ports, log):
    submit(ports)
    started = delivered(ports)
    log.clear()
    finished = complete_statement(ports, ended(ports, started.statement_id, rows=3))
    assert finished.result.row_count == 3
    assert log[:3] == ["jobs.get", "warehouse.open_result", "warehouse.describe"]
