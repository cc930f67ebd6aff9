"""Job queue behaviour no test held before (found by mutation testing spectra/job_queue.py): a queued message carries
the model's JSON, its version as a message attribute and the delay asked, and the send answers SQS's message id.

Against moto's SQS.
"""

from __future__ import annotations

import json
import uuid

import pytest

from events import JobQueuedMessage
from spectra.job_queue import JobQueue
from tests.integration.pipeline.test_publisher_pins import _receive

pytestmark = pytest.mark.integration


def test_a_queued_message_carries_its_body_version_and_delay(local_aws):
    """send answers the message's id; the message holds the model's JSON and its version as a String attribute; a
    delay of 900 s keeps it from a receive."""
    sqs = local_aws.client("sqs")
    url = sqs.create_queue(QueueName=f"pins-jobs-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    try:
        queue = JobQueue(sqs, url)
        message = JobQueuedMessage(job_id="j_q", tenant_id="acme")
        message_id = queue.send(message)
        [received] = _receive(sqs, url)
        assert received["MessageId"] == message_id
        assert json.loads(received["Body"]) == json.loads(message.model_dump_json())
        assert received["MessageAttributes"]["version"] == {"DataType": "String", "StringValue": message.version}
        sqs.delete_message(QueueUrl=url, ReceiptHandle=received["ReceiptHandle"])
        queue.send(message, delay_seconds=900)
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
        assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    finally:
        sqs.delete_queue(QueueUrl=url)
