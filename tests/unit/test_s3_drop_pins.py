"""S3 drop function behaviour no test held before (found by mutation testing producers/s3_drop/app.py): what its
record handler counts for the dashboard's drops chart, one DropsAccepted per file that made a job and one DropsSkipped
per notification of a file that had made its job already."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from producers.s3_drop import app
from tests.unit.fakes import INGEST_BUCKET, acme_ports, metrics_counted, serving

pytestmark = pytest.mark.unit


@pytest.fixture
def ports(monkeypatch):
    yield from serving(monkeypatch, app, acme_ports())


def body_of(ports, key: str) -> str:
    """The notification S3 sends for a file put under ``key``."""
    client = ports.bulk.files.client
    etag = client.put_object(Bucket=INGEST_BUCKET, Key=key, Body=b"id,name\n1,Ann\n")["ETag"]
    record = {
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": INGEST_BUCKET}, "object": {"key": key, "size": 14, "eTag": etag}},
    }
    return json.dumps({"Records": [record]})


def test_a_file_that_makes_a_job_is_counted_accepted(ports):
    app.record_handler(SQSRecord({"messageId": "m1", "body": body_of(ports, "acme/accounts/jan.csv")}))
    assert metrics_counted(app) == {"DropsAccepted": (1, "Count")}
    assert len(ports.queue.messages) == 1


def test_the_same_notification_again_is_counted_skipped_and_makes_no_second_job(ports):
    body = body_of(ports, "acme/accounts/jan.csv")
    app.record_handler(SQSRecord({"messageId": "m1", "body": body}))
    app.record_handler(SQSRecord({"messageId": "m2", "body": body}))
    assert metrics_counted(app) == {"DropsAccepted": (1, "Count"), "DropsSkipped": (1, "Count")}


def test_two_files_of_one_notification_are_counted_each(ports):
    first = json.loads(body_of(ports, "acme/accounts/jan.csv"))
    second = json.loads(body_of(ports, "acme/accounts/feb.csv"))
    body = json.dumps({"Records": first["Records"] + second["Records"]})
    app.record_handler(SQSRecord({"messageId": "m1", "body": body}))
    assert metrics_counted(app) == {"DropsAccepted": (2, "Count")}
