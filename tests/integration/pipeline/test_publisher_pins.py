"""Event publisher behaviour no test held before (found by mutation testing spectra/publisher.py): an event reaches
the bus it was given with the project's source, its detail type, its detail as JSON and its resources, and the publish
answers EventBridge's event id; an entry EventBridge refuses is raised as PublishFailed naming the detail type and
EventBridge's code and message.

Against moto's EventBridge; the bus is read through an SQS queue its rule feeds.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from events import EVENT_SOURCE, JobQueuedMessage
from spectra.publisher import EventPublisher, PublishFailed
from tests.fixtures.aws import Faulty

pytestmark = pytest.mark.integration


@pytest.fixture
def bus(local_aws):
    """A bus whose every event of the project's source lands in a queue: ``(events client, bus name, sqs, url)``."""
    events, sqs = local_aws.client("events"), local_aws.client("sqs")
    token = uuid.uuid4().hex[:10]
    name = f"pins-bus-{token}"
    events.create_event_bus(Name=name)
    url = sqs.create_queue(QueueName=f"pins-bus-{token}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventBusName=name, EventPattern=json.dumps({"source": [EVENT_SOURCE]}))
    events.put_targets(Rule=name, EventBusName=name, Targets=[{"Id": "queue", "Arn": arn}])
    yield events, name, sqs, url
    events.remove_targets(Rule=name, EventBusName=name, Ids=["queue"])
    events.delete_rule(Name=name, EventBusName=name)
    events.delete_event_bus(Name=name)
    sqs.delete_queue(QueueUrl=url)


def _receive(sqs, url, count: int = 1) -> list[dict]:
    """Up to ``count`` messages, long-polling at most about ten seconds."""
    received: list[dict] = []
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        )
        received.extend(answer.get("Messages", []))
    return received


def test_an_event_reaches_its_bus_with_source_type_detail_and_resources(bus):
    """The event on the bus has the project's source, the detail type, the detail's JSON and the resources given, and
    publish answers the event's id."""
    events, name, sqs, url = bus
    detail = JobQueuedMessage(job_id="j_pub", tenant_id="acme")
    event_id = EventPublisher(events, name).publish("Job Queued", detail, resources=["arn:aws:x:::job/j_pub"])
    [message] = _receive(sqs, url)
    event = json.loads(message["Body"])
    assert event["id"] == event_id
    assert event["source"] == EVENT_SOURCE
    assert event["detail-type"] == "Job Queued"
    assert event["detail"] == json.loads(detail.model_dump_json())
    assert event["resources"] == ["arn:aws:x:::job/j_pub"]


def test_an_event_without_resources_has_none(bus):
    """Without resources the event's list is empty."""
    events, name, sqs, url = bus
    EventPublisher(events, name).publish("Job Queued", JobQueuedMessage(job_id="j_bare", tenant_id="acme"))
    [message] = _receive(sqs, url)
    assert json.loads(message["Body"])["resources"] == []


def test_an_entry_eventbridge_refuses_is_raised_naming_its_code_and_message(bus):
    """EventBridge answering the call with its entry refused (FailedEntryCount 1) is PublishFailed saying the detail
    type, the entry's ErrorCode and ErrorMessage, not an event id."""
    events, name, _, _ = bus
    faulty = Faulty(events)
    faulty.faults["put_events"] = lambda real, kwargs: {
        "FailedEntryCount": 1,
        "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}],
    }
    with pytest.raises(PublishFailed, match=r"^Job Queued: InternalFailure: try again$"):
        EventPublisher(faulty, name).publish("Job Queued", JobQueuedMessage(job_id="j_no", tenant_id="acme"))


def test_an_answer_without_an_event_id_is_a_failure_even_when_no_count_is_given(bus):
    """An entry without EventId is refused even when FailedEntryCount is missing or 0."""
    events, name, _, _ = bus
    faulty = Faulty(events)
    faulty.faults["put_events"] = lambda real, kwargs: {"Entries": [{"ErrorCode": "X", "ErrorMessage": "y"}]}
    with pytest.raises(PublishFailed, match=r"^Job Queued: X: y$"):
        EventPublisher(faulty, name).publish("Job Queued", JobQueuedMessage(job_id="j_no", tenant_id="acme"))
