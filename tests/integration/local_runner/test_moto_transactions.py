"""The local stack's DynamoDB transactions behave as DynamoDB's (local/moto_dynamodb.py): a refused transaction
writes nothing and loses nothing another request wrote meanwhile; a write failing half-way takes back only its own."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration


def refused(client, table: str) -> None:
    """A transaction whose second condition fails (the first item would be written, were it not refused)."""
    with pytest.raises(ClientError) as caught:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "tx"}, "n": {"N": "1"}}}},
                {
                    "Update": {
                        "TableName": table,
                        "Key": {"pk": {"S": "guard"}},
                        "UpdateExpression": "SET n = :one",
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        )
    reasons = caught.value.response["CancellationReasons"]
    assert [r["Code"] for r in reasons] == ["None", "ConditionalCheckFailed"]
    assert reasons[1]["Item"] == {"pk": {"S": "guard"}}


def test_a_refused_transaction_loses_no_write_made_meanwhile(table):
    client, name = table
    client.put_item(TableName=name, Item={"pk": {"S": "guard"}})
    for start in range(0, 1500, 25):  # a table the size of a test run's jobs table: copying it takes a while
        rows = [{"PutRequest": {"Item": {"pk": {"S": f"old-{n}"}}}} for n in range(start, start + 25)]
        client.batch_write_item(RequestItems={name: rows})

    def work(n: int) -> None:
        if n % 2:
            refused(client, name)
        else:
            client.put_item(TableName=name, Item={"pk": {"S": f"item-{n}"}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(200)))
    keys = {item["pk"]["S"] for item in client.scan(TableName=name, ConsistentRead=True)["Items"]}
    expected = {"guard"} | {f"old-{n}" for n in range(1500)} | {f"item-{n}" for n in range(0, 200, 2)}
    assert keys == expected  # no "tx", and every put is there


def test_a_write_failing_half_way_takes_back_only_its_own(table):
    client, name = table
    client.put_item(TableName=name, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
    with pytest.raises(ClientError) as caught:
        client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": name,
                        "Key": {"pk": {"S": "a"}},
                        "UpdateExpression": "SET n = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
                {  # a path into a map the item does not have: DynamoDB refuses the whole transaction
                    "Update": {
                        "TableName": name,
                        "Key": {"pk": {"S": "b"}},
                        "UpdateExpression": "SET m.x = :two",
                        "ExpressionAttributeValues": {":two": {"N": "2"}},
                    }
                },
            ]
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert client.get_item(TableName=name, Key={"pk": {"S": "a"}})["Item"]["n"] == {"N": "1"}
    assert "Item" not in client.get_item(TableName=name, Key={"pk": {"S": "b"}})
