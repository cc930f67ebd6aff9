"""One scenario suite, two wait-lease stores: the in-memory fake the unit tier uses and the real
:class:`~spectra.waits.WaitLeases` on DynamoDB (moto), in a table made from template.yaml's own ``TenantsTable``."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from spectra.waits import CLOCK_MARGIN_SECONDS, WaitLeases
from tests.fixtures.aws import template_table_properties
from tests.unit.fakes import FakeWaitLeases

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tenants_table_properties() -> dict:
    return template_table_properties("TenantsTable")


@pytest.fixture(params=["fake", "dynamodb"])
def leases(request, tenants_table_properties):
    if request.param == "fake":
        yield FakeWaitLeases()
        return
    client = request.getfixturevalue("local_aws").client("dynamodb")
    table = "tenants-waits-" + uuid.uuid4().hex[:10]
    client.create_table(TableName=table, **tenants_table_properties)
    yield WaitLeases(client, table)
    client.delete_table(TableName=table)


def live(leases, tenant_id: str, now: float) -> set[str]:
    return {lease for lease, ends in leases.held(tenant_id).items() if ends > now}


def test_leases_are_taken_up_to_the_limit_per_tenant(leases):
    taken = [leases.take("acme", f"w{i}", limit=2, until=130.0, now=100.0) for i in range(3)]
    assert taken == [True, True, False]
    assert live(leases, "acme", 100.0) == {"w0", "w1"}
    assert leases.take("globex", "w9", limit=2, until=130.0, now=100.0)  # another tenant's are its own
    assert live(leases, "globex", 100.0) == {"w9"}


def test_a_lease_given_back_makes_room(leases):
    assert leases.take("acme", "w1", limit=1, until=130.0, now=100.0)
    assert not leases.take("acme", "w2", limit=1, until=130.0, now=101.0)
    leases.give_back("acme", "w1")
    assert leases.take("acme", "w2", limit=1, until=131.0, now=101.0)
    assert live(leases, "acme", 101.0) == {"w2"}


def test_ended_leases_do_not_count_and_are_pruned_when_their_room_is_needed(leases):
    """A request that died without giving its lease back holds it only until the lease's own end (and the margin for
    the clock of the host that judges it, which may run ahead of the holder's)."""
    margin = CLOCK_MARGIN_SECONDS
    assert leases.take("acme", "died1", limit=2, until=110.0, now=100.0)
    assert leases.take("acme", "died2", limit=2, until=115.0, now=100.0)
    assert not leases.take("acme", "w1", limit=2, until=140.0, now=109.0 + margin)  # neither has ended yet
    assert leases.take("acme", "w1", limit=2, until=140.0, now=112.0 + margin)  # died1 has
    assert not leases.take("acme", "w2", limit=2, until=140.0, now=113.0 + margin)  # died2 and w1 still count
    assert leases.take("acme", "w2", limit=2, until=140.0, now=120.0 + margin)
    assert set(leases.held("acme")) == {"w1", "w2"}  # the ended ones are gone from the record


def test_taking_a_lease_again_is_not_counted_twice(leases):
    """A write whose answer was lost, sent again by the SDK, finds its own lease at the limit and holds it."""
    assert leases.take("acme", "w1", limit=1, until=130.0, now=100.0)
    assert leases.take("acme", "w1", limit=1, until=130.0, now=100.5)
    assert live(leases, "acme", 100.5) == {"w1"}


def test_giving_back_a_lease_not_held_changes_nothing(leases):
    leases.give_back("acme", "never")  # no item yet
    assert leases.take("acme", "w1", limit=1, until=130.0, now=100.0)
    leases.give_back("acme", "never")
    assert live(leases, "acme", 100.0) == {"w1"}


def test_a_limit_below_one_takes_nothing(leases):
    assert not leases.take("acme", "w1", limit=0, until=130.0, now=100.0)
    assert live(leases, "acme", 100.0) == set()


def test_concurrent_takes_never_pass_the_limit(leases):
    """Many requests of one tenant at once, its item not made yet and half of them racing to prune the same ended
    leases: exactly the limit are taken."""
    assert leases.take("acme", "old1", limit=10, until=105.0, now=100.0)
    assert leases.take("acme", "old2", limit=10, until=105.0, now=100.0)
    with ThreadPoolExecutor(max_workers=12) as pool:
        taken = list(pool.map(lambda n: leases.take("acme", f"w{n}", limit=4, until=200.0, now=150.0), range(12)))
    assert sum(taken) == 4
    assert live(leases, "acme", 150.0) == {f"w{n}" for n, ok in enumerate(taken) if ok}
    with ThreadPoolExecutor(max_workers=8) as pool:
        first = list(pool.map(lambda n: leases.take("fresh", f"w{n}", limit=3, until=200.0, now=150.0), range(8)))
    assert sum(first) == 3


class Recording:
    """A DynamoDB client that keeps the names each UpdateItem's expressions use."""

    def __init__(self, client) -> None:
        self._client = client
        self.names: list[int] = []

    def update_item(self, **request):
        self.names.append(len(request.get("ExpressionAttributeNames", {})))
        return self._client.update_item(**request)

    def __getattr__(self, name):
        return getattr(self._client, name)


def test_a_take_prunes_a_bounded_number_of_ended_leases(local_aws, tenants_table_properties):
    """Each pruned lease is named in the write's expressions, which DynamoDB stops at 4 KB and 300 operators (moto
    does not): a write naming every ended lease of a tenant with a high cap would fail, and with it every wait of
    that tenant, for good, since it is the write that removes them (found by review)."""
    client = local_aws.client("dynamodb")
    table = "tenants-waits-" + uuid.uuid4().hex[:10]
    client.create_table(TableName=table, **tenants_table_properties)
    try:
        recording = Recording(client)
        leases = WaitLeases(recording, table)
        for n in range(120):
            assert leases.take("acme", f"died{n}", limit=120, until=110.0, now=100.0)
        recording.names.clear()
        assert leases.take("acme", "w1", limit=120, until=300.0, now=200.0)
        assert max(recording.names) <= 51, recording.names
        assert set(leases.held("acme")) == {"w1"}  # every ended one pruned, 50 at most per write
    finally:
        client.delete_table(TableName=table)


def test_a_lowered_cap_still_lets_a_tenant_wait_behind_many_ended_leases(leases):
    """Leases of killed environments piled up under a cap of 120, which was then lowered to 20: more ended leases
    than one write may name (found by review: every take was refused, for good)."""
    for n in range(120):
        assert leases.take("acme", f"died{n}", limit=120, until=110.0, now=100.0)
    assert leases.take("acme", "w0", limit=20, until=300.0, now=200.0)
    assert live(leases, "acme", 200.0) == {"w0"}


def test_a_prune_of_an_item_deleted_meanwhile_takes_the_lease_all_the_same(local_aws, tenants_table_properties):
    """The tenant was deleted (and its waits item with it) between the take's read and its prune: no error (an
    unanswered 500 for the request), the take makes the item again."""
    client = local_aws.client("dynamodb")
    table = "tenants-waits-" + uuid.uuid4().hex[:10]
    client.create_table(TableName=table, **tenants_table_properties)
    try:
        for n in range(60):
            assert WaitLeases(client, table).take("acme", f"died{n}", limit=60, until=110.0, now=100.0)

        class DeletedBeforeThePrune(Recording):
            def update_item(self, **request):
                if request["UpdateExpression"].startswith("REMOVE"):
                    client.delete_item(TableName=table, Key=request["Key"])
                return super().update_item(**request)

        leases = WaitLeases(DeletedBeforeThePrune(client), table)
        assert leases.take("acme", "w1", limit=10, until=300.0, now=200.0)
        assert set(leases.held("acme")) == {"w1"}
    finally:
        client.delete_table(TableName=table)
