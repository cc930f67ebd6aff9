"""moto's cheaper hot paths (local/moto_speedups.py) answer what moto answered: SQS counts, DynamoDB items of every
type (binary ones through moto's own serializer), refusals; and moto in a process of its own serves and stops."""

from __future__ import annotations

import os
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from local.aws import LOCAL_CREDENTIALS, start_moto_process

pytestmark = pytest.mark.integration


def test_queue_counts_are_moto_s_own(local_aws):
    sqs = local_aws.client("sqs")
    url = sqs.create_queue(QueueName="counts-" + uuid.uuid4().hex[:10])["QueueUrl"]
    for n in range(5):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
    sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, VisibilityTimeout=60)["Messages"]
    assert len(received) == 2
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    # visible and not delayed / received and not yet visible again / delayed
    assert attributes["ApproximateNumberOfMessages"] == "3"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "2"
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert attributes["MessageRetentionPeriod"] == "345600"
    sqs.delete_queue(QueueUrl=url)


def test_items_of_every_type_read_back_as_written(table):
    client, name = table
    item = {
        "pk": {"S": "every-type"},
        "n": {"N": "12.50"},
        "flag": {"BOOL": True},
        "nothing": {"NULL": True},
        "names": {"SS": ["a", "b"]},
        "numbers": {"NS": ["1", "2"]},
        "list": {"L": [{"S": "x"}, {"N": "3"}, {"M": {"deep": {"S": "y"}}}]},
        "map": {"M": {"waiting": {"M": {"j_1": {"N": "1.5"}, "j_2": {"N": "2.5"}}}, "empty": {"M": {}}}},
    }
    client.put_item(TableName=name, Item=item)
    assert client.get_item(TableName=name, Key={"pk": item["pk"]})["Item"] == item
    updated = client.update_item(
        TableName=name,
        Key={"pk": item["pk"]},
        UpdateExpression="SET #m.waiting.#j = :t REMOVE #m.#e",
        ExpressionAttributeNames={"#m": "map", "#j": "j_3", "#e": "empty"},
        ExpressionAttributeValues={":t": {"N": "3.5"}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    assert updated["map"] == {"M": {"waiting": {"M": {"j_1": {"N": "1.5"}, "j_2": {"N": "2.5"}, "j_3": {"N": "3.5"}}}}}
    assert client.query(
        TableName=name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": item["pk"]},
    )["Items"] == [updated]


def test_binary_values_still_go_through_moto_s_serializer(table):
    client, name = table
    item = {"pk": {"S": "bytes"}, "blob": {"B": b"\x00\xffbinary"}, "blobs": {"BS": [b"\x01", b"\x02"]}}
    client.put_item(TableName=name, Item=item)
    assert client.get_item(TableName=name, Key={"pk": item["pk"]})["Item"] == item


def test_a_refused_write_answers_with_the_item_as_it_was(table):
    client, name = table
    client.put_item(TableName=name, Item={"pk": {"S": "held"}, "holders": {"M": {"j_1": {"N": "1"}}}})
    with pytest.raises(ClientError) as caught:
        client.update_item(
            TableName=name,
            Key={"pk": {"S": "held"}},
            UpdateExpression="SET holders.#j = :t",
            ConditionExpression="size(holders) < :cap",
            ExpressionAttributeNames={"#j": "j_2"},
            ExpressionAttributeValues={":t": {"N": "2"}, ":cap": {"N": "1"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert caught.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert caught.value.response["Item"] == {"pk": {"S": "held"}, "holders": {"M": {"j_1": {"N": "1"}}}}


def test_moto_in_a_process_of_its_own_serves_every_service_and_stops():
    aws = start_moto_process()
    pid = aws.pid
    try:
        assert pid != os.getpid()
        url = aws.client("sqs").create_queue(QueueName="own-process")["QueueUrl"]
        aws.client("sqs").send_message(QueueUrl=url, MessageBody="hello")
        assert aws.client("sqs").receive_message(QueueUrl=url)["Messages"][0]["Body"] == "hello"
        aws.client("s3").create_bucket(Bucket="own-process")
        assert [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]] == ["own-process"]
    finally:
        aws.stop()
    with pytest.raises(ProcessLookupError):  # it stopped when its stdin closed, and was waited for
        os.kill(pid, 0)


def test_a_service_served_by_a_moto_of_its_own_is_reached_through_boto3s_own_variable(monkeypatch):
    aws = start_moto_process().serving("dynamodb", start_moto_process())
    pids = {aws.pid, aws.pid_of("dynamodb")}
    try:
        assert len(pids | {os.getpid()}) == 3 and aws.pid_of("sqs") == aws.pid
        aws.client("dynamodb").create_table(
            TableName="apart",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        aws.client("sqs").create_queue(QueueName="together")
        main = boto3.client("dynamodb", endpoint_url=aws.endpoint_url, region_name=aws.region, **LOCAL_CREDENTIALS)
        assert main.list_tables()["TableNames"] == []  # the table lives in the other process only
        # what a function sees: no endpoint of its own, only the environment
        for name, value in aws.environment().items():
            monkeypatch.setenv(name, value)
        session = boto3.session.Session()
        assert session.client("dynamodb").list_tables()["TableNames"] == ["apart"]
        assert session.client("sqs").list_queues()["QueueUrls"][0].endswith("/together")
    finally:
        aws.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # both stopped, and were waited for
            os.kill(pid, 0)
