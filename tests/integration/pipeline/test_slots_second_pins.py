"""Running slot behaviour no test held before, found by a second sample of mutation testing spectra/slots.py (the
first is pinned in test_slots_pins.py): a lease asked of a tenant whose slots item is not there yet (a tenant made
again while an executor remembered its old pool) is refused for the session only while a slot is free, so the job
takes its slot without one, and as a full cap when the tenant is paused; a holder at the cap refused a session is
told so, not sent to wait for its own slot; a job ending on an item made before sessions were pooled, with a waiting
list at DynamoDB's 400 KB, still frees its slot and names the job to wake.

Runs on DynamoDB (moto), in a table made from template.yaml's ``TenantsTable``; :class:`Faulty` refuses a write
as DynamoDB refuses one past its item size."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from spectra.slots import PooledSession, RunningSlots
from tests.fixtures.aws import Faulty, table_from_template

pytestmark = pytest.mark.integration

ACME = "db_user:tenant_acme"


@pytest.fixture
def slots(local_aws):
    """The port on a fresh tenants table."""
    with table_from_template(local_aws, "TenantsTable", "tenants-pins2-") as (client, table):
        yield RunningSlots(client, table)


@pytest.fixture
def dynamo(local_aws):
    """(the plain client, a faulty client on it, the tenants table's name)."""
    with table_from_template(local_aws, "TenantsTable", "tenants-pins2-") as (client, table):
        yield client, Faulty(client), table


@pytest.mark.parametrize("limit", [1, 2])
def test_a_lease_asked_of_a_tenant_with_no_slots_item_is_refused_for_the_session_only(slots, limit):
    """No item, so no pool: the session asked for cannot be there, but the slot is free (a limit of 1 too). The answer
    says only the session was refused, nothing is written, and the job's claim without a session takes the slot."""
    remembered = PooledSession("s-1", ACME, until=10_000.0)
    refused = slots.claim("acme", "j_1", limit=limit, now=100.0, lease=remembered)
    assert (refused.taken, refused.session_refused, refused.session) == (False, True, None)
    assert slots.line("acme") == ({}, {})
    assert slots.claim("acme", "j_1", limit=limit, now=101.0).taken
    assert slots.holders("acme") == {"j_1": 101.0}


def test_a_lease_asked_of_a_paused_tenant_with_no_slots_item_is_refused_as_a_full_cap(slots):
    """At a limit of 0 nobody runs: the refusal is the cap's, not the session's (asking again without the session
    would be refused all the same)."""
    refused = slots.claim("acme", "j_1", limit=0, now=100.0, lease=PooledSession("s-1", ACME, until=10_000.0))
    assert (refused.taken, refused.session_refused) == (False, False)


def test_a_holder_at_the_cap_refused_a_leased_session_is_told_only_the_session_was_refused(slots):
    """A redelivered message of a job holding one of the tenant's full slots asks for a session another job leases:
    its slot is still its own, so the refusal is the session's (it claims again without one and keeps its slot), not
    a cap that would send a running job to wait for a slot it holds."""
    assert slots.acquire("acme", "j_0", limit=2, now=100.0)
    assert slots.release("acme", "j_0", session=PooledSession("s-1", ACME, until=10_000.0)) == {}
    assert slots.claim("acme", "j_2", limit=2, now=200.0, lease=PooledSession("s-1", ACME, until=10_000.0)).taken
    assert slots.acquire("acme", "j_1", limit=2, now=201.0)

    again = slots.claim("acme", "j_1", limit=2, now=300.0, lease=PooledSession("s-1", ACME, until=10_000.0))
    assert (again.taken, again.session_refused) == (False, True)
    assert again.holders == {"j_2": 200.0, "j_1": 201.0}
    assert slots.claim("acme", "j_1", limit=2, now=301.0).taken


def test_a_job_ending_on_an_old_item_at_the_size_limit_frees_its_slot_and_wakes_the_next(dynamo):
    """An item made before sessions were pooled (no pool map) whose waiting list fills DynamoDB's 400 KB: the slot's
    release gives the item its pool, then finds the session's entry does not fit, and gives the slot back without it.
    The slot is freed and the waiting job named, to be woken, not left waiting behind a holder that ended."""
    client, faulty, table = dynamo
    holders, waiting = {"M": {"j_1": {"N": "100"}}}, {"M": {"j_2": {"N": "150"}}}
    client.put_item(TableName=table, Item={"pk": {"S": "slots#acme"}, "holders": holders, "waiting": waiting})
    entries = [0]

    def too_large_once_pooled(real, kwargs):
        if ":entry" in kwargs.get("ExpressionAttributeValues", {}):
            entries[0] += 1
            if entries[0] > 1:  # the first is refused for the missing pool map, by DynamoDB itself
                error = {"Code": "ValidationException", "Message": "Item size has exceeded the maximum allowed size"}
                raise ClientError({"Error": error}, "UpdateItem")
        return real(**kwargs)

    faulty.faults["update_item"] = too_large_once_pooled
    slots = RunningSlots(faulty, table)
    assert slots.release("acme", "j_1", session=PooledSession("s-1", ACME, until=10_000.0)) == {"j_2": 150.0}
    assert slots.line("acme") == ({}, {"j_2": 150.0})
    assert slots.sessions("acme") == {}


def test_a_job_ending_with_its_session_after_its_tenants_slots_item_went_answers_nothing_to_wake(slots):
    """The tenant's slots item was deleted while the job ran (the tenant deleted): giving the slot and session back
    frees nothing and wakes nobody, and is no error for the job's ending to crash on; no item is made again."""
    assert slots.release("acme", "j_1", session=PooledSession("s-1", ACME, until=10_000.0)) == {}
    assert slots.line("acme") == ({}, {})
    assert slots.sessions("acme") == {}
