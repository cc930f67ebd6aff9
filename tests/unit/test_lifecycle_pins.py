"""Executor and completion behaviour no test held before (found by mutation testing spectra/lifecycle.py): a
redelivery of the API's own message (the job in it) looks for the statement an earlier attempt started, the
60 s for which the job a message carries is trusted, and the README's 5 s past which a collected result
is written before its event."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from events import Delivery, JobStatus
from spectra import lifecycle
from spectra.lifecycle import complete_statement, execute_job
from spectra.queries import cancel_job
from spectra.tenants import Caller
from spectra.warehouse import Column
from tests.unit.fakes import CountingReads, make_ports, with_tenants
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
