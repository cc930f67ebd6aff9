"""Webhook delivery queue and event topic behaviour no test held before (found by mutation testing
spectra/notify/channels.py): a retry waits its delay (at most 15 minutes) on the delivery queue and a dead letter goes
to the dead-letter queue; each terminal event reaches the topic's subscribers under the id the publish returns, with a
subject of at most 100 characters and only the message attributes it has.

Against moto's SQS and SNS; the topic is read through an SQS queue subscribed to it.
"""

from __future__ import annotations

import json
import uuid

import pytest

from events import WebhookDelivery
from spectra.job_queue import message_body
from spectra.notify.channels import DeliveryQueue, EventTopic
from tests.integration.notify import test_channels
from tests.integration.notify.test_channels import _drain
from tests.unit.test_notify import sample_event

pytestmark = pytest.mark.integration

queues = test_channels.queues  # the delivery queue and its DLQ: (sqs, queue url, dead-letter queue url)


@pytest.fixture
def topic(local_aws):
    """A topic and the queue subscribed to it (envelopes, not raw): ``(sns, topic arn, sqs, queue url)``."""
    sns, sqs = local_aws.client("sns"), local_aws.client("sqs")
    token = uuid.uuid4().hex[:10]
    arn = sns.create_topic(Name=f"pins-events-{token}")["TopicArn"]
    url = sqs.create_queue(QueueName=f"pins-topic-{token}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    yield sns, arn, sqs, url
    sqs.delete_queue(QueueUrl=url)
    sns.delete_topic(TopicArn=arn)


def _delivery(n: int, **fields) -> WebhookDelivery:
    return WebhookDelivery(
        webhook_id=f"msg_{n:04d}",
        tenant_id="acme",
        subscription_id=f"sub_{n:04d}",
        event_type="Job Completed",
        payload="{}",
        **fields,
    )


# -- the delivery queue -------------------------------------------------------------------------------------------


def test_a_retry_is_queued_again_on_the_delivery_queue_after_its_delay(queues):
    """A retry two minutes away is on the delivery queue, delayed (not received at once); one due now is received
    whole at once, as queued."""
    sqs, url, dead_letter_url = queues
    deliveries = DeliveryQueue(sqs, url, dead_letter_url)
    later, now = _delivery(1, attempt=2), _delivery(2, attempt=3)

    deliveries.retry(later, 120)

    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert _drain(sqs, url) == []
    deliveries.retry(now, 0)
    assert _drain(sqs, url) == [json.loads(message_body(now))]
    assert _drain(sqs, dead_letter_url) == []


def test_a_delivery_out_of_attempts_is_kept_in_the_dead_letter_queue_with_its_last_error(queues):
    """README: a delivery that used every attempt is kept in the DLQ, with its last error, for a redrive; nothing of
    it goes back on the delivery queue."""
    sqs, url, dead_letter_url = queues
    failed = _delivery(7, attempt=8, last_error="HTTP 503 from receiver")

    DeliveryQueue(sqs, url, dead_letter_url).dead_letter(failed)

    assert _drain(sqs, dead_letter_url) == [json.loads(message_body(failed))]
    assert json.loads(message_body(failed))["last_error"] == "HTTP 503 from receiver"
    assert _drain(sqs, url) == []


# -- the event topic ----------------------------------------------------------------------------------------------


def _published(topic, event) -> tuple[str, dict]:
    sns, arn, sqs, url = topic
    message_id = EventTopic(sns, arn).publish(event)
    [envelope] = _drain(sqs, url)
    return message_id, envelope


def test_a_subscriber_gets_the_event_under_the_id_the_publish_returns_with_its_attributes(topic):
    """The publish's answer is the SNS message id a subscriber sees; the subject names the event's type and job, and
    the attributes subscribers filter on are its tenant, generation, status and detail type."""
    event = sample_event()

    message_id, envelope = _published(topic, event)

    assert message_id == envelope["MessageId"]
    assert envelope["Subject"] == "Spectra: Job Completed j_Qm9ZcW1uT3pLd0xZb3FXcA"
    assert {name: a["Value"] for name, a in envelope["MessageAttributes"].items()} == {
        "tenant_id": "acme",
        "tenant_generation": "5d0c3e8a91f2b746",
        "status": "COMPLETED",
        "detail_type": "Job Completed",
    }
    assert {a["Type"] for a in envelope["MessageAttributes"].values()} == {"String"}


def test_an_event_without_a_generation_has_no_generation_attribute(topic):
    """An event of a tenant made before generations were carried has none: the attribute is left out, never the
    text ``None`` (a filter on generations would take it for one)."""
    event = sample_event()
    event.detail.pop("tenant_generation")

    _, envelope = _published(topic, event)

    assert sorted(envelope["MessageAttributes"]) == ["detail_type", "status", "tenant_id"]


def test_a_long_subject_is_cut_to_the_100_characters_sns_takes(topic):
    """SNS refuses a Subject past 100 characters (InvalidParameter), and the event never reached the topic: a
    job named at length is cut to its first 100 characters."""
    job = "j_" + "a" * 120
    event = sample_event().model_copy(update={"resources": [job]})

    _, envelope = _published(topic, event)

    assert envelope["Subject"] == ("Spectra: Job Completed " + job)[:100]
    assert len(envelope["Subject"]) == 100


def test_an_event_naming_no_resource_has_its_type_alone_as_subject(topic):
    """An event with no resources is published (not an IndexError), its subject the type without a trailing space."""
    event = sample_event().model_copy(update={"resources": []})

    _, envelope = _published(topic, event)

    assert envelope["Subject"] == "Spectra: Job Completed"
