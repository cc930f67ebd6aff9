"""Tenant directory behaviour no test held before (found by mutation testing spectra/tenants.py), on DynamoDB: how
many times a delete and an update read a record that keeps changing before they give up, what an update that changes
nothing answers, that one naming the user a tenant already has claims nothing, and that ending a deleted id's webhook
subscriptions leaves a live tenant from before generations its own. (tests/unit/test_tenants_pins.py holds what needs
no table.)

Runs on DynamoDB (moto), in tables made from template.yaml's ``TenantsTable`` and ``SubscriptionsTable``;
:class:`Faulty` lands another operator's write before the calls a test picks."""

from __future__ import annotations

import itertools

import pytest

from spectra.errors import Conflict
from spectra.jobs import utcnow
from spectra.tenants import TenantDirectory
from tests.fixtures.aws import Faulty, table_from_template

pytestmark = pytest.mark.integration

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"


@pytest.fixture
def dynamo(local_aws):
    """(the plain client, a faulty client on it, the tenants table's name)."""
    with table_from_template(local_aws, "TenantsTable", "tenants-pins-") as (client, table):
        yield client, Faulty(client), table


def _changing_before(faulty: Faulty, call: str, change, times: int) -> None:
    """Another operator's ``change`` lands just before each of the first ``times`` of ``call``."""
    left = itertools.count(times, -1)

    def first_another(real, kwargs):
        if next(left) > 0:
            change()
        return real(**kwargs)

    faulty.faults[call] = first_another


@pytest.mark.parametrize(("changes", "deleted"), [(2, True), (3, False)])
def test_a_delete_reads_a_record_that_keeps_changing_three_times(dynamo, changes, deleted):
    """A key issued between the delete's read and its write makes it read again (and delete that key too): twice is
    still a delete, with every key gone; the third time it gives up with a Conflict saying to delete it again, and
    the tenant and its keys are all still there."""
    client, faulty, table = dynamo
    other = TenantDirectory(client, table)
    other.create_tenant("acme", db_user="tenant_acme")
    keys = []
    _changing_before(faulty, "transact_write_items", lambda: keys.append(other.issue_key("acme")), changes)
    directory = TenantDirectory(faulty, table)
    if deleted:
        assert directory.delete_tenant("acme") is True
        assert other.get("acme") is None
        assert all(
            client.get_item(TableName=table, Key={"pk": {"S": f"key#{_hash(k)}"}}).get("Item") is None for k in keys
        )
    else:
        with pytest.raises(Conflict, match="kept changing while it was being deleted"):
            directory.delete_tenant("acme")
        assert other.get("acme") is not None
        assert [other.authenticate(key).tenant_id for key in keys] == ["acme"] * 3


def _hash(key: str) -> str:
    from spectra.tenants import hash_api_key

    return hash_api_key(key)


@pytest.mark.parametrize(("changes", "updated"), [(2, True), (3, False)])
def test_an_update_reads_a_record_that_keeps_changing_three_times(dynamo, changes, updated):
    """An update whose record was changed under it (here its secret, which the update leaves alone) is made again on
    the record as it is now: twice is still an update; the third time it gives up with a Conflict saying to update
    it again, and nothing of it is written."""
    client, faulty, table = dynamo
    other = TenantDirectory(client, table)
    other.create_tenant("acme", db_user="tenant_acme", secret_arn=SECRET + "acme-0")
    moves = itertools.count(1)
    _changing_before(
        faulty, "update_item", lambda: other.update_tenant("acme", secret_arn=f"{SECRET}acme-{next(moves)}"), changes
    )
    directory = TenantDirectory(faulty, table)
    if updated:
        assert directory.update_tenant("acme", tier="premium").tier == "premium"
        assert other.get("acme").tier == "premium"
    else:
        with pytest.raises(Conflict, match="kept changing while it was being updated"):
            directory.update_tenant("acme", tier="premium")
        assert other.get("acme").tier == "standard"
    assert other.get("acme").secret_arn == f"{SECRET}acme-{changes}"


def test_an_update_that_changes_nothing_answers_the_tenant_as_it_is(dynamo):
    """``tenants update acme`` with nothing to change writes nothing and answers the tenant as stored, not None."""
    client, _, table = dynamo
    directory = TenantDirectory(client, table)
    tenant = directory.create_tenant("acme", db_user="tenant_acme", tier="premium")
    assert directory.update_tenant("acme") == tenant


@pytest.fixture
def subscriptions(local_aws, dynamo):
    """A subscriptions table from template.yaml's own SubscriptionsTable, its store, and a directory that knows it."""
    from spectra.notify.store import SubscriptionStore

    client, _, table = dynamo
    with table_from_template(local_aws, "SubscriptionsTable", "subscriptions-pins-") as (subs_client, name):
        yield SubscriptionStore(subs_client, name), TenantDirectory(client, table, subscriptions_table=name)


def test_ending_a_deleted_ids_subscriptions_leaves_a_live_tenant_from_before_generations_its_own(dynamo, subscriptions):
    """A tenant from before generations (its record and subscription without one, as older versions wrote them) that
    is still there is no deleted tenant: ending the id's subscriptions (README "Upgrading") gives its subscription no
    end, and it keeps receiving events."""
    from spectra.notify.models import Subscription, new_subscription_id
    from spectra.notify.signing import new_secret

    client, _, table = dynamo
    store, directory = subscriptions
    record = {"pk": "tenant#acme", "tenant_id": "acme", "db_user": "tenant_legacy", "created_at": "2026-01-01T00:00:00"}
    client.put_item(TableName=table, Item={**{k: {"S": v} for k, v in record.items()}, "active": {"BOOL": True}})
    subscription = store.create(
        Subscription(
            subscription_id=new_subscription_id(),
            tenant_id="acme",
            tenant_generation=None,
            url="https://hooks.example/in",
            events=["Job Completed"],
            secret=new_secret(),
            created_at=utcnow(),
        ),
        expires_at=None,
    )
    assert directory.end_deleted_subscriptions("acme") == 0
    key = {"tenant_id": {"S": "acme"}, "subscription_id": {"S": subscription.subscription_id}}
    assert "expires_at" not in store._db.get_item(TableName=store._table, Key=key, ConsistentRead=True)["Item"]


def test_an_upgrade_claim_of_a_tenant_from_before_generations_leaves_another_tenants_identity_its_own(dynamo):
    """A tenant from before generations whose user another tenant was given since (before the upgrade's claim): the
    claim is refused and named, and the identity record still names the other tenant, not the older one (written
    over, the user would be free to move back onto the other tenant's rows, and to give to a third)."""
    client, _, table = dynamo
    directory = TenantDirectory(client, table)
    record = {"pk": "tenant#old", "tenant_id": "old", "db_user": "tenant_shared", "created_at": "2026-01-01T00:00:00"}
    client.put_item(TableName=table, Item={**{k: {"S": v} for k, v in record.items()}, "active": {"BOOL": True}})
    directory.create_tenant("new", db_user="tenant_shared")
    assert directory.claim_identities() == {"old": ["db_user tenant_shared is held by tenant 'new'"]}
    assert directory.identity_holder("db_user", "tenant_shared") == "new"


def test_an_update_that_names_the_user_a_tenant_already_has_claims_nothing(dynamo):
    """A change that sets the tenant's user to the one it already has (a script passing every field) moves nothing,
    so it claims nothing: a tenant from before generations whose user another tenant was given since is still
    changed, and the identity record still names the other tenant."""
    client, _, table = dynamo
    directory = TenantDirectory(client, table)
    record = {"pk": "tenant#old", "tenant_id": "old", "db_user": "tenant_shared", "created_at": "2026-01-01T00:00:00"}
    client.put_item(TableName=table, Item={**{k: {"S": v} for k, v in record.items()}, "active": {"BOOL": True}})
    directory.create_tenant("new", db_user="tenant_shared")
    updated = directory.update_tenant("old", db_user="tenant_shared", max_running_statements=3)
    assert (updated.db_user, updated.max_running_statements) == ("tenant_shared", 3)
    assert directory.get("old").max_running_statements == 3
    assert directory.identity_holder("db_user", "tenant_shared") == "new"
