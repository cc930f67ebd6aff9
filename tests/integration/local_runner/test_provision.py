"""Provisioning in moto: each resource exists with its properties, and the wiring between them delivers."""

import json

import pytest

from .conftest import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(start_stack):
    return start_stack("resources")


def _receive(sqs, url):
    return sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages", [])


def test_fifo_queue_with_redrive_and_generated_name(stack, local_aws):
    url = stack.physical_id("Fifo")
    name = stack.attribute("Fifo", "QueueName")
    assert name.startswith(f"{stack.stack_name}-Fifo-") and name.endswith(".fifo")
    attributes = local_aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true"
    assert attributes["ContentBasedDeduplication"] == "true"
    assert attributes["MessageRetentionPeriod"] == "3600"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.attribute("InboxDlq", "Arn")
    assert int(redrive["maxReceiveCount"]) == 4


def test_table_with_gsi_stream_and_ttl(stack, local_aws):
    dynamodb = local_aws.client("dynamodb")
    table = dynamodb.describe_table(TableName=stack.physical_id("Jobs"))["Table"]
    assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["by-tenant"]
    assert table["GlobalSecondaryIndexes"][0]["KeySchema"][1] == {"AttributeName": "created", "KeyType": "RANGE"}
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert stack.attribute("Jobs", "StreamArn") == table["LatestStreamArn"]
    assert stack.outputs()["TableStream"] == table["LatestStreamArn"]
    ttl = dynamodb.describe_time_to_live(TableName=stack.physical_id("Jobs"))["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_at" and ttl["TimeToLiveStatus"] == "ENABLED"


def test_an_event_put_on_the_bus_reaches_the_rules_queue(stack, local_aws):
    bus = stack.physical_id("Bus")
    assert bus == f"{stack.stack_name}-bus"
    assert stack.physical_id("JobEventsRule").startswith(f"{bus}|")  # CloudFormation's Ref on a custom bus
    events = local_aws.client("events")
    targets = events.list_targets_by_rule(Rule=stack.physical_id("JobEventsRule").split("|")[1], EventBusName=bus)
    assert [t["Id"] for t in targets["Targets"]] == ["inbox"]  # the Lambda target was skipped

    events.put_events(
        Entries=[
            {"EventBusName": bus, "Source": "spectra", "DetailType": "Job Completed", "Detail": '{"job_id": "j1"}'},
            {"EventBusName": bus, "Source": "spectra", "DetailType": "Job Failed", "Detail": '{"job_id": "j2"}'},
        ]
    )
    sqs = local_aws.client("sqs")
    messages = wait_for(lambda: _receive(sqs, stack.physical_id("Inbox")), what="the bus event in the queue")
    bodies = [json.loads(m["Body"]) for m in messages]
    assert [b["detail"] for b in bodies] == [{"job_id": "j1"}]


def test_an_object_put_in_the_bucket_arrives_as_an_eventbridge_event(stack, local_aws):
    bucket = stack.physical_id("Uploads")
    assert bucket == bucket.lower() and bucket.startswith(stack.stack_name.lower())
    s3 = local_aws.client("s3")
    s3.put_object(Bucket=bucket, Key="acme/orders/file 1.csv", Body=b"a,b\n1,2\n")
    sqs = local_aws.client("sqs")
    messages = wait_for(lambda: _receive(sqs, stack.physical_id("UploadEvents")), what="the S3 event")
    event = json.loads(messages[0]["Body"])
    assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
    assert event["detail"]["bucket"]["name"] == bucket
    assert event["detail"]["object"]["key"] in ("acme/orders/file 1.csv", "acme/orders/file+1.csv")

    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rules[0]["ID"] == "expire" and rules[0]["Expiration"]["Days"] == 7
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["MaxAgeSeconds"] == 60


def test_sns_topic_subscription_delivers_to_the_queue(stack, local_aws):
    topic = stack.physical_id("Notices")
    assert topic.startswith("arn:aws:sns:")
    local_aws.client("sns").publish(TopicArn=topic, Message="hello")
    sqs = local_aws.client("sqs")
    messages = wait_for(lambda: _receive(sqs, stack.physical_id("Inbox")), what="the SNS message")
    assert json.loads(messages[0]["Body"])["Message"] == "hello"


def test_generated_secret_follows_its_template(stack, local_aws):
    value = local_aws.client("secretsmanager").get_secret_value(SecretId=stack.physical_id("DbSecret"))
    secret = json.loads(value["SecretString"])
    assert secret["username"] == "spectra"
    assert len(secret["password"]) == 20 and secret["password"].isalnum()


def test_resources_without_local_meaning_are_skipped(stack):
    assert stack.resources["Alarm"].status == "skipped"
    assert stack.resources["Bus"].status == "created"
