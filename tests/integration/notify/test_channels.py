"""The webhook delivery queue on SQS (moto server): a large event fanned out to many subscriptions is queued whole,
in batches within SendMessageBatch's limits."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid

import pytest

from events import ErrorInfo
from spectra.notify.channels import DeliveryQueue
from spectra.notify.delivery import Outcome
from spectra.notify.fanout import fan_out
from spectra.notify.transport import HttpOutcome
from tests.unit.test_notify import ports_with_notify, sample_event, subscribe

pytestmark = pytest.mark.integration


@pytest.fixture
def queues(local_aws):
    sqs = local_aws.client("sqs")
    token = uuid.uuid4().hex[:10]
    urls = [sqs.create_queue(QueueName=f"deliveries-{name}-{token}")["QueueUrl"] for name in ("main", "dlq")]
    yield sqs, *urls
    for url in urls:
        sqs.delete_queue(QueueUrl=url)


def _drain(sqs, url: str) -> list[dict]:
    bodies = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(m["Body"]) for m in batch]
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
        )
    return bodies


def test_every_subscription_gets_a_large_event_through_the_delivery_queue(queues):
    """Each delivery carries its event escaped twice: ten of a 100 KB event overran SQS's limit on a batch's bodies
    when first attempts were queued, and the event reached no subscription (nor the topic, after it) on any retry.
    First attempts are made at once now, ten of them; each failed one's retry, and each first attempt past ten, goes
    on the queue alone, and all twelve arrive whole.
    Job events are small now that a job's error message is cut (below); the fan-out does not count on it."""
    sqs, url, dead_letter_url = queues
    ports = ports_with_notify(webhook_retry_base_seconds=0.1)  # each retry delayed one second
    notify = dataclasses.replace(ports.notify, deliveries=DeliveryQueue(sqs, url, dead_letter_url))
    ports = dataclasses.replace(ports, notify=notify)
    subscriptions = {subscribe(ports, events=("Job Completed",)).subscription_id for _ in range(12)}
    event = sample_event(note="\U0001f600" * 15_000)  # 60 KB of UTF-8, 180 KB as a queued delivery
    ports.notify.transport.answer(*[HttpOutcome(503)] * 12)

    result = fan_out(ports, event)

    assert len(result.deliveries) == 12 and result.published_to_topic
    # ten attempted (one round of POSTs), their retries queued; the other two queued as first attempts
    assert result.outcomes == [Outcome.RETRY_SCHEDULED] * 10 + [Outcome.QUEUED] * 2
    queued: list[dict] = []
    deadline = time.monotonic() + 20
    while len(queued) < 12 and time.monotonic() < deadline:
        time.sleep(0.2)
        queued += _drain(sqs, url)
    assert {q["subscription_id"] for q in queued} == subscriptions
    assert all(json.loads(q["payload"])["data"]["note"] == "\U0001f600" * 15_000 for q in queued)


def test_a_database_message_echoing_a_huge_value_is_cut():
    """PostgreSQL repeats a whole bad literal in its message; a job carries the head of it."""
    echoed = 'invalid input syntax for type integer: "' + "\U0001f600" * 30_000 + '"'
    error = ErrorInfo(code="statement_failed", message=echoed)
    assert len(error.message) == 2000 and error.message.endswith(" [...]")
    assert error.message.startswith(echoed[:1990])
    assert ErrorInfo(code="statement_failed", message="short").message == "short"
