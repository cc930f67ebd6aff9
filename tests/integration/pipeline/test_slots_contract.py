"""One scenario suite, two running-slot stores: the in-memory fake the unit tier uses and the real
:class:`~spectra.share.RunningSlots` on DynamoDB (moto), in a table made from template.yaml's own ``TenantsTable``."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from spectra.share import RunningSlots
from spectra.tenants import TenantDirectory
from tests.fixtures.aws import template_table_properties
from tests.unit.fakes import FakeRunningSlots

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tenants_table_properties() -> dict:
    return template_table_properties("TenantsTable")


@pytest.fixture(params=["fake", "dynamodb"])
def slots(request, tenants_table_properties):
    if request.param == "fake":
        yield FakeRunningSlots()
        return
    client = request.getfixturevalue("local_aws").client("dynamodb")
    table = "tenants-contract-" + uuid.uuid4().hex[:10]
    client.create_table(TableName=table, **tenants_table_properties)
    yield RunningSlots(client, table)
    client.delete_table(TableName=table)


def test_slots_are_taken_up_to_the_limit(slots):
    assert [slots.acquire("acme", f"j_{i}", limit=2, now=100.0) for i in range(3)] == [True, True, False]
    assert slots.holders("acme") == {"j_0": 100.0, "j_1": 100.0}
    assert slots.holders("globex") == {}
    assert slots.acquire("globex", "j_9", limit=2)  # per tenant


def test_a_refused_slot_answers_with_the_holders(slots):
    assert slots.acquire_or_holders("acme", "j_1", limit=1, now=100.0) is None
    assert slots.acquire_or_holders("acme", "j_2", limit=1, now=150.0) == {"j_1": 100.0}
    assert slots.acquire_or_holders("globex", "j_3", limit=0) == {}


def test_a_holder_taking_its_slot_again_is_restamped_not_counted_twice(slots):
    assert slots.acquire("acme", "j_1", limit=1, now=100.0)
    assert slots.acquire("acme", "j_1", limit=1, now=200.0)
    assert slots.holders("acme") == {"j_1": 200.0}
    assert not slots.acquire("acme", "j_2", limit=1)


def test_a_zero_limit_admits_nobody(slots):
    assert not slots.acquire("acme", "j_1", limit=0)
    assert slots.holders("acme") == {}


def test_release_frees_the_slot_and_is_harmless_to_repeat(slots):
    slots.release("acme", "j_never")  # no item yet
    slots.acquire("acme", "j_1", limit=1)
    slots.release("acme", "j_1")
    slots.release("acme", "j_1")
    assert slots.holders("acme") == {}
    assert slots.acquire("acme", "j_2", limit=1)


def test_evict_and_restamp_only_when_the_stamp_is_still_the_one_read(slots):
    slots.acquire("acme", "j_1", limit=5, now=100.0)
    slots.acquire("acme", "j_2", limit=5, now=100.0)
    assert not slots.evict("acme", "j_1", stamp=99.0)  # someone re-stamped it since
    assert slots.evict("acme", "j_1", stamp=100.0)
    assert not slots.evict("acme", "j_1", stamp=100.0)
    assert not slots.restamp("acme", "j_2", stamp=50.0, now=300.0)
    assert slots.restamp("acme", "j_2", stamp=100.0, now=300.0)
    assert slots.holders("acme") == {"j_2": 300.0}
    assert not slots.evict("nobody", "j_1", stamp=100.0)


def test_the_limit_holds_under_racing_writers(local_aws, tenants_table_properties):
    client = local_aws.client("dynamodb")
    table = "tenants-contract-" + uuid.uuid4().hex[:10]
    client.create_table(TableName=table, **tenants_table_properties)
    slots = RunningSlots(client, table)
    with ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(lambda i: slots.acquire("acme", f"j_{i}", limit=3), range(24)))
    assert sum(taken) == 3
    assert len(slots.holders("acme")) == 3
    client.delete_table(TableName=table)


def test_slots_share_the_tenants_table_without_touching_tenants(local_aws, tenants_table_properties):
    client = local_aws.client("dynamodb")
    table = "tenants-contract-" + uuid.uuid4().hex[:10]
    client.create_table(TableName=table, **tenants_table_properties)
    directory, slots = TenantDirectory(client, table), RunningSlots(client, table)
    directory.create_tenant("acme", db_user="tenant_acme", max_running_statements=4)
    slots.acquire("acme", "j_1", limit=4)
    assert directory.get("acme").max_running_statements == 4
    assert directory.get("slots#acme") is None
    client.delete_table(TableName=table)


def test_a_job_parks_only_while_the_tenant_is_at_its_cap(slots):
    assert not slots.park("acme", "j_w", limit=1)  # no slots taken yet: go and take one
    slots.acquire("acme", "j_1", limit=1, now=100.0)
    assert slots.park("acme", "j_w", limit=1, now=110.0)
    assert slots.park("acme", "j_x", limit=1, now=120.0)
    assert slots.park("acme", "j_w", limit=1, now=130.0)  # parking again keeps the place in the line
    assert slots.waiting("acme") == {"j_w": 110.0, "j_x": 120.0}
    assert not slots.park("acme", "j_y", limit=2)  # under a higher cap there is room: no parking


def test_release_answers_with_the_waiting_jobs_and_unpark_is_won_once(slots):
    slots.acquire("acme", "j_1", limit=1, now=100.0)
    slots.park("acme", "j_w", limit=1, now=110.0)
    assert slots.release("acme", "j_other") == {}  # held no slot: frees nothing, wakes nobody
    assert slots.release("acme", "j_1") == {"j_w": 110.0}
    assert slots.unpark("acme", "j_w")
    assert not slots.unpark("acme", "j_w")
    assert slots.waiting("acme") == {}


def test_taking_a_slot_takes_the_job_off_the_waiting_list(slots):
    slots.acquire("acme", "j_1", limit=1)
    slots.park("acme", "j_w", limit=1)
    slots.release("acme", "j_1")
    assert slots.acquire("acme", "j_w", limit=1)
    assert slots.waiting("acme") == {}
    assert set(slots.holders("acme")) == {"j_w"}
