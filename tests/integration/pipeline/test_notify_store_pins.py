"""Subscription store behaviour no test held before (found by mutation testing spectra/notify/store.py): a write
DynamoDB fails is raised as itself, never taken for an id that exists, a subscription gone or one answered to a
repeat; a subscription read, listed or counted just after its write is found where replicas lag; a deleted tenant's
subscription whose end keeps meeting other writes is tried four times, and one refused for anything else is raised.

Runs on DynamoDB (moto), in a table made from template.yaml's ``SubscriptionsTable``; :class:`Faulty` fails the
calls a test picks, or answers a read as a lagging replica would."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from spectra.errors import Conflict
from spectra.notify.models import DisabledReason, Subscription, new_subscription_id
from spectra.notify.signing import new_secret
from spectra.notify.store import SubscriptionStore
from tests.fixtures.aws import Faulty, table_from_template

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


@pytest.fixture
def dynamo(local_aws):
    """(the plain client, a faulty client on it, the subscriptions table's name)."""
    with table_from_template(local_aws, "SubscriptionsTable", "subscriptions-pins-") as (client, table):
        yield client, Faulty(client), table


def make(tenant: str = "acme", **fields) -> Subscription:
    values = {
        "subscription_id": new_subscription_id(),
        "tenant_id": tenant,
        "url": "https://hooks.acme.example/in",
        "events": ["Job Completed"],
        "secret": new_secret(),
        "created_at": T0,
        **fields,
    }
    return Subscription(**values)


def throttled(operation: str):
    """A fault: DynamoDB refuses the call for throughput (a ClientError that is no refused condition)."""

    def fault(real, kwargs):
        error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
        raise ClientError(error, operation)

    return fault


def cancelled(client, *codes: str, times: int = 1_000):
    """A fault: the first ``times`` transactions are cancelled with these reasons, one per item; later ones run."""
    left = [times]

    def fault(real, kwargs):
        if left[0]:
            left[0] -= 1
            reasons = [{"Code": code} for code in codes]
            error = {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}}
            raise client.exceptions.TransactionCanceledException(
                {**error, "CancellationReasons": reasons}, "TransactWriteItems"
            )
        return real(**kwargs)

    return fault


def lagging(real, kwargs):
    """A read from a replica no write has reached, unless it asks for consistency."""
    if kwargs.get("ConsistentRead"):
        return real(**kwargs)
    return {"Items": [], "Count": 0, "ScannedCount": 0} if "KeyConditionExpression" in kwargs else {}


def free_marker_check(table: str) -> dict:
    """A ConditionCheck that holds: no item under this key (standing in for a tenant record check)."""
    key = {"tenant_id": {"S": "marker"}, "subscription_id": {"S": "none"}}
    return {
        "ConditionCheck": {"TableName": table, "Key": key, "ConditionExpression": "attribute_not_exists(tenant_id)"}
    }


def test_a_create_dynamodb_fails_is_raised_not_answered_as_an_existing_id(dynamo):
    """A throttled PutItem is DynamoDB's trouble (retried, or a 503), not the 409 of an id that exists."""
    _, faulty, table = dynamo
    faulty.faults["put_item"] = throttled("PutItem")
    store = SubscriptionStore(faulty, table)
    made = make()
    with pytest.raises(ClientError) as raised:
        store.create(made)
    assert not isinstance(raised.value, Conflict)
    assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert SubscriptionStore(dynamo[0], table).get("acme", made.subscription_id) is None


def test_a_checked_create_cancelled_for_anything_but_passing_trouble_is_raised(dynamo):
    """A transaction cancelled for a reason that is neither a refused condition nor passing trouble (a validation
    error) is raised as it came: not a Conflict, not a TenantGone, nothing stored."""
    client, faulty, table = dynamo
    faulty.faults["transact_write_items"] = cancelled(client, "None", "ValidationError")
    made = make()
    with pytest.raises(client.exceptions.TransactionCanceledException):
        SubscriptionStore(faulty, table).create(made, tenant_check=free_marker_check(table))
    assert SubscriptionStore(client, table).get("acme", made.subscription_id) is None


def test_a_checked_create_throttled_three_times_is_stored_on_its_fourth_try(dynamo):
    client, faulty, table = dynamo
    faulty.faults["transact_write_items"] = cancelled(client, "ThrottlingError", "None", times=3)
    made = make()
    assert SubscriptionStore(faulty, table).create(made, tenant_check=free_marker_check(table)) == made
    assert SubscriptionStore(client, table).get("acme", made.subscription_id) == made


def test_a_subscription_is_read_listed_and_counted_just_after_its_create_where_replicas_lag(dynamo):
    """A GET right after the POST, and a consistent listing (the per-tenant limit's count, the notifier's read of an
    event's subscriptions), see the subscription though a replica has not had the write yet."""
    _, faulty, table = dynamo
    faulty.faults.update(get_item=lagging, query=lagging)
    store = SubscriptionStore(faulty, table)
    made = store.create(make())
    assert store.get("acme", made.subscription_id) == made
    assert store.list_for_tenant("acme", limit=10, consistent=True).subscriptions == [made]
    assert store.webhooks_for_tenant("acme", consistent=True) == [made]
    assert store.list_for_tenant("acme", limit=10).subscriptions == []  # lagging indeed: not asked for consistency


def test_a_withdraw_dynamodb_fails_is_raised_not_taken_for_a_subscription_answered_to_a_repeat(dynamo):
    """False would tell the request that made it a client has it; the subscription is still there, not withdrawn."""
    client, faulty, table = dynamo
    made = SubscriptionStore(client, table).create(make())
    faulty.faults["delete_item"] = throttled("DeleteItem")
    with pytest.raises(ClientError):
        SubscriptionStore(faulty, table).withdraw("acme", made.subscription_id)
    assert SubscriptionStore(client, table).get("acme", made.subscription_id) == made


@pytest.mark.parametrize(
    "write",
    [
        lambda store, sid: store.record_success("acme", sid, status=200, at=T0),
        lambda store, sid: store.record_failure("acme", sid, status=500, error="HTTP 500", at=T0),
        lambda store, sid: store.record_failure(
            "acme", sid, status=500, error="HTTP 500", at=T0, run_gap=timedelta(hours=6)
        ),
        lambda store, sid: store.disable("acme", sid, reason=DisabledReason.GONE, message="410", at=T0),
        lambda store, sid: store.mark_disabled_event_published("acme", sid),
        lambda store, sid: store.answer("acme", sid),
    ],
    ids=["success", "failure", "failure-with-gap", "disable", "published", "answer"],
)
def test_a_delivery_state_write_dynamodb_fails_is_raised_not_taken_for_a_gone_subscription(dynamo, write):
    """None means gone (the delivery dropped, never retried); a throttled UpdateItem is raised, the state unchanged."""
    client, faulty, table = dynamo
    made = SubscriptionStore(client, table).create(make())
    faulty.faults["update_item"] = throttled("UpdateItem")
    with pytest.raises(ClientError):
        write(SubscriptionStore(faulty, table), made.subscription_id)
    assert SubscriptionStore(client, table).get("acme", made.subscription_id) == made


def _expiry(client, table: str, subscription_id: str) -> int | None:
    key = {"tenant_id": {"S": "acme"}, "subscription_id": {"S": subscription_id}}
    item = client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    return int(item["expires_at"]["N"]) if "expires_at" in item else None


def test_a_deleted_tenants_subscription_that_meets_another_write_three_times_gets_its_end_on_the_fourth(dynamo):
    client, faulty, table = dynamo
    made = SubscriptionStore(client, table).create(make())
    faulty.faults["transact_write_items"] = cancelled(client, "None", "TransactionConflict", times=3)
    at = T0 + timedelta(days=40)
    stamped = SubscriptionStore(faulty, table).expire_standing(
        "acme", at=at, still_gone=lambda g: free_marker_check(table)
    )
    assert stamped == 1
    assert _expiry(client, table, made.subscription_id) == int(at.timestamp())


def test_a_deleted_tenants_subscription_that_keeps_meeting_other_writes_is_a_conflict_without_an_end(dynamo):
    """Four tries, each cancelled for a delivery writing its state: the delete is answered as one to run again."""
    client, faulty, table = dynamo
    made = SubscriptionStore(client, table).create(make())
    faulty.faults["transact_write_items"] = cancelled(client, "None", "TransactionConflict", times=4)
    with pytest.raises(Conflict, match=made.subscription_id):
        SubscriptionStore(faulty, table).expire_standing("acme", at=T0, still_gone=lambda g: free_marker_check(table))
    assert _expiry(client, table, made.subscription_id) is None


def test_a_deleted_tenants_subscription_whose_end_is_refused_for_anything_else_is_raised(dynamo):
    client, faulty, table = dynamo
    made = SubscriptionStore(client, table).create(make())
    faulty.faults["transact_write_items"] = cancelled(client, "None", "ValidationError")
    with pytest.raises(client.exceptions.TransactionCanceledException):
        SubscriptionStore(faulty, table).expire_standing("acme", at=T0, still_gone=lambda g: free_marker_check(table))
    assert _expiry(client, table, made.subscription_id) is None


def test_a_deleted_tenants_subscription_made_just_before_the_delete_gets_its_end_where_replicas_lag(dynamo):
    """The delete's read of the tenant's subscriptions asks for consistency: a replica the last create has not reached
    would leave that subscription, signing secret and all, without an end for ever. Every Query that does not ask for
    consistency is answered here as such a replica would, with nothing."""
    client, _, table = dynamo
    made = SubscriptionStore(client, table).create(make())

    def lagging_query(params, **_):
        if not json.loads(params["body"]).get("ConsistentRead"):
            return AWSResponse("", 200, {}, None), {"Items": [], "Count": 0, "ScannedCount": 0}
        return None

    client.meta.events.register("before-call.dynamodb.Query", lagging_query)
    try:
        at = T0 + timedelta(days=40)
        stamped = SubscriptionStore(client, table).expire_standing(
            "acme", at=at, still_gone=lambda g: free_marker_check(table)
        )
    finally:
        client.meta.events.unregister("before-call.dynamodb.Query", lagging_query)
    assert stamped == 1
    assert _expiry(client, table, made.subscription_id) == int(at.timestamp())
