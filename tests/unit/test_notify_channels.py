"""Notifications: what the mutation review (rv-mutants7) found the suite let change unnoticed. The fakes cap a
retry's delay and take any attribute, so these drive the real SQS and SNS channels with stub clients."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from events import ProjectEvent, WebhookDelivery
from events.catalog import SAMPLES
from spectra.notify.channels import MAX_DELAY_SECONDS, DeliveryQueue, EventTopic
from spectra.notify.models import Subscription, SubscriptionStatus

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 10, 14, 27, tzinfo=UTC)


def event(name: str, **detail) -> ProjectEvent:
    body = json.loads((SAMPLES / name).read_text())
    body["detail"].update(detail)
    return ProjectEvent.model_validate(body)


class Sns:
    def publish(self, **request):
        self.request = request
        return {"MessageId": "m-1"}


class Sqs:
    def send_message(self, **request):
        self.request = request


def test_a_retry_hours_away_is_queued_with_at_most_sqs_s_15_minute_delay():
    """Backoff reaches hours (webhook_retry_max_delay_seconds: 3 h); SQS refuses a DelaySeconds over 900, and the
    failed send would leave the attempt to be made again at once rather than later. Mutant N59 (no cap)."""
    sqs = Sqs()
    delivery = WebhookDelivery(
        webhook_id="msg_1", tenant_id="acme", subscription_id="sub_1", event_type="Job Completed", payload="{}"
    )
    DeliveryQueue(sqs, "https://sqs/q", "https://sqs/dlq").retry(delivery, 3 * 3600)
    assert sqs.request["DelaySeconds"] == MAX_DELAY_SECONDS == 900


def test_a_bulk_jobs_state_is_the_topics_status_attribute():
    """README: subscribers filter the topic on ``status``, a query job's status or a bulk job's state. Mutant N55
    (status only): every bulk event reached the topic with no status, and a filter on it passed none of them."""
    sns = Sns()
    EventTopic(sns, "arn:aws:sns:us-east-1:123456789012:t").publish(event("bulk_job_failed_event.json"))
    assert sns.request["MessageAttributes"]["status"] == {"DataType": "String", "StringValue": "Failed"}


def test_an_empty_attribute_is_left_out_of_the_topics_message():
    """SNS refuses a String attribute whose value is empty (InvalidParameterValue): the publish failed, and the event
    was retried until it was dropped. Mutant N56 (only None left out)."""
    sns = Sns()
    EventTopic(sns, "arn:aws:sns:us-east-1:123456789012:t").publish(
        event("job_completed_event.json", tenant_generation="")
    )
    attributes = sns.request["MessageAttributes"]
    assert "tenant_generation" not in attributes
    assert all(value["StringValue"] for value in attributes.values())


def subscription(**fields) -> Subscription:
    return Subscription(
        subscription_id="sub_1",
        tenant_id="acme",
        url="https://hooks.acme.example/in",
        events=["Job Failed", "Bulk Job Failed"],
        secret="whsec_x",
        created_at=T0,
        **fields,
    )


def test_a_filter_on_a_field_the_event_lacks_does_not_pass_it():
    """A subscription filtered to ``status: [FAILED]`` asked for query jobs that failed: a bulk job's event has a
    ``state`` and no ``status``, and must not reach it. Mutant N50 (a missing field passes the filter)."""
    sub = subscription(filter={"status": ["FAILED"]})
    assert sub.accepts("Job Failed", {"status": "FAILED"})
    assert not sub.accepts("Bulk Job Failed", {"state": "Failed"})


def test_a_disabled_subscription_accepts_no_event():
    """Mutant N48: the fan-out queued deliveries for disabled subscriptions (each then read and dropped)."""
    assert subscription().accepts("Job Failed", {"status": "FAILED"})
    assert not subscription(status=SubscriptionStatus.DISABLED).accepts("Job Failed", {"status": "FAILED"})
