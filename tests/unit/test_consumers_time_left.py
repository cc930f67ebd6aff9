"""The SQS consumers whose records make AWS calls that a service in trouble retries for up to about 30 s begin no
record with less than half of their 30 s Timeout left: a batch of slow records outran the Timeout, and Lambda sent the
whole batch back three minutes later, the records done included.

- The executor (consumers/executor/app.py) sends a record it leaves again after a few seconds, whatever its job's
  state (the copy decides, as any redelivery does), and the records done are deleted with the batch.
- The notifier (consumers/notifier/app.py) and the S3 drop function (producers/s3_drop/app.py) fail a record they
  leave, which comes back alone: the events already fanned out are not published and queued again, the drops
  already taken not read and checked again."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from consumers.executor import app as executor
from consumers.notifier import app as notifier
from events import JobStatus
from producers.s3_drop import app as s3_drop
from spectra import deadline, lifecycle
from spectra.bulk.models import BulkState
from spectra.errors import Throttled
from spectra.jobs import Job, utcnow
from tests.unit.fakes import acme_ports, metrics_counted, queued_job, serving
from tests.unit.test_bulk_lifecycle import bulk_ports_with, queued
from tests.unit.test_notify import ports_with_notify, sample_event, subscribe
from tests.unit.test_s3_drop_pins import body_of

pytestmark = pytest.mark.unit


@pytest.fixture
def ports(monkeypatch):
    yield from serving(monkeypatch, executor, acme_ports())


class Invocation:
    """A Lambda context whose clock the test moves: ``seconds`` is the Timeout, ``spend`` passes time."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds
        self.function_name, self.memory_limit_in_mb = "executor", 512
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:executor"
        self.aws_request_id = "r1"

    def spend(self, seconds: float) -> None:
        self.left -= seconds

    def get_remaining_time_in_millis(self) -> int:
        return int(self.left * 1000)


def slowed(monkeypatch, handler_module, target, name: str, context: Invocation, seconds: float = 20.0) -> None:
    """``target.name`` spends ``seconds`` of the invocation's time each call (a service in trouble, retried), for a
    whole batch through ``handler_module``'s lambda_handler, whose metrics get the template's namespace (Globals) as
    the handler flushes them at its end."""
    real = getattr(target, name)

    def slow(*args, **kwargs):
        context.spend(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, slow)
    monkeypatch.setattr(handler_module.metrics, "namespace", "RedshiftSpectra")


def sqs_record(job: Job, message_id: str, receive_count: int = 1) -> dict:
    return {
        "messageId": message_id,
        "body": lifecycle.queued_message(job).model_dump_json(),
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "eventSource": "aws:sqs",
    }


def test_a_record_begun_with_less_than_half_the_timeout_left_is_sent_again_and_not_started(ports):
    job = queued_job(ports)
    context = Invocation(14.9)
    executor.record_handler(SQSRecord(sqs_record(job, "m1", receive_count=5)), context)  # returns: the record is done
    assert ports.jobs.get(job.job_id).status is JobStatus.QUEUED
    assert ports.warehouse.executed() == [] and ports.slots.holders("acme") == {}  # no slot taken, nothing started
    [again] = ports.queue.messages
    assert (again.job_id, again.job) == (job.job_id, None)  # by id: the job is read when it comes back
    assert 2 <= ports.queue.delays[0] <= 7  # about TenantWaitSeconds (5), not the queue's 3-minute visibility timeout
    assert metrics_counted(executor) == {"JobMessagesDeferred": (1, "Count")}


def test_a_record_begun_with_half_the_timeout_left_starts(ports):
    job = queued_job(ports)
    executor.record_handler(SQSRecord(sqs_record(job, "m1")), Invocation(15.0))
    assert ports.jobs.get(job.job_id).status is JobStatus.SUBMITTED
    assert ports.queue.messages == []


def test_a_record_left_is_sent_again_whatever_its_job_became_and_the_copy_decides(ports):
    """Nothing is judged at the deferral: a job cancelled meanwhile gets its copy all the same, which starts nothing."""
    job = queued_job(ports)
    ports.jobs.transition(job.job_id, JobStatus.CANCELLED, completed_at=utcnow())
    executor.record_handler(SQSRecord(sqs_record(job, "m1")), Invocation(1.0))
    [again] = ports.queue.messages
    executor.record_handler(SQSRecord({**sqs_record(job, "m2"), "body": again.model_dump_json()}), Invocation(30.0))
    assert ports.warehouse.executed() == [] and ports.jobs.get(job.job_id).status is JobStatus.CANCELLED


def test_a_throttled_start_deferred_on_its_redelivery_is_started_by_the_copy_in_the_slot_it_kept(ports):
    """A start the Data API throttled keeps its slot for the retry; that retry, left for lack of time, comes back as a
    copy that starts the job in the same slot: one holder, one statement."""
    job = queued_job(ports)
    ports.warehouse.throttle_next()
    with pytest.raises(Throttled):
        executor.record_handler(SQSRecord(sqs_record(job, "m1")), Invocation(30.0))
    assert set(ports.slots.holders("acme")) == {job.job_id}
    executor.record_handler(SQSRecord(sqs_record(job, "m1", receive_count=2)), Invocation(10.0))
    [again] = ports.queue.messages
    executor.record_handler(SQSRecord({**sqs_record(job, "m2"), "body": again.model_dump_json()}), Invocation(30.0))
    assert ports.jobs.get(job.job_id).status is JobStatus.SUBMITTED
    assert set(ports.slots.holders("acme")) == {job.job_id} and len(ports.warehouse.executed()) == 1


def test_a_handler_called_without_a_context_defers_nothing(ports):
    """A test or a command line calling the handler without a Lambda context: no time bound, the job starts."""
    job = queued_job(ports)
    executor.record_handler(SQSRecord(sqs_record(job, "m1")))
    assert ports.jobs.get(job.job_id).status is JobStatus.SUBMITTED and ports.queue.messages == []


@pytest.fixture
def bulk_ports(monkeypatch):
    yield from serving(monkeypatch, executor, bulk_ports_with())


def test_a_bulk_job_an_earlier_attempt_left_in_progress_without_its_statement_is_started_by_the_copy(bulk_ports):
    """An attempt that moved the job InProgress and died before its statement: its message's redelivery starts it.
    Deferred, that message must come back whatever the job's state."""
    ports = bulk_ports
    message = queued(ports)
    assert ports.bulk.jobs.transition(
        message.job_id, BulkState.IN_PROGRESS, expected={BulkState.UPLOAD_COMPLETE}, started_at=utcnow()
    )
    body = {"messageId": "m1", "body": message.model_dump_json(), "attributes": {"ApproximateReceiveCount": "2"}}
    executor.record_handler(SQSRecord(body), Invocation(1.0))
    [again] = ports.queue.messages
    assert again == message and ports.warehouse.calls == []
    executor.record_handler(SQSRecord({**body, "body": again.model_dump_json()}), Invocation(30.0))
    started = ports.bulk.jobs.get(message.job_id)
    assert (started.state, started.statement_id is not None) == (BulkState.IN_PROGRESS, True)


def test_a_batch_that_spends_its_time_starts_what_it_can_and_sends_the_rest_again(ports, monkeypatch):
    """Three records; the first start takes 20 s of the 30 (a throttling Data API's retries): the other two are sent
    again, and the batch answers no failure, so the whole batch is deleted, the started record included."""
    jobs = [queued_job(ports) for _ in range(3)]
    context = Invocation(30.0)
    slowed(monkeypatch, executor, ports.warehouse, "start", context)
    event = {"Records": [sqs_record(job, f"m{n}") for n, job in enumerate(jobs)]}
    assert executor.lambda_handler(event, context) == {"batchItemFailures": []}
    assert [ports.jobs.get(job.job_id).status for job in jobs] == [
        JobStatus.SUBMITTED,
        JobStatus.QUEUED,
        JobStatus.QUEUED,
    ]
    assert [message.job_id for message in ports.queue.messages] == [jobs[1].job_id, jobs[2].job_id]
    assert len(ports.warehouse.executed()) == 1


# -- the notifier ----------------------------------------------------------------------------------------------------


@pytest.fixture
def notify_ports(monkeypatch):
    ports = ports_with_notify()
    subscribe(ports)
    yield from serving(monkeypatch, notifier, ports)


def event_record(message_id: str, job_id: str = "j_Qm9ZcW1uT3pLd0xZb3FXcA") -> dict:
    event = sample_event(job_id=job_id)
    return {"messageId": message_id, "body": event.model_dump_json(by_alias=True), "eventSource": "aws:sqs"}


def test_an_event_begun_with_less_than_half_the_timeout_left_fails_its_record_and_sends_nothing(notify_ports):
    ports = notify_ports
    with pytest.raises(deadline.OutOfTime):
        notifier.record_handler(SQSRecord(event_record("m1")), Invocation(29.9))
    assert ports.notify.topic.published == [] and ports.notify.transport.posts == []
    assert metrics_counted(notifier) == {"EventsDeferred": (1, "Count")}
    notifier.record_handler(SQSRecord(event_record("m1")), Invocation(30.0))
    assert len(ports.notify.topic.published) == 1 and len(ports.notify.transport.posts) == 1


def test_a_notifier_batch_that_spends_its_time_fails_only_the_events_it_left(notify_ports, monkeypatch, capsys):
    """Three events; reading the first one's subscriptions takes 20 s of the 45 left: the other two are the batch's
    failures, and the first (its webhook sent, published) is deleted with the batch, not fanned out again."""
    ports = notify_ports
    context = Invocation(45.0)
    slowed(monkeypatch, notifier, notifier, "plan", context)
    jobs = ["j_Qm9ZcW1uT3pLd0xZb3FXcA", "j_Qm9ZcW1uT3pLd0xZb3FXcB", "j_Qm9ZcW1uT3pLd0xZb3FXcC"]
    event = {"Records": [event_record(f"m{n}", job) for n, job in enumerate(jobs)]}
    assert notifier.lambda_handler(event, context) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]
    }
    assert len(ports.notify.topic.published) == 1 and len(ports.notify.transport.posts) == 1
    [flushed] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert flushed["EventsDeferred"] == [1.0, 1.0]


def test_an_event_on_its_queues_last_receive_is_fanned_out_whatever_the_time(notify_ports):
    """Failed on the fifth receive (the queue's maxReceiveCount), it would go to the dead-letter queue untried."""
    ports = notify_ports
    record = {**event_record("m1"), "attributes": {"ApproximateReceiveCount": "4"}}
    with pytest.raises(deadline.OutOfTime):
        notifier.record_handler(SQSRecord(record), Invocation(1.0))
    record["attributes"]["ApproximateReceiveCount"] = "5"
    notifier.record_handler(SQSRecord(record), Invocation(1.0))
    assert len(ports.notify.topic.published) == 1


# -- the S3 drop function --------------------------------------------------------------------------------------------


@pytest.fixture
def drop_ports(monkeypatch):
    yield from serving(monkeypatch, s3_drop, acme_ports())


def test_a_drop_begun_with_less_than_half_the_timeout_left_fails_its_record_and_makes_no_job(drop_ports):
    ports = drop_ports
    record = SQSRecord({"messageId": "m1", "body": body_of(ports, "acme/accounts/jan.csv")})
    with pytest.raises(deadline.OutOfTime):
        s3_drop.record_handler(record, Invocation(14.9))
    assert ports.queue.messages == [] and metrics_counted(s3_drop) == {"DropsDeferred": (1, "Count")}
    s3_drop.record_handler(record, Invocation(15.0))
    assert len(ports.queue.messages) == 1


def test_a_drop_batch_that_spends_its_time_fails_only_the_messages_it_left(drop_ports, monkeypatch):
    """Through the handler Lambda calls, so the context reaches the record handler: the first drop takes 20 s of the
    30, the second is the batch's one failure, the first's job made once."""
    ports = drop_ports
    context = Invocation(30.0)
    slowed(monkeypatch, s3_drop, s3_drop, "accept_drop", context)
    records = [
        {"messageId": f"m{n}", "body": body_of(ports, key), "eventSource": "aws:sqs"}
        for n, key in enumerate(("acme/accounts/jan.csv", "acme/accounts/feb.csv"))
    ]
    assert s3_drop.lambda_handler({"Records": records}, context) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert len(ports.queue.messages) == 1


def test_a_drop_on_its_queues_last_receive_is_taken_whatever_the_time(drop_ports):
    ports = drop_ports
    body = body_of(ports, "acme/accounts/jan.csv")
    s3_drop.record_handler(
        SQSRecord({"messageId": "m1", "body": body, "attributes": {"ApproximateReceiveCount": "5"}}), Invocation(1.0)
    )
    assert len(ports.queue.messages) == 1
