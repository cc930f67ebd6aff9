"""The tenant directory on DynamoDB (moto), in a table made from template.yaml's own TenantsTable: keys are revoked,
tenants deactivated and deleted, and a deleted tenant's keys never come back, even under a re-created tenant id."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from cfnlint.decode import decode

from spectra.errors import Conflict, NotFound, Unauthorized
from spectra.tenants import TenantDirectory, hash_api_key

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"


@pytest.fixture(scope="module")
def table(local_aws):
    body, matches = decode(str(TEMPLATE))
    assert not matches, matches
    properties = json.loads(json.dumps(body["Resources"]["TenantsTable"]["Properties"]))
    client = local_aws.client("dynamodb")
    name = "tenants-" + uuid.uuid4().hex[:10]
    client.create_table(
        TableName=name, **{k: properties[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode")}
    )
    yield client, name
    client.delete_table(TableName=name)


@pytest.fixture
def directory(table) -> TenantDirectory:
    return TenantDirectory(*table)


@pytest.fixture
def tenant_id(unique_name) -> str:
    return unique_name


def item(table, pk: str) -> dict | None:
    client, name = table
    return client.get_item(TableName=name, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")


def refused(directory: TenantDirectory, key: str) -> bool:
    try:
        directory.authenticate(key)
    except Unauthorized:
        return True
    return False


def test_a_key_works_until_it_is_revoked(directory, table, tenant_id):
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    key, other = directory.issue_key(tenant_id), directory.issue_key(tenant_id)
    assert directory.authenticate(key).tenant_id == tenant_id
    directory.revoke_key(key)
    assert refused(directory, key)
    assert directory.authenticate(other).tenant_id == tenant_id
    assert item(table, f"tenant#{tenant_id}")["key_hashes"] == {"SS": [hash_api_key(other)]}
    directory.revoke_key(key)  # twice is harmless


def test_a_key_for_a_tenant_that_does_not_exist_is_not_issued(directory, table, tenant_id):
    with pytest.raises(NotFound):
        directory.issue_key(tenant_id)
    assert item(table, f"tenant#{tenant_id}") is None  # no bare listing left behind


def test_a_deactivated_tenants_keys_are_refused_until_it_is_reactivated(directory, tenant_id):
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    key = directory.issue_key(tenant_id)
    assert directory.set_active(tenant_id, False).active is False
    assert refused(directory, key)
    assert directory.get(tenant_id).active is False
    assert directory.get(tenant_id).activated_at is None
    reactivated = directory.set_active(tenant_id, True)
    assert directory.authenticate(key).tenant_id == tenant_id
    # when it was made active again, which a file dropped before it is refused by (spectra.bulk.drops); activating
    # it again while active keeps that time
    assert reactivated.activated_at is not None and reactivated.activated_at >= reactivated.created_at
    assert directory.set_active(tenant_id, True).activated_at == reactivated.activated_at
    assert directory.get(tenant_id).activated_at == reactivated.activated_at
    with pytest.raises(NotFound):
        directory.set_active(tenant_id + "x", False)
    with pytest.raises(NotFound):
        directory.set_active(tenant_id + "x", True)


def test_a_record_with_a_cap_past_todays_bound_still_loads(directory, table, tenant_id):
    """The CLI bounds a cap at 10,000 since 99dc216; a record stored before with a larger one (accepted then) must
    still load: a bound in the model refused it, the tenant's every request a 5xx and `tenants list` for all (the
    second diff review)."""
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    client, name = table
    client.update_item(
        TableName=name,
        Key={"pk": {"S": f"tenant#{tenant_id}"}},
        UpdateExpression="SET max_running_statements = :n",
        ExpressionAttributeValues={":n": {"N": "5000000000"}},
    )
    assert directory.get(tenant_id).max_running_statements == 5_000_000_000
    assert tenant_id in [t.tenant_id for t in directory.list_tenants()]
    assert directory.update_tenant(tenant_id, max_running_statements=None).max_running_statements is None


def test_deleting_a_tenant_deletes_its_keys(directory, table, tenant_id):
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    keys = [directory.issue_key(tenant_id) for _ in range(3)]
    assert directory.delete_tenant(tenant_id) is True
    assert directory.get(tenant_id) is None
    for key in keys:
        assert item(table, f"key#{hash_api_key(key)}") is None
        assert refused(directory, key)
    assert directory.delete_tenant(tenant_id) is False


def test_a_re_created_tenant_does_not_revive_the_old_keys(directory, table, tenant_id):
    """Even keys that outlived their tenant (its record removed by hand, say) stay dead: they carry the old
    tenant's generation."""
    old = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    old_key = directory.issue_key(tenant_id)
    client, name = table
    client.delete_item(TableName=name, Key={"pk": {"S": f"tenant#{tenant_id}"}})  # the keys stay
    assert item(table, f"key#{hash_api_key(old_key)}") is not None

    new = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2")  # its predecessor's user is not its
    assert new.generation and new.generation != old.generation
    assert refused(directory, old_key)
    new_key = directory.issue_key(tenant_id)
    assert directory.authenticate(new_key).generation == new.generation


def test_records_from_before_generations_still_work(directory, table, tenant_id):
    client, name = table
    tenant = {"pk": f"tenant#{tenant_id}", "tenant_id": tenant_id, "db_user": "tenant_x", "active": True}
    tenant["created_at"] = "2026-01-01T00:00:00+00:00"
    client.put_item(
        TableName=name, Item={k: {"BOOL": v} if isinstance(v, bool) else {"S": v} for k, v in tenant.items()}
    )
    legacy_key = "spk_" + uuid.uuid4().hex
    client.put_item(
        TableName=name, Item={"pk": {"S": f"key#{hash_api_key(legacy_key)}"}, "tenant_id": {"S": tenant_id}}
    )
    assert directory.authenticate(legacy_key).generation is None
    assert directory.authenticate(directory.issue_key(tenant_id)).tenant_id == tenant_id


def test_a_key_nobody_has_in_clear_is_found_by_its_hint_and_revoked_by_its_hash(directory, table, tenant_id):
    """Keys are shown once: an operator told "a key we lost is deployed somewhere" can still revoke that one key."""
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    directory.create_tenant(f"{tenant_id}-other", db_user=f"tenant_{tenant_id}_other")
    lost, kept = directory.issue_key(tenant_id), directory.issue_key(tenant_id)
    theirs = directory.issue_key(f"{tenant_id}-other")
    listed = directory.list_keys(tenant_id)
    assert [(k.key_hash, k.hint) for k in listed] == [(hash_api_key(lost), lost[:8]), (hash_api_key(kept), kept[:8])]
    assert directory.revoke_key_hash(tenant_id, hash_api_key(theirs)) is False  # another tenant's key: untouched
    assert directory.authenticate(theirs).tenant_id == f"{tenant_id}-other"
    assert directory.revoke_key_hash(tenant_id, hash_api_key(lost)) is True
    assert refused(directory, lost) and directory.authenticate(kept).tenant_id == tenant_id
    assert [k.key_hash for k in directory.list_keys(tenant_id)] == [hash_api_key(kept)]
    assert item(table, f"tenant#{tenant_id}")["key_hashes"] == {"SS": [hash_api_key(kept)]}
    with pytest.raises(NotFound):
        directory.list_keys(f"{tenant_id}-nobody")


def test_a_tenant_is_changed_in_place_and_keeps_its_keys(directory, tenant_id):
    created = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}", max_running_statements=3)
    key = directory.issue_key(tenant_id)
    changed = directory.update_tenant(
        tenant_id, allow_writes=True, owned_schemas=["x_work"], tier="premium", max_running_statements=None
    )
    stored = directory.get(tenant_id)
    assert stored == changed
    assert (stored.allow_writes, stored.owned_schemas, stored.tier) == (True, ["x_work"], "premium")
    assert stored.max_running_statements is None and stored.generation == created.generation
    assert directory.authenticate(key).tenant_id == tenant_id
    with pytest.raises(ValueError, match="generation"):
        directory.update_tenant(tenant_id, generation="g_mine")
    with pytest.raises(ValueError):  # validated as a whole record before anything is written
        directory.update_tenant(tenant_id, tier="NOT A TIER")
    with pytest.raises(ValueError):
        directory.update_tenant(tenant_id, db_user=None)  # a tenant needs a user or a secret
    with pytest.raises(ValueError, match="system schemas, which no tenant may own: pg_temp"):  # tenancy walk
        directory.update_tenant(tenant_id, owned_schemas=["x_work", "pg_temp"])
    with pytest.raises(ValueError, match="pg_catalog"):
        directory.create_tenant(f"{tenant_id}-sys", db_user=f"tenant_{tenant_id}_sys", owned_schemas=["pg_catalog"])
    assert directory.get(f"{tenant_id}-sys") is None
    assert directory.get(tenant_id) == stored
    with pytest.raises(NotFound):
        directory.update_tenant(f"{tenant_id}-nobody", tier="premium")


def test_a_database_identity_serves_one_tenant_ever(directory, table, tenant_id):
    """What a tenant sees in the warehouse is its database identity's: rows, schemas, grants. A tenant created again
    under its deleted predecessor's user read everything the predecessor left, and two live tenants could share a
    user (found by the tenant lifecycle review)."""
    user = f"tenant_{tenant_id}"
    first = directory.create_tenant(tenant_id, db_user=user)
    with pytest.raises(Conflict, match=f"was given to tenant '{tenant_id}'") as shared:
        directory.create_tenant(f"{tenant_id}-b", db_user=user)
    assert shared.value.details == {"identity": f"db_user {user}", "tenant_id": tenant_id}
    assert directory.get(f"{tenant_id}-b") is None  # nothing of it written
    directory.create_tenant(f"{tenant_id}-b", db_user=f"{user}_b")
    with pytest.raises(Conflict):  # nor moved onto another tenant's
        directory.update_tenant(f"{tenant_id}-b", db_user=user)
    assert directory.get(f"{tenant_id}-b").db_user == f"{user}_b"

    # moved to a new user and back to its own old one: still its own
    directory.update_tenant(tenant_id, db_user=f"{user}_new")
    assert directory.update_tenant(tenant_id, db_user=user).generation == first.generation

    assert directory.delete_tenant(tenant_id)
    assert directory.identity_holder("db_user", user.upper()) == tenant_id  # asked before a user is made: kept
    assert directory.identity_holder("db_user", f"{user}_never") is None
    with pytest.raises(Conflict):  # the same id again: a new tenant, which the old user's rows are not for
        directory.create_tenant(tenant_id, db_user=user)
    assert directory.get(tenant_id) is None
    assert directory.create_tenant(tenant_id, db_user=f"{user}_reborn").generation != first.generation

    arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:spectra/tenants/{tenant_id}"
    directory.create_tenant(f"{tenant_id}-s", secret_arn=arn)
    with pytest.raises(Conflict, match="secret"):
        directory.create_tenant(f"{tenant_id}-t", secret_arn=arn)
    assert directory.identity_holder("secret_arn", arn) == f"{tenant_id}-s"


def test_deleting_a_tenant_deletes_its_running_slots_and_sessions(directory, table, tenant_id):
    """A tenant created again under the id inherited them: its predecessor's holders took its running cap, and its
    predecessor's waiting jobs were woken ahead of its own (found by the tenant lifecycle review)."""
    from spectra.slots import RunningSlots

    client, name = table
    slots = RunningSlots(client, name)
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    assert slots.acquire(tenant_id, "j_old", limit=1)
    assert directory.delete_tenant(tenant_id)
    assert item(table, f"slots#{tenant_id}") is None
    slots.release(tenant_id, "j_old")  # the old job's late release: nothing to give back, nothing made
    assert item(table, f"slots#{tenant_id}") is None
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2")
    assert slots.acquire(tenant_id, "j_new", limit=1)


def test_deleting_a_tenant_deletes_its_wait_leases(directory, table, tenant_id):
    from spectra.waits import WaitLeases

    client, name = table
    leases = WaitLeases(client, name)
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    assert leases.take(tenant_id, "w_old", limit=1, until=4e9)
    assert directory.delete_tenant(tenant_id)
    assert item(table, f"waits#{tenant_id}") is None
    leases.give_back(tenant_id, "w_old")  # the old request's late give-back: nothing made
    assert item(table, f"waits#{tenant_id}") is None
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2")
    assert leases.take(tenant_id, "w_new", limit=1, until=4e9)  # the old lease does not take the new tenant's room


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("tenant_{id}", "tenant_{ID}"),  # Redshift folds the ASCII letters of names: one user
        (  # Secrets Manager, and so the Data API, takes the ARN with or without its suffix: one secret
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:spectra/tenants/{id}-AbCdEf",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:spectra/tenants/{id}",
        ),
    ],
)
def test_one_identity_spelled_two_ways_is_still_one(directory, tenant_id, first, second):
    """The claim compared the text, so a second live tenant got the first one's user by another spelling (found by
    the diff review)."""
    field = "secret_arn" if first.startswith("arn:") else "db_user"
    directory.create_tenant(tenant_id, **{field: first.format(id=tenant_id, ID=tenant_id.upper())})
    with pytest.raises(Conflict, match=f"was given to tenant '{tenant_id}'"):
        directory.create_tenant(f"{tenant_id}-b", **{field: second.format(id=tenant_id, ID=tenant_id.upper())})


def test_a_tenant_from_before_generations_moved_back_to_a_user_it_had_keeps_it(directory, table, tenant_id):
    """Its claims carry no generation, which the condition compared with an empty one (found by the diff review)."""
    client, name = table
    legacy = {"tenant_id": tenant_id, "db_user": f"tenant_{tenant_id}", "created_at": "2026-01-01T00:00:00+00:00"}
    client.put_item(
        TableName=name,
        Item={"pk": {"S": f"tenant#{tenant_id}"}, "active": {"BOOL": True}, **{k: {"S": v} for k, v in legacy.items()}},
    )
    directory.update_tenant(tenant_id, db_user=f"tenant_{tenant_id}_v2")
    directory.update_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    assert directory.update_tenant(tenant_id, db_user=f"tenant_{tenant_id}_v2").db_user == f"tenant_{tenant_id}_v2"


def test_an_identity_move_racing_a_delete_is_not_found(directory, tenant_id, monkeypatch):
    """As the plain update's is: the transaction answered Conflict (found by the diff review)."""
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    stale = directory.get(tenant_id)
    directory.delete_tenant(tenant_id)
    monkeypatch.setattr(directory, "get", lambda _id: stale)  # read just before the delete landed
    with pytest.raises(NotFound):
        directory.update_tenant(tenant_id, tier="premium")
    with pytest.raises(NotFound):
        directory.update_tenant(tenant_id, db_user=f"tenant_{tenant_id}_v2")


def test_two_updates_at_once_cannot_leave_a_tenant_without_an_identity(directory, tenant_id, monkeypatch):
    """Two operators at once: one takes the tenant's secret away, the other its user, each validated against the
    record as it was before either wrote. Both writes landed, leaving a record no Tenant can be read from: the
    authorizer answered the tenant's every request with a 500, the executor failed its jobs' messages, and
    update_tenant itself could not read the record to repair it (found by the tenancy race review)."""
    secret = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:tenant_{tenant_id}-AbCdEf"
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}", secret_arn=secret)
    key = directory.issue_key(tenant_id)
    stale = directory.get(tenant_id)  # the second operator's read, before the first's write lands
    directory.update_tenant(tenant_id, secret_arn=None)
    reads = iter([stale])
    real_get = directory.get
    monkeypatch.setattr(directory, "get", lambda _id: next(reads, None) or real_get(_id))
    with pytest.raises(ValueError, match="db_user or a secret_arn"):  # read again, and refused on what it is now
        directory.update_tenant(tenant_id, db_user=None)
    stored = real_get(tenant_id)
    assert (stored.db_user, stored.secret_arn) == (f"tenant_{tenant_id}", None)
    assert directory.authenticate(key).tenant_id == tenant_id
    # a change that does not touch what the other took away still lands after its read is found stale
    reads = iter([stale])
    assert directory.update_tenant(tenant_id, tier="premium").secret_arn is None
    assert real_get(tenant_id).tier == "premium"


def test_a_key_issued_while_the_tenant_is_created_again_is_not_issued(directory, table, tenant_id, monkeypatch):
    """issue_key read the tenant, then listed the key on whatever record had the id: deleted and created again in
    between, the new tenant's record listed a key bound to the old generation. The operator was handed a key that
    never authenticated, which list_keys showed among the new tenant's (found by the tenancy race review)."""
    old = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    directory.delete_tenant(tenant_id)
    new = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2")
    monkeypatch.setattr(directory, "get", lambda _id: old)  # read just before the delete landed
    with pytest.raises(NotFound):
        directory.issue_key(tenant_id)
    monkeypatch.undo()
    assert "key_hashes" not in item(table, f"tenant#{tenant_id}")
    assert directory.list_keys(tenant_id) == [] and directory.get(tenant_id) == new


class _Interrupting:
    """The DynamoDB client, calling ``before_key_delete`` ahead of each key's DeleteItem (and raising what it
    returns): a delete that fails half-way, or something else happening meanwhile."""

    def __init__(self, inner, before_key_delete) -> None:
        self._inner, self._before = inner, before_key_delete

    def delete_item(self, **request):
        if request["Key"]["pk"]["S"].startswith("key#") and (failure := self._before()):
            raise failure
        return self._inner.delete_item(**request)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_a_delete_cut_short_leaves_no_slots_for_a_tenant_created_again(directory, table, tenant_id):
    """The record went first and the slots item last: a delete cut short (a throttled key delete) left the slots
    item, the re-run answered False (no record) and deleted nothing, and the tenant created again inherited its
    predecessor's holders, its running cap taken by statements it never ran (tenant lifecycle review)."""
    from botocore.exceptions import ClientError

    from spectra.slots import RunningSlots

    client, name = table
    slots = RunningSlots(client, name)
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    directory.issue_key(tenant_id)
    assert slots.acquire(tenant_id, "j_old_running", limit=1)
    throttled = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "DeleteItem")
    with pytest.raises(ClientError):
        TenantDirectory(_Interrupting(client, lambda: throttled), name).delete_tenant(tenant_id)
    assert item(table, f"tenant#{tenant_id}") is None and item(table, f"slots#{tenant_id}") is None
    assert directory.delete_tenant(tenant_id) is False  # run again: nothing left that matters
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2")
    assert slots.holders(tenant_id) == {} and slots.acquire(tenant_id, "j_new", limit=1)


def test_a_delete_still_deleting_keys_leaves_the_slots_of_a_tenant_created_again_meanwhile(directory, table, tenant_id):
    """The slots item's delete came last and unconditionally: a tenant created again while the keys were deleted
    lost the slot of its first running job (its cap no longer held; its leased sessions dropped while open)."""
    from spectra.slots import RunningSlots

    client, name = table
    slots = RunningSlots(client, name)
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    directory.issue_key(tenant_id)
    again = []

    def create_again():
        if not again:
            again.append(directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2"))
            assert slots.acquire(tenant_id, "j_new_running", limit=1)

    assert TenantDirectory(_Interrupting(client, create_again), name).delete_tenant(tenant_id)
    assert again and "j_new_running" in slots.holders(tenant_id)
    assert directory.get(tenant_id).generation == again[0].generation


def test_a_key_issued_while_the_tenant_is_deleted_is_deleted_too(directory, table, tenant_id):
    """The transaction was conditional on the generation only: a key issued between the read and the delete was on
    the record it deleted but not among the hashes read, and its item stayed for good (diff review)."""
    client, name = table
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    issued = []

    class _KeyBeforeTransaction:
        def transact_write_items(self, **request):
            if not issued:
                issued.append(directory.issue_key(tenant_id))
            return client.transact_write_items(**request)

        def __getattr__(self, attr):
            return getattr(client, attr)

    assert TenantDirectory(_KeyBeforeTransaction(), name).delete_tenant(tenant_id)
    assert item(table, f"tenant#{tenant_id}") is None
    assert item(table, f"key#{hash_api_key(issued[0])}") is None


def test_identities_of_tenants_made_before_identity_records_are_claimed_on_upgrade(directory, table, tenant_id):
    """Found by the version skew review: a tenant created before identity records existed has none, and nothing
    wrote one, so its user could be given to a new tenant, which read its rows and schemas. claim_identities records
    them; of two tenants already sharing one user, the second is named."""
    user = f"tenant_{tenant_id}"
    client, name = table

    def made_before_identity_records(made: str, db_user: str) -> None:
        directory.create_tenant(made, db_user=db_user)
        client.delete_item(TableName=name, Key={"pk": {"S": f"identity#db_user:{db_user}"}})

    made_before_identity_records(tenant_id, user)
    made_before_identity_records(f"{tenant_id}-x", f"{user}_shared")
    made_before_identity_records(f"{tenant_id}-y", f"{user}_shared")  # two tenants given one user, then unnoticed
    made_before_identity_records(f"{tenant_id}-old", f"{user}_old")  # and one from before generations too
    client.update_item(
        TableName=name, Key={"pk": {"S": f"tenant#{tenant_id}-old"}}, UpdateExpression="REMOVE generation"
    )
    directory.create_tenant(f"{tenant_id}-steal", db_user=user)  # what the upgrade left open
    directory.delete_tenant(f"{tenant_id}-steal")
    client.delete_item(TableName=name, Key={"pk": {"S": f"identity#db_user:{user}"}})  # (undone for the test)

    refused = directory.claim_identities()
    assert set(refused) & {tenant_id, f"{tenant_id}-old"} == set()
    pair = {f"{tenant_id}-x", f"{tenant_id}-y"}
    [sharing] = set(refused) & pair  # the second of the two sharing a user
    [holder] = pair - {sharing}
    assert refused[sharing] == [f"db_user {user}_shared is held by tenant {holder!r}"]
    for taken in (user, f"{user}_old", f"{user}_shared"):
        with pytest.raises(Conflict):
            directory.create_tenant(f"{tenant_id}-new", db_user=taken)
    assert directory.claim_identities().keys() == refused.keys()  # run again: nothing new, the same sharing named


def test_claiming_identities_on_upgrade_claims_each_on_its_own(directory, table, tenant_id):
    """Found by the diff review: a tenant's claims went in one transaction, so a tenant whose user another tenant had
    taken left its secret unclaimed too, and a tenant deleted while being claimed left its user free."""
    client, name = table
    arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:spectra/tenants/{tenant_id}"
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}", secret_arn=arn)
    for pk in (f"identity#db_user:tenant_{tenant_id}", f"identity#secret:{arn}"):  # as an older version left them
        client.delete_item(TableName=name, Key={"pk": {"S": pk}})
    directory.create_tenant(f"{tenant_id}-b", db_user=f"tenant_{tenant_id}")  # took its user meanwhile
    refused = directory.claim_identities()
    assert refused[tenant_id] == [f"db_user tenant_{tenant_id} is held by tenant '{tenant_id}-b'"]
    with pytest.raises(Conflict):  # its secret is claimed all the same
        directory.create_tenant(f"{tenant_id}-c", secret_arn=arn)


def test_a_tenant_whose_secret_arn_is_empty_can_be_updated(directory, tenant_id):
    """The update's conditions on the identities it leaves alone took an empty secret_arn (stored: the user is the
    identity) for none, so every update was refused as if the record kept changing (found by the diff review)."""
    directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}", secret_arn="")
    directory.update_tenant(tenant_id, tier="premium")
    assert directory.get(tenant_id).tier == "premium"


@pytest.fixture
def subscriptions(local_aws, table):
    """A subscriptions table from template.yaml's own SubscriptionsTable, and a directory that knows it."""
    from spectra.notify.store import SubscriptionStore
    from tests.fixtures.aws import table_from_template

    with table_from_template(local_aws, "SubscriptionsTable", "subscriptions-") as (client, name):
        yield SubscriptionStore(client, name), TenantDirectory(*table, subscriptions_table=name)


def _subscribe(store, tenant, **fields):
    from spectra.jobs import utcnow
    from spectra.notify.models import Subscription, new_subscription_id
    from spectra.notify.signing import new_secret

    values = {
        "subscription_id": new_subscription_id(),
        "tenant_id": tenant.tenant_id,
        "tenant_generation": tenant.generation,
        "url": "https://hooks.example/in",
        "events": ["Job Completed"],
        "secret": new_secret(),
        "created_at": utcnow(),
        **fields,
    }
    return store.create(Subscription(**values), expires_at=values.pop("expires_at", None))


def _expiry(store, tenant_id: str, subscription_id: str) -> int | None:
    key = {"tenant_id": {"S": tenant_id}, "subscription_id": {"S": subscription_id}}
    found = store._db.get_item(TableName=store._table, Key=key, ConsistentRead=True)["Item"]
    return int(found["expires_at"]["N"]) if "expires_at" in found else None


def test_a_deleted_tenants_subscriptions_expire_once_its_deliveries_can_no_longer_need_them(subscriptions, tenant_id):
    """delete_tenant left the tenant's webhook subscriptions, signing secrets included, in the table for ever, seen by
    nobody (offboarding review). They stay while its jobs' deliveries may still need them (README: its own
    subscriptions still hear of its in-flight jobs, retries included), and the table's TTL takes them after."""
    from datetime import timedelta

    from spectra.jobs import utcnow
    from spectra.notify.models import Subscription, SubscriptionKind, callback_id
    from spectra.notify.signing import new_secret
    from spectra.notify.store import KEPT_AFTER_TENANT_DELETED

    store, directory = subscriptions
    tenant = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    other = directory.create_tenant(f"{tenant_id}-other", db_user=f"tenant_{tenant_id}_other")
    # hundreds: a tenant's deleted generations may have left any number (the limit counts the live one's only)
    made = [_subscribe(store, tenant) for _ in range(260)]
    callback_ends = utcnow() + timedelta(days=7)
    callback = store.create(
        Subscription(
            subscription_id=callback_id("j_1"),
            tenant_id=tenant_id,
            tenant_generation=tenant.generation,
            url="https://hooks.example/cb",
            events=["Job Completed"],
            secret=new_secret(),
            created_at=utcnow(),
            kind=SubscriptionKind.CALLBACK,
        ),
        expires_at=callback_ends,
    )
    others = _subscribe(store, other)

    before = utcnow()
    assert directory.delete_tenant(tenant_id) is True
    after = utcnow()
    ends = {_expiry(store, tenant_id, s.subscription_id) for s in made}
    assert None not in ends
    assert all(
        int((before + KEPT_AFTER_TENANT_DELETED).timestamp())
        <= end
        <= int((after + KEPT_AFTER_TENANT_DELETED).timestamp())
        for end in ends
    )
    # meanwhile deliveries of its in-flight jobs still find them, secret and all
    assert store.get(tenant_id, made[0].subscription_id).secret == made[0].secret
    assert _expiry(store, tenant_id, callback.subscription_id) == int(callback_ends.timestamp())  # its own end stays
    assert _expiry(store, others.tenant_id, others.subscription_id) is None  # another tenant's are its own

    assert directory.delete_tenant(tenant_id) is False  # again: nothing moves
    assert {_expiry(store, tenant_id, s.subscription_id) for s in made} == ends


def test_a_delete_run_again_ends_what_an_earlier_delete_left_but_not_a_tenant_created_again(
    subscriptions, table, tenant_id
):
    """Running the delete again gives an end to subscriptions a delete left without one (cut short, or from before
    this), but never to those of a tenant created again under the id, even one created while the delete runs."""
    store, directory = subscriptions
    client, name = table
    first = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    left = [_subscribe(store, first) for _ in range(3)]
    assert TenantDirectory(client, name).delete_tenant(tenant_id)  # a delete that ended none of them
    again = []

    class _CreatedAgainAfterTheRead:
        """The delete reads no tenant; right after, the id is created again and subscribes."""

        def get_item(self, **request):
            response = client.get_item(**request)
            if not again and request["Key"]["pk"]["S"] == f"tenant#{tenant_id}":
                tenant = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2")
                again.append(_subscribe(store, tenant))
            return response

        def __getattr__(self, attr):
            return getattr(client, attr)

    racing = TenantDirectory(_CreatedAgainAfterTheRead(), name, subscriptions_table=store._table)
    assert racing.delete_tenant(tenant_id) is False
    assert all(_expiry(store, tenant_id, s.subscription_id) is not None for s in left)
    assert _expiry(store, tenant_id, again[0].subscription_id) is None
    assert directory.get(tenant_id).generation == again[0].tenant_generation


def _ports_on(store, directory):
    """Ports of fakes but for the tenant directory and the subscription store, which are these (DynamoDB)."""
    from dataclasses import replace

    from tests.unit.fakes import make_notify, make_ports

    return make_ports(tenants=directory, notify=replace(make_notify(), subscriptions=store))


def test_a_subscription_made_by_a_request_in_flight_at_the_delete_is_refused(subscriptions, table, tenant_id):
    """API Gateway honours a deleted tenant's key for AuthorizerCacheSeconds, and a subscription stored after
    delete_tenant gave the tenant's others their end stayed for ever, signing secret and all (found by the diff
    review). Its create is now one transaction with a check that the tenant record still has the caller's generation:
    the late request gets the 401 its key gets from then on, and nothing is stored. A tenant from before generations
    (no generation on its record or its caller) subscribes as before, and is refused once deleted too."""
    from spectra.errors import TenantGone
    from spectra.notify import service
    from spectra.tenants import Caller

    store, directory = subscriptions
    client, name = table
    ports = _ports_on(store, directory)
    caller = Caller.of(directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}"))
    hook = {"url": "https://hooks.acme.example/in", "events": ["Job Completed"]}
    before, _ = service.create_subscription(ports, caller, **hook)
    assert directory.delete_tenant(tenant_id) is True
    for key in (None, "late"):
        with pytest.raises(TenantGone) as refused:
            service.create_subscription(ports, caller, **hook, idempotency_key=key)
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    made = store.webhooks_for_tenant(tenant_id, consistent=True)
    assert [s.subscription_id for s in made] == [before.subscription_id]
    assert _expiry(store, tenant_id, before.subscription_id) is not None
    # nor may the deleted generation's caller subscribe under a tenant created again under the id
    again = Caller.of(directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2"))
    with pytest.raises(TenantGone):
        service.create_subscription(ports, caller, **hook)
    assert service.create_subscription(ports, again, **hook)[0].tenant_generation == again.generation

    legacy_id = f"{tenant_id}-legacy"
    record = {"pk": f"tenant#{legacy_id}", "tenant_id": legacy_id, "db_user": "tenant_legacy", "active": True}
    record["created_at"] = "2026-01-01T00:00:00+00:00"
    client.put_item(
        TableName=name, Item={k: {"BOOL": v} if isinstance(v, bool) else {"S": v} for k, v in record.items()}
    )
    legacy = Caller.of(directory.get(legacy_id))
    assert legacy.generation is None
    assert service.create_subscription(ports, legacy, **hook)[1] is True
    assert directory.delete_tenant(legacy_id) is True
    with pytest.raises(TenantGone):
        service.create_subscription(ports, legacy, **hook)
    assert len(store.webhooks_for_tenant(legacy_id, consistent=True)) == 1


def test_a_predecessors_subscription_from_before_generations_is_not_listed_past_its_end(
    subscriptions, table, tenant_id
):
    """A tenant from before generations (no ``generation`` on its record, none on its subscriptions: the shapes
    older versions wrote) is deleted, and its id created again. Its subscription has no generation to tell it from
    the new tenant's, so it stays with the id (listed, counted, delivered to) until delete_tenant's end for it. Past
    that end the new tenant's GET answered 404 while its listing still showed it and it took a place of the tenant's
    limit, until the TTL deleted it days later (found by the upgrade review): it is gone to all three now."""
    from dataclasses import replace

    from spectra.errors import NotFound
    from spectra.notify import service
    from spectra.tenants import Caller
    from tests.unit.fakes import make_notify, make_ports, make_settings

    store, directory = subscriptions
    client, name = table
    record = {"pk": f"tenant#{tenant_id}", "tenant_id": tenant_id, "db_user": "tenant_legacy", "active": True}
    record["created_at"] = "2026-01-01T00:00:00+00:00"
    client.put_item(
        TableName=name, Item={k: {"BOOL": v} if isinstance(v, bool) else {"S": v} for k, v in record.items()}
    )
    legacy = directory.get(tenant_id)
    assert legacy.generation is None
    old = _subscribe(store, legacy)  # tenant_generation None, as an older version stored it
    assert directory.delete_tenant(tenant_id) is True
    assert _expiry(store, tenant_id, old.subscription_id) is not None
    again = Caller.of(directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2"))
    ports = make_ports(
        settings=make_settings(webhook_max_subscriptions=1),
        tenants=directory,
        notify=replace(make_notify(), subscriptions=store),
    )

    def listed() -> list[str]:
        page = service.list_subscriptions(ports, again, limit=10, next_token=None)
        return [s.subscription_id for s in page.subscriptions]

    assert listed() == [old.subscription_id]  # its end is not yet: the id's, as before
    store._db.update_item(  # its end has come (37 days on); DynamoDB's TTL has not deleted it yet
        TableName=store._table,
        Key={"tenant_id": {"S": tenant_id}, "subscription_id": {"S": old.subscription_id}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 2)}},
    )
    with pytest.raises(NotFound):
        service.get_subscription(ports, again, old.subscription_id)
    assert listed() == []
    made, created = service.create_subscription(
        ports, again, url="https://hooks.acme.example/in", events=["Job Completed"]
    )
    assert created and listed() == [made.subscription_id]


def test_ending_a_deleted_ids_subscriptions_leaves_the_tenant_created_again_and_its_own(
    subscriptions, table, tenant_id
):
    """README's Upgrading paragraph told operators to run delete_tenant again for ids an older version deleted (one
    whose delete left the subscriptions for ever): for an id created again since, that deleted the live tenant (the
    review of the paragraph). end_deleted_subscriptions does the subscriptions' part alone: the predecessor's end,
    its own from before generations included; the tenant now under the id, and its subscription, stay."""
    store, directory = subscriptions
    client, name = table
    older = TenantDirectory(client, name)  # an older version's delete: no subscriptions table, so nothing ended
    first = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}")
    theirs = _subscribe(store, first)
    pre_generations = _subscribe(store, first, tenant_generation=None)  # as versions before generations made it
    assert older.delete_tenant(tenant_id) is True
    again = directory.create_tenant(tenant_id, db_user=f"tenant_{tenant_id}_2")
    key = directory.issue_key(tenant_id)
    mine = _subscribe(store, again)

    assert directory.end_deleted_subscriptions(tenant_id) == 2
    assert directory.get(tenant_id) == again
    assert directory.authenticate(key) is not None
    assert _expiry(store, tenant_id, theirs.subscription_id) is not None
    assert _expiry(store, tenant_id, pre_generations.subscription_id) is not None
    assert _expiry(store, tenant_id, mine.subscription_id) is None
    with pytest.raises(ValueError, match="subscriptions table"):
        older.end_deleted_subscriptions(tenant_id)
