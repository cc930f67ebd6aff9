"""Helpers for the Data API emulator tests: run SQL through boto3 and wait for it, with unique names per test."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.fixtures.redshift import DataApi


@pytest.fixture
def api(redshift_data) -> DataApi:
    return DataApi(redshift_data)


@pytest.fixture
def name() -> str:
    """A unique, lower-case SQL-safe name for tables, users and statement names."""
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture
def event_queue(local_aws, name):
    """An SQS queue fed by a default-bus rule matching the Data API's completion events."""
    sqs, events = local_aws.client("sqs"), local_aws.client("events")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    pattern = {"source": ["aws.redshift-data"], "detail-type": ["Redshift Data Statement Status Change"]}
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    yield sqs, queue_url
    events.remove_targets(Rule=name, Ids=["queue"])
    events.delete_rule(Name=name)
    sqs.delete_queue(QueueUrl=queue_url)


def receive_events(sqs, queue_url, *, until, timeout: float = 10.0) -> list[dict]:
    """Collect events from the queue until ``until(events)`` holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    received: list[dict] = []
    while not until(received) and time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in messages.get("Messages", []):
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return received
