"""Running slot behaviour no test held before (found by mutation testing spectra/slots.py): a claim that loses the
race to make the tenant's slots item on first use tries three times, then answers from the item as it reads, not
with nothing to crash a job's start on; the tenant's line and pool read just after a write see it where replicas lag;
a failure of DynamoDB at any write to the item is raised as itself, not taken for a refused condition (an unpark that
swallowed one would leave its waiting job unwoken, each caller taking it for another's).

Runs on DynamoDB (moto), in a table made from template.yaml's ``TenantsTable``; :class:`Faulty` lands another
request's write before the calls a test picks, or answers a read as a lagging replica would."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from spectra.slots import PooledSession, RunningSlots
from tests.fixtures.aws import Faulty, table_from_template

pytestmark = pytest.mark.integration

KEY = {"pk": {"S": "slots#acme"}}
ACME = "db_user:tenant_acme"


@pytest.fixture
def dynamo(local_aws):
    """(the plain client, a faulty client on it, the tenants table's name)."""
    with table_from_template(local_aws, "TenantsTable", "tenants-pins-") as (client, table):
        yield client, Faulty(client), table


def _losing_races(dynamo, *, races: int, maker: str) -> None:
    """The item is taken away before each of the claim's first ``races`` writes (the tenant deleted meanwhile) and
    made by another claimant, holding ``maker``'s slot, before each of its creates."""
    client, faulty, table = dynamo
    left = [races]

    def item_gone(real, kwargs):
        if left[0]:
            left[0] -= 1
            client.delete_item(TableName=table, Key=KEY)
        return real(**kwargs)

    def made_first(real, kwargs):
        holders = {"M": {maker: {"N": "100"}}}
        client.put_item(TableName=table, Item={**KEY, "holders": holders, "waiting": {"M": {}}, "sessions": {"M": {}}})
        return real(**kwargs)

    faulty.faults.update(update_item=item_gone, put_item=made_first)


@pytest.mark.parametrize(("maker", "taken"), [("j_other", False), ("j_1", True)])
def test_a_claim_that_loses_every_race_to_make_the_item_answers_from_the_item_as_it_reads(dynamo, maker, taken):
    """Three races lost: the claim gives up and answers as the item reads, taken only if the slot made there is the
    job's own (a redelivery of its message made it), with the holders it saw."""
    _, faulty, table = dynamo
    _losing_races(dynamo, races=3, maker=maker)
    claim = RunningSlots(faulty, table).claim("acme", "j_1", limit=1, now=101.0)
    assert (claim.taken, claim.holders) == (taken, {maker: 100.0})


def test_a_claim_that_loses_two_races_to_make_the_item_takes_its_slot_on_the_third_try(dynamo):
    _, faulty, table = dynamo
    _losing_races(dynamo, races=2, maker="j_other")
    claim = RunningSlots(faulty, table).claim("acme", "j_1", limit=2, now=101.0)
    assert (claim.taken, claim.holders) == (True, {"j_other": 100.0, "j_1": 101.0})


def test_reads_just_after_a_write_see_it_where_replicas_lag(dynamo):
    """DynamoDB's eventually consistent reads may miss a write made a moment ago (:class:`Faulty` answers every read
    that does not ask for consistency from a replica no write has reached): the holders, the waiting list, the line
    and the pool are read as written, so no holder is taken for gone and no waiter or session is missed."""
    _, faulty, table = dynamo

    def lagging(real, kwargs):
        return real(**kwargs) if kwargs.get("ConsistentRead") else {}

    faulty.faults["get_item"] = lagging
    slots = RunningSlots(faulty, table)
    assert slots.acquire("acme", "j_1", limit=1, now=100.0)
    assert slots.park("acme", "j_2", limit=1, now=101.0)
    assert slots.holders("acme") == {"j_1": 100.0}
    assert slots.waiting("acme") == {"j_2": 101.0}
    assert slots.line("acme") == ({"j_1": 100.0}, {"j_2": 101.0})
    session = PooledSession("s-1", ACME, until=10_000.0)
    assert slots.release("acme", "j_1", session=session) == {"j_2": 101.0}
    assert slots.sessions("acme") == {"s-1": session}


WRITES = {
    "claim": lambda slots: slots.claim("acme", "j_2", limit=2, now=101.0),
    "claim leasing": lambda slots: slots.claim("acme", "j_2", limit=2, lease=PooledSession("s-1", ACME, until=1e4)),
    "release": lambda slots: slots.release("acme", "j_1"),
    "release with a session": lambda slots: slots.release("acme", "j_1", session=PooledSession("s-1", ACME, 1e4)),
    "park": lambda slots: slots.park("acme", "j_2", limit=1, now=101.0),
    "unpark": lambda slots: slots.unpark("acme", "j_2"),
    "drop_session": lambda slots: slots.drop_session("acme", "s-1", job_id="j_1"),
    "unlease": lambda slots: slots.unlease("acme", PooledSession("s-1", ACME, until=1e4), job_id="j_1"),
    "return_session": lambda slots: slots.return_session("acme", PooledSession("s-1", ACME, until=1e4), job_id="j_1"),
    "evict": lambda slots: slots.evict("acme", "j_1", stamp=100.0, session_id="s-1"),
    "restamp": lambda slots: slots.restamp("acme", "j_1", stamp=100.0, now=102.0),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
def test_a_write_that_dynamodb_fails_raises_that_failure(dynamo, write):
    """A throttled or failed write is the caller's to retry (its message comes back), not an answer: it is raised as
    DynamoDB raised it, never read as a full cap, a refused release, a job nobody waits for or a session not there."""
    _, faulty, table = dynamo
    slots = RunningSlots(faulty, table)
    assert slots.acquire("acme", "j_1", limit=2, now=100.0)

    faulty.faults["update_item"] = _failing
    with pytest.raises(ClientError, match="InternalServerError"):
        write(slots)


def test_a_first_claim_whose_item_dynamodb_fails_to_make_raises_that_failure(dynamo):
    """The tenant's first claim makes its slots item: a failure there is raised too, not a slot refused or taken."""
    _, faulty, table = dynamo
    faulty.faults["put_item"] = _failing
    with pytest.raises(ClientError, match="InternalServerError"):
        RunningSlots(faulty, table).claim("acme", "j_1", limit=2, now=100.0)


def _failing(real, kwargs):
    raise ClientError({"Error": {"Code": "InternalServerError", "Message": "internal"}}, "UpdateItem")
