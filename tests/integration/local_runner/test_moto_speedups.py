"""moto's cheaper hot paths (local/moto_speedups.py) answer what moto answered: SQS counts, DynamoDB items of every
type (binary ones through moto's own serializer), refusals, an update's return values and stream record, conditions;
reads beside writes always answer (local/moto_dynamodb.py); moto in a process of its own serves and stops; and the
middleware in front of moto (local/aws.py) counts requests and hands S3 the bytes a form-typed PUT sent."""

from __future__ import annotations

import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import requests
from botocore.config import Config
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


def _slots_item(name: str) -> dict:
    return {
        "pk": {"S": name},
        "holders": {"M": {"j_1": {"N": "1"}}},
        "waiting": {"M": {"w_1": {"N": "1.5"}, "w_2": {"N": "2.5"}}},
        "count": {"N": "1"},
        "kept": {"S": "same"},
    }


@pytest.mark.parametrize(
    ("return_values", "expected"),
    [
        ("ALL_OLD", "old"),
        ("ALL_NEW", "new"),
        # as unpatched moto answers them (checked on moto 5.2.5 in process): the changed attributes, UPDATED_NEW
        # with only the changed members of a map
        (
            "UPDATED_OLD",
            {"holders": {"M": {"j_1": {"N": "1"}}}, "waiting": _slots_item("")["waiting"], "count": {"N": "1"}},
        ),
        ("UPDATED_NEW", {"holders": {"M": {"j_2": {"N": "2"}}}, "waiting": {"M": {}}, "count": {"N": "2"}}),
        ("NONE", None),
    ],
)
def test_an_update_answers_its_return_values_from_the_item_before_and_after(table, return_values, expected):
    """UpdateItem's copy of the item is now its JSON, taken before the write: each kind of answer still reads the
    item as it was (old) or as it is (new)."""
    client, name = table
    old = _slots_item("returns-" + return_values)
    client.put_item(TableName=name, Item=old)
    response = client.update_item(
        TableName=name,
        Key={"pk": old["pk"]},
        UpdateExpression="SET holders.#j = :t, #c = :c REMOVE waiting.#w",
        ExpressionAttributeNames={"#j": "j_2", "#c": "count", "#w": "w_1"},
        ExpressionAttributeValues={":t": {"N": "2"}, ":c": {"N": "2"}},
        ReturnValues=return_values,
    )
    new = {
        **old,
        "holders": {"M": {"j_1": {"N": "1"}, "j_2": {"N": "2"}}},
        "waiting": {"M": {"w_2": {"N": "2.5"}}},
        "count": {"N": "2"},
    }
    assert client.get_item(TableName=name, Key={"pk": old["pk"]})["Item"] == new
    if expected is None:
        assert "Attributes" not in response
    elif expected == "old":
        assert response["Attributes"] == old
    elif expected == "new":
        assert response["Attributes"] == new
    else:
        assert response["Attributes"] == expected


def test_a_table_with_a_stream_still_records_the_item_before_an_update(local_aws, unique_name):
    client = local_aws.client("dynamodb")
    arn = client.create_table(
        TableName=unique_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    try:
        old = _slots_item("streamed")
        client.put_item(TableName=unique_name, Item=old)
        client.update_item(
            TableName=unique_name,
            Key={"pk": old["pk"]},
            UpdateExpression="SET holders.#j = :t",
            ExpressionAttributeNames={"#j": "j_2"},
            ExpressionAttributeValues={":t": {"N": "2"}},
        )
        streams = local_aws.client("dynamodbstreams")
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
        modified = [r["dynamodb"] for r in records if r["eventName"] == "MODIFY"]
        assert len(modified) == 1
        assert modified[0]["OldImage"] == old
        assert modified[0]["NewImage"]["holders"] == {"M": {"j_1": {"N": "1"}, "j_2": {"N": "2"}}}
    finally:
        client.delete_table(TableName=unique_name)


def test_a_condition_expression_lexed_once_is_still_judged_on_each_call_s_values(table):
    client, name = table
    client.put_item(TableName=name, Item=_slots_item("judged"))
    condition = "size(holders) < :cap AND attribute_not_exists(holders.#j)"
    for cap, job, allowed in [("1", "j_2", False), ("2", "j_2", True), ("5", "j_2", False), ("5", "j_3", True)]:
        try:
            client.update_item(
                TableName=name,
                Key={"pk": {"S": "judged"}},
                UpdateExpression="SET holders.#j = :t",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#j": job},
                ExpressionAttributeValues={":t": {"N": "9"}, ":cap": {"N": cap}},
            )
            written = True
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ConditionalCheckFailedException"
            written = False
        assert written is allowed, (cap, job)


def test_reads_beside_writes_of_one_growing_map_always_answer(table):
    """moto changes items in place: without the request lock of local/moto_dynamodb.py a GetItem, or UpdateItem's own
    copy of the item, could walk the map another request was adding to, and answered 500."""
    client, name = table
    plain = boto3.client(
        "dynamodb",
        endpoint_url=client.meta.endpoint_url,
        region_name=client.meta.region_name,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=16),
        **LOCAL_CREDENTIALS,
    )
    key = {"pk": {"S": "growing"}}
    plain.put_item(TableName=name, Item={**key, "waiting": {"M": {}}})

    def add(writer: int) -> None:
        for n in range(150):
            plain.update_item(
                TableName=name,
                Key=key,
                UpdateExpression="SET waiting.#j = :t",
                ExpressionAttributeNames={"#j": f"w_{writer}_{n:04d}"},
                ExpressionAttributeValues={":t": {"N": "1"}},
                ReturnValues="UPDATED_OLD",
            )

    def read(_: int) -> None:
        for _ in range(150):
            plain.get_item(TableName=name, Key=key)

    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # moto serves in this process: switch threads often, so requests interleave
    try:
        with ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(add, w) for w in range(4)] + [pool.submit(read, r) for r in range(4)]:
                future.result()  # a 500 would raise here: retries are off
    finally:
        sys.setswitchinterval(switching)
    assert len(plain.get_item(TableName=name, Key=key)["Item"]["waiting"]["M"]) == 600


def test_moto_counts_the_requests_it_serves_by_service_and_operation():
    """What the burst benchmark reports as AWS requests per job (``LocalAws.requests_served``): each moto's own count,
    by SigV4 service and operation, with the form bodies it reads to name an SNS action still reaching moto whole."""
    aws = start_moto_process().serving("dynamodb", start_moto_process())
    try:
        before = aws.requests_served()
        aws.client("dynamodb").list_tables()
        sqs = aws.client("sqs")
        url = sqs.create_queue(QueueName="counted")["QueueUrl"]
        for n in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=str(n))
        sns = aws.client("sns")
        topic = sns.create_topic(Name="counted-topic")["TopicArn"]  # the name travels in the form body
        assert topic.endswith(":counted-topic")
        sns.publish(TopicArn=topic, Message="hello")
        aws.client("s3").create_bucket(Bucket="counted")
        served = aws.requests_served() - before
        assert served == {
            "dynamodb:ListTables": 1,
            "sqs:CreateQueue": 1,
            "sqs:SendMessage": 3,
            "sns:CreateTopic": 1,
            "sns:Publish": 1,
            "s3:PUT": 1,
        }
    finally:
        aws.stop()


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("application/x-www-form-urlencoded", "application/octet-stream"),  # curl's with --data-binary
        ("multipart/form-data; boundary=x", "application/octet-stream"),
        ("text/csv", "text/csv"),
    ],
)
@pytest.mark.parametrize("signature", ["s3v4", "s3"])  # the project's URLs, and boto3's default (SigV2)
def test_a_presigned_put_stores_the_bytes_sent_whatever_their_content_type(local_aws, sent, stored, signature):
    """Found by the newcomer review: `curl -X PUT "$URL" --data-binary @more.csv` to a drop URL sends a form's
    Content-Type; S3 stores the bytes, moto's S3 parsed them as a form and stored an empty object, answering 200, and
    the drop became a job failed "more.csv is empty" on `make run`."""
    s3 = local_aws.client("s3", config=Config(signature_version=signature))
    bucket = "form-put-" + uuid.uuid4().hex[:10]
    s3.create_bucket(Bucket=bucket)
    body = b"email,name,city\nelmer@acme.test,Elmer Fudd,Woods\n"
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "acme/contacts/more.csv"})
    assert requests.put(url, data=body, headers={"Content-Type": sent}, timeout=10).status_code == 200
    got = s3.get_object(Bucket=bucket, Key="acme/contacts/more.csv")
    assert (got["Body"].read(), got["ContentType"]) == (body, stored)
