"""SQS pollers (real batches, partial failures, whole-batch retries, DLQ) and schedules, on moto."""

import json

import pytest

from .conftest import wait_for

pytestmark = pytest.mark.integration


def _dlq_bodies(local_aws, url):
    messages = local_aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in messages]


def _handled_bodies(stack, function="Worker"):
    return [r["body"] for inv in stack.invocation_log(function) for r in inv.event["Records"]]


def test_poller_delivers_lambda_shaped_records_and_deletes_successes(start_stack, local_aws):
    stack = start_stack("consumers", start_schedules=False)
    sqs = local_aws.client("sqs")
    url = stack.physical_id("Work")
    sqs.send_message(
        QueueUrl=url,
        MessageBody="ok-1",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "job"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
        },
    )
    wait_for(lambda: "ok-1" in _handled_bodies(stack), what="the message to be handled")

    record = stack.invocation_log("Worker")[0].event["Records"][0]
    assert set(record) >= {"messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody"}
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == stack.attribute("Work", "Arn")
    assert record["awsRegion"] == local_aws.region
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "job",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AQI="
    wait_for(lambda: _queue_empty(sqs, url), what="the handled message to be deleted")


def _queue_empty(sqs, url):
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return (
        attributes["ApproximateNumberOfMessages"] == "0" and attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    )


def test_reported_failures_are_redelivered_then_dead_lettered(start_stack, local_aws):
    stack = start_stack("consumers", start_schedules=False, retry_visibility_seconds=0)
    sqs = local_aws.client("sqs")
    url = stack.physical_id("Work")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "ok-a"}, {"Id": "2", "MessageBody": "fail"}]
    )

    dlq = stack.physical_id("WorkDlq")
    assert wait_for(lambda: _dlq_bodies(local_aws, dlq), what="the failed message in the DLQ") == ["fail"]
    handled = _handled_bodies(stack)
    assert handled.count("ok-a") == 1  # the success was deleted after the first batch
    assert handled.count("fail") == 2  # maxReceiveCount=2: two attempts, then the DLQ
    assert _queue_empty(sqs, url)


def test_a_raising_handler_retries_the_whole_batch(start_stack, local_aws):
    stack = start_stack(
        "consumers", start_schedules=False, retry_visibility_seconds=0, parameter_overrides={"MaxReceiveCount": "3"}
    )
    sqs = local_aws.client("sqs")
    url = stack.physical_id("Work")
    sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "ok-b"}, {"Id": "2", "MessageBody": "boom"}]
    )
    dlq = stack.physical_id("WorkDlq")
    dead = wait_for(lambda: _dlq_bodies(local_aws, dlq) or None, what="the batch in the DLQ")
    dead += _dlq_bodies(local_aws, dlq)
    handled = _handled_bodies(stack)
    # Nothing was deleted: each attempt saw both messages (received together: the template gives the source a
    # batching window, so a long poll that wakes on the first receives again for the second).
    assert handled.count("boom") == 3
    assert handled.count("ok-b") >= 2
    assert "boom" in dead
    assert all(inv.error and "boom" in inv.error for inv in stack.invocation_log("Worker"))


def test_retry_visibility_none_keeps_the_queue_visibility_timeout(start_stack, local_aws):
    stack = start_stack("consumers", start_schedules=False, retry_visibility_seconds=None)
    sqs = local_aws.client("sqs")
    url = stack.physical_id("Work")
    sqs.send_message(QueueUrl=url, MessageBody="fail")
    wait_for(lambda: sum(p.batches_done for p in stack.pollers) >= 1, what="the first attempt to be settled")
    # VisibilityTimeout is 60 s: the failed message stays in flight instead of coming straight back.
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert stack.invocations("Worker") == 1


def test_schedules_fire_with_the_interval_override(start_stack):
    stack = start_stack("consumers", start_pollers=False, schedule_interval_seconds=0.2)

    def fired():
        events = [inv.event for inv in stack.invocation_log("Ticker")]
        scheduled = [e for e in events if e.get("detail-type") == "Scheduled Event"]
        custom = [e for e in events if e == {"custom": True}]
        return len(events) >= 4 and scheduled and custom and scheduled

    # each schedule is a thread of its own: on a loaded machine one may fire four times before the other fires once
    scheduled = wait_for(fired, what="four schedule firings, of both enabled schedules")
    assert len(stack.schedules) == 2  # the disabled one never fires
    event = scheduled[0]
    assert event["source"] == "aws.events" and event["detail"] == {} and event["account"] == "123456789012"
    assert event["resources"][0].startswith("arn:aws:events:") and event["time"].endswith("Z")


def test_powertools_inject_lambda_context_accepts_the_runner_context(start_stack):
    stack = start_stack("consumers", start_pollers=False, start_schedules=False)
    result = stack.invoke("Powertools", {})
    # cold_start is process-wide in Powertools: True only if no other test invoked a decorated handler first.
    assert isinstance(result.pop("cold_start"), bool)
    assert result == {"name": stack.physical_id("Powertools")}
    assert json.dumps(stack.invocation_log("Powertools")[0].result)


def test_stop_returns_quickly_with_pollers_running(start_stack):
    import time

    stack = start_stack("consumers", schedule_interval_seconds=60)
    started = time.monotonic()
    stack.stop()
    assert time.monotonic() - started < 5
    assert not any(p.alive for p in stack.pollers)
    assert not any(s.alive for s in stack.schedules)


def test_a_malformed_failure_report_fails_the_whole_batch(start_stack, local_aws, monkeypatch):
    # one poller, so both messages come in one batch: with the default two, a loaded machine could hand "ok-c" to a
    # batch of its own, which succeeds (seen once under make test with other work on the machine)
    monkeypatch.setenv("SPECTRA_LOCAL_SQS_CONCURRENCY", "1")
    stack = start_stack("consumers", start_schedules=False, retry_visibility_seconds=0)
    sqs = local_aws.client("sqs")
    sqs.send_message_batch(
        QueueUrl=stack.physical_id("Work"),
        Entries=[{"Id": "1", "MessageBody": "ok-c"}, {"Id": "2", "MessageBody": "bogus"}],
    )
    dlq = stack.physical_id("WorkDlq")
    dead: list[str] = []
    wait_for(lambda: dead.extend(_dlq_bodies(local_aws, dlq)) or len(dead) == 2, what="both messages in the DLQ")
    assert sorted(dead) == ["bogus", "ok-c"]


def test_a_mapping_without_maximum_concurrency_polls_two_batches_or_what_the_stack_is_told(start_stack, monkeypatch):
    stack = start_stack("consumers", start_schedules=False)
    assert sorted(p.name for p in stack.pollers) == ["Worker.Work#1", "Worker.Work#2"]
    monkeypatch.setenv("SPECTRA_LOCAL_SQS_CONCURRENCY", "5")
    stack = start_stack("consumers", start_schedules=False)
    assert sorted(p.name for p in stack.pollers) == [f"Worker.Work#{i}" for i in range(1, 6)]
