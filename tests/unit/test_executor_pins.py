"""Executor function behaviour no test held before (found by mutation testing consumers/executor/app.py): the
queue's last delivery (the fifth, the settings' default) fails a throttled job instead of retrying it; a message's
SentTimestamp, in milliseconds, decides whether the job it carries is trusted or read again from the store; and the
domain's lines about a record carry its job_id and tenant_id."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from consumers.executor import app as executor
from events import JobStatus
from spectra import lifecycle, logs
from spectra.errors import Throttled
from spectra.jobs import utcnow
from tests.unit.fakes import acme_ports, queued_job, serving

pytestmark = pytest.mark.unit


@pytest.fixture
def ports(monkeypatch):
    yield from serving(monkeypatch, executor, acme_ports())


def record(message, receive_count: int, sent_ms: int | None = None) -> SQSRecord:
    attributes = {"ApproximateReceiveCount": str(receive_count)}
    if sent_ms is not None:
        attributes["SentTimestamp"] = str(sent_ms)
    return SQSRecord({"messageId": "m1", "body": message.model_dump_json(), "attributes": attributes})


def test_a_throttled_job_is_retried_up_to_the_fourth_delivery_and_failed_on_the_fifth(ports):
    job = queued_job(ports)
    message = lifecycle.queued_message(job)
    ports.warehouse.throttle_next(times=2)
    with pytest.raises(Throttled):
        executor.record_handler(record(message, 4))
    assert ports.jobs.get(job.job_id).status is JobStatus.QUEUED
    executor.record_handler(record(message, 5))  # the queue's last: no retry comes after it
    failed = ports.jobs.get(job.job_id)
    assert (failed.status, failed.error.code) == (JobStatus.FAILED, "warehouse_unavailable")


def ended_in_store_but_queued_in_its_message(ports):
    job = queued_job(ports)
    message = lifecycle.queued_message(job)  # the job travels in its message, QUEUED
    ports.jobs.transition(job.job_id, JobStatus.CANCELLED, completed_at=utcnow())
    return job, message


def test_a_message_sent_61_seconds_after_its_job_was_made_is_not_trusted(ports):
    """SentTimestamp is in milliseconds: 61 s after the job's making, the job is read again (the store has it
    cancelled), so no statement starts."""
    job, message = ended_in_store_but_queued_in_its_message(ports)
    sent_ms = int((job.created_at + timedelta(seconds=61)).timestamp() * 1000)
    executor.record_handler(record(message, 1, sent_ms))
    assert ports.warehouse.statements == {}
    assert ports.jobs.get(job.job_id).status is JobStatus.CANCELLED


def test_a_message_sent_within_a_minute_of_its_job_is_trusted_on_its_first_delivery(ports):
    """The job it carries is started without reading the store (which is why the store's cancelled job above
    matters): a statement goes to the warehouse."""
    job, message = ended_in_store_but_queued_in_its_message(ports)
    sent_ms = int((job.created_at + timedelta(seconds=30)).timestamp() * 1000)
    executor.record_handler(record(message, 1, sent_ms))
    assert len(ports.warehouse.statements) == 1


def test_a_second_delivery_reads_the_job_again_however_soon_it_was_sent(ports):
    job, message = ended_in_store_but_queued_in_its_message(ports)
    sent_ms = int((job.created_at + timedelta(seconds=1)).timestamp() * 1000)
    executor.record_handler(record(message, 2, sent_ms))
    assert ports.warehouse.statements == {}


def test_the_domains_lines_about_a_record_carry_its_job_and_tenant(ports, monkeypatch):
    seen = []
    monkeypatch.setattr(executor, "execute_job", lambda *args, **kwargs: seen.append(logs.current()))
    job = queued_job(ports)
    executor.record_handler(record(lifecycle.queued_message(job), 1))
    assert seen == [{"message_id": "m1", "job_id": job.job_id, "tenant_id": "acme"}]
