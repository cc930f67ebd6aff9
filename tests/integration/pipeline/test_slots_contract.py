"""One scenario suite, two running-slot stores (slots, waiting lists and session leases): the in-memory fake the unit
tier uses and the real :class:`~spectra.slots.RunningSlots` on DynamoDB (moto), in a table made from template.yaml's
own ``TenantsTable``."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from spectra.share import RunningSlots
from spectra.slots import PooledSession
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
    assert slots.claim("acme", "j_1", limit=1, now=100.0).taken
    refused = slots.claim("acme", "j_2", limit=1, now=150.0)
    assert not refused.taken and refused.holders == {"j_1": 100.0}
    refused = slots.claim("globex", "j_3", limit=0)
    assert not refused.taken and refused.holders == {}


def test_a_holder_taking_its_slot_again_is_restamped_not_counted_twice(slots):
    assert slots.acquire("acme", "j_1", limit=1, now=100.0)
    assert slots.acquire("acme", "j_1", limit=1, now=200.0)
    assert slots.holders("acme") == {"j_1": 200.0}
    assert not slots.acquire("acme", "j_2", limit=1)


def test_a_zero_limit_admits_nobody(slots):
    assert not slots.acquire("acme", "j_1", limit=0)
    assert slots.holders("acme") == {}
    assert slots.park("acme", "j_1", limit=0, now=100.0)  # a paused tenant's jobs wait on its list, first job or not
    assert slots.waiting("acme") == {"j_1": 100.0}


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
    assert not slots.park("acme", "j_1", limit=1)  # a job holding a slot never waits for one: its claim finds it
    assert slots.waiting("acme") == {"j_w": 110.0, "j_x": 120.0}


def test_release_answers_with_the_waiting_jobs_and_unpark_is_won_once(slots):
    slots.acquire("acme", "j_1", limit=1, now=100.0)
    slots.park("acme", "j_w", limit=1, now=110.0)
    assert slots.release("acme", "j_other") == {}  # held no slot: frees nothing, wakes nobody
    assert slots.release("acme", "j_1") == {"j_w": 110.0}
    assert slots.unpark("acme", "j_w")
    assert not slots.unpark("acme", "j_w")
    assert slots.waiting("acme") == {}


def test_releasing_a_job_that_holds_no_slot_takes_it_off_the_waiting_list(slots):
    """An ended job's place would stay for good on a tenant that frees no slot (found by the share review)."""
    assert slots.acquire("acme", "j1", limit=1)
    assert slots.park("acme", "j2", limit=1, now=5.0) and slots.park("acme", "j3", limit=1, now=6.0)
    assert slots.release("acme", "j2") == {}  # it held none: nothing freed, nobody to wake
    assert slots.waiting("acme") == {"j3": 6.0} and set(slots.holders("acme")) == {"j1"}
    assert slots.release("acme", "j9") == {}  # neither holding nor waiting: harmless


def test_a_refused_release_of_a_job_that_never_waited_is_one_write():
    """Each write to the slots item is billed by its whole size: a job neither holding nor waiting (a bulk drop
    refused at the door) costs the refused release only, not an unpark as well (found by a diff review)."""
    from botocore.exceptions import ClientError

    from spectra.slots import RunningSlots

    class Refusing:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def update_item(self, **kwargs):
            self.calls.append(kwargs["UpdateExpression"])
            error = {"Code": "ConditionalCheckFailedException", "Message": "refused"}
            raise ClientError({"Error": error, "Item": {"waiting": {"M": {"other": {"N": "1"}}}}}, "UpdateItem")

    client = Refusing()
    assert RunningSlots(client, "tenants").release("acme", "b_never_waited") == {}
    assert len(client.calls) == 1, client.calls


def test_the_line_is_the_holders_and_the_waiting_list_at_once(slots):
    assert slots.line("acme") == ({}, {})
    slots.acquire("acme", "j_1", limit=1, now=100.0)
    slots.park("acme", "j_w", limit=1, now=110.0)
    assert slots.line("acme") == ({"j_1": 100.0}, {"j_w": 110.0})


def test_taking_a_slot_takes_the_job_off_the_waiting_list(slots):
    slots.acquire("acme", "j_1", limit=1)
    slots.park("acme", "j_w", limit=1)
    slots.release("acme", "j_1")
    assert slots.acquire("acme", "j_w", limit=1)
    assert slots.waiting("acme") == {}
    assert set(slots.holders("acme")) == {"j_w"}


def test_a_taken_claim_answers_with_the_waiting_list_it_left(slots):
    slots.acquire("acme", "j_1", limit=1)
    slots.park("acme", "j_w", limit=1, now=110.0)
    slots.park("acme", "j_x", limit=1, now=120.0)
    claim = slots.claim("acme", "j_w", limit=3)  # the cap was raised: room for j_w and one more
    assert claim.taken and claim.waiting == {"j_x": 120.0}


# -- session leases (spectra/sessions.py) ----------------------------------------------------------------------------

ACME = "db_user:tenant_acme"


def pooled(slots, tenant: str, job: str, session_id: str = "s-1", until: float = 10_000.0, who: str = ACME):
    """Put a session in the tenant's pool the way the pipeline does: a job opens it, its release returns it."""
    assert slots.claim(tenant, job, limit=5, now=100.0).taken
    slots.release(tenant, job, session=PooledSession(session_id, who, until=until))
    return slots.sessions(tenant)[session_id]


def test_a_released_session_joins_the_pool_idle(slots):
    session = pooled(slots, "acme", "j_0")
    assert session == PooledSession("s-1", ACME, until=10_000.0, job_id=None)
    assert slots.holders("acme") == {}
    assert slots.sessions("globex") == {}


def test_a_claim_takes_the_slot_and_leases_the_session_in_one_write(slots):
    session = pooled(slots, "acme", "j_0")
    claim = slots.claim("acme", "j_1", limit=5, now=200.0, lease=session)
    assert claim.taken and not claim.session_refused
    assert claim.session == PooledSession("s-1", ACME, until=10_000.0, job_id="j_1")
    assert claim.holders == {"j_1": 200.0}
    assert claim.sessions == {"s-1": claim.session}


def test_a_leased_session_is_refused_to_another_job_and_nothing_is_written(slots):
    session = pooled(slots, "acme", "j_0")
    assert slots.claim("acme", "j_1", limit=5, now=200.0, lease=session).session is not None
    refused = slots.claim("acme", "j_2", limit=5, now=210.0, lease=session)
    assert (refused.taken, refused.session_refused, refused.session) == (False, True, None)
    assert refused.sessions["s-1"].job_id == "j_1"  # the pool as it is, to choose again
    assert slots.holders("acme") == {"j_1": 200.0}  # j_2 took no slot either
    again = slots.claim("acme", "j_1", limit=5, now=220.0, lease=session)  # its own lease: a redelivered message
    assert again.taken and again.session.job_id == "j_1"


@pytest.mark.parametrize(
    ("lease", "now"),
    [
        (PooledSession("s-1", "db_user:tenant_globex", until=10_000.0), 200.0),  # another identity
        (PooledSession("s-1", ACME, until=10_000.0), 20_000.0),  # past its keep-alive
        (PooledSession("s-9", ACME, until=10_000.0), 200.0),  # not in the pool
    ],
)
def test_a_session_of_another_identity_expired_or_unknown_is_refused(slots, lease, now):
    pooled(slots, "acme", "j_0")
    refused = slots.claim("acme", "j_1", limit=5, now=now, lease=lease)
    assert (refused.taken, refused.session_refused) == (False, True)
    assert slots.sessions("acme")["s-1"].job_id is None


def test_sessions_are_per_tenant(slots):
    session = pooled(slots, "acme", "j_0")
    refused = slots.claim("globex", "j_1", limit=5, now=200.0, lease=session)
    assert not refused.taken
    assert slots.sessions("acme")["s-1"].job_id is None


def test_a_session_lease_is_refused_at_the_cap_like_the_slot(slots):
    session = pooled(slots, "acme", "j_0")
    slots.claim("acme", "j_1", limit=1, now=200.0)
    at_cap = slots.claim("acme", "j_2", limit=1, now=200.0, lease=session)
    assert (at_cap.taken, at_cap.session_refused, at_cap.holders) == (False, False, {"j_1": 200.0})


def test_release_gives_the_session_back_with_its_new_expiry_and_only_from_a_holder(slots):
    session = pooled(slots, "acme", "j_0")
    slots.claim("acme", "j_1", limit=5, now=200.0, lease=session)
    slots.release("acme", "j_other", session=PooledSession("s-1", ACME, until=1.0))  # holds nothing: no effect
    assert slots.sessions("acme")["s-1"].job_id == "j_1"
    slots.release("acme", "j_1", session=PooledSession("s-1", ACME, until=30_000.0))
    assert slots.sessions("acme")["s-1"] == PooledSession("s-1", ACME, until=30_000.0)


def test_a_sessions_opening_is_kept_through_lease_and_release(slots):
    """What retires a session before the Data API's 24 hours (spectra/sessions.py) is read back as written."""
    assert slots.claim("acme", "j_0", limit=5, now=100.0).taken
    slots.release("acme", "j_0", session=PooledSession("s-1", ACME, until=30_000.0, opened=1_234.5))
    claim = slots.claim("acme", "j_1", limit=5, now=200.0, lease=slots.sessions("acme")["s-1"])
    assert claim.session == PooledSession("s-1", ACME, until=30_000.0, job_id="j_1", opened=1_234.5)


def test_drop_removes_an_idle_or_own_session_only(slots):
    session = pooled(slots, "acme", "j_0")
    slots.claim("acme", "j_1", limit=5, now=200.0, lease=session)
    assert not slots.drop_session("acme", "s-1", job_id="j_2")  # leased by another job
    assert slots.drop_session("acme", "s-1", job_id="j_1")
    assert slots.sessions("acme") == {}
    assert not slots.drop_session("acme", "s-1", job_id="j_1")
    assert not slots.drop_session("nobody", "s-1", job_id="j_1")


def test_unlease_puts_back_only_a_session_the_job_leases_and_keeps_its_slot(slots):
    session = pooled(slots, "acme", "j_0")
    slots.claim("acme", "j_1", limit=5, now=200.0, lease=session)
    idle = PooledSession("s-1", ACME, until=10_000.0)
    assert not slots.unlease("acme", idle, job_id="j_2")  # leased by another job
    assert slots.sessions("acme")["s-1"].job_id == "j_1"
    assert slots.unlease("acme", idle, job_id="j_1")
    assert slots.sessions("acme")["s-1"] == idle and slots.holders("acme") == {"j_1": 200.0}
    assert not slots.unlease("acme", idle, job_id="j_1")  # idle now: nobody's to give back
    assert not slots.unlease("nobody", idle, job_id="j_1")


def test_return_session_pools_a_new_or_own_session_whatever_became_of_the_slot(slots):
    session = pooled(slots, "acme", "j_0")
    slots.claim("acme", "j_1", limit=5, now=200.0, lease=session)
    slots.release("acme", "j_1")  # the job's ending freed the slot, knowing nothing of the lease
    idle = PooledSession("s-1", ACME, until=10_000.0)
    assert not slots.return_session("acme", idle, job_id="j_2")  # leased by another job
    assert slots.return_session("acme", idle, job_id="j_1")
    assert slots.sessions("acme")["s-1"] == idle and slots.holders("acme") == {}
    opened = PooledSession("s-new", ACME, until=10_000.0)  # opened for the job, never pooled
    assert slots.return_session("acme", opened, job_id="j_3")
    assert slots.sessions("acme")["s-new"] == opened
    assert not slots.return_session("nobody", opened, job_id="j_3")


def test_a_claim_prunes_the_sessions_it_is_given(slots):
    pooled(slots, "acme", "j_0", "s-old", until=50.0)
    pooled(slots, "acme", "j_1", "s-new")
    claim = slots.claim("acme", "j_2", limit=5, now=200.0, prune=("s-old",))
    assert set(claim.sessions) == {"s-new"} == set(slots.sessions("acme"))


def test_evicting_a_dead_holder_forgets_its_session(slots):
    session = pooled(slots, "acme", "j_0")
    slots.claim("acme", "j_1", limit=5, now=200.0, lease=session)
    assert slots.evict("acme", "j_1", stamp=200.0, session_id="s-1")
    assert slots.holders("acme") == {} and slots.sessions("acme") == {}


def test_one_session_is_leased_once_under_racing_writers(local_aws, tenants_table_properties):
    client = local_aws.client("dynamodb")
    table = "tenants-contract-" + uuid.uuid4().hex[:10]
    client.create_table(TableName=table, **tenants_table_properties)
    slots = RunningSlots(client, table)
    session = pooled(slots, "acme", "j_0", until=time.time() + 600)
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda i: slots.claim("acme", f"j_{i}", limit=50, lease=session), range(1, 17)))
    winners = [claim for claim in claims if claim.session is not None]
    assert len(winners) == 1
    assert slots.sessions("acme")["s-1"].job_id == winners[0].session.job_id
    client.delete_table(TableName=table)


def test_a_slots_item_made_before_session_pools_takes_a_session_back(local_aws, tenants_table_properties):
    client = local_aws.client("dynamodb")
    table = "tenants-contract-" + uuid.uuid4().hex[:10]
    client.create_table(TableName=table, **tenants_table_properties)
    client.put_item(
        TableName=table,
        Item={"pk": {"S": "slots#acme"}, "holders": {"M": {"j_1": {"N": "100"}}}, "waiting": {"M": {}}},
    )
    slots = RunningSlots(client, table)
    slots.release("acme", "j_1", session=PooledSession("s-1", ACME, until=10_000.0))
    assert slots.sessions("acme") == {"s-1": PooledSession("s-1", ACME, until=10_000.0)}
    assert slots.holders("acme") == {}
    client.delete_table(TableName=table)


class _AtItemSizeLimit:
    """The DynamoDB client, with the tenant's slots item at DynamoDB's 400 KB (a waiting list of thousands): a write
    that would add an entry matching ``grows`` is refused as DynamoDB refuses it. moto counts item size too loosely
    to get there with a real list."""

    def __init__(self, client, grows: str) -> None:
        self._client, self._grows = client, grows

    def update_item(self, **request):
        if self._grows in request["UpdateExpression"]:
            error = {"Code": "ValidationException", "Message": "Item size has exceeded the maximum allowed size"}
            raise ClientError({"Error": error}, "UpdateItem")
        return self._client.update_item(**request)

    def __getattr__(self, name):
        return getattr(self._client, name)


@pytest.fixture
def slots_table(local_aws, tenants_table_properties):
    client = local_aws.client("dynamodb")
    table = "tenants-contract-" + uuid.uuid4().hex[:10]
    client.create_table(TableName=table, **tenants_table_properties)
    yield client, table
    client.delete_table(TableName=table)


def test_at_the_item_size_limit_a_claim_is_refused_like_a_full_cap_not_an_error(slots_table):
    client, table = slots_table
    RunningSlots(client, table).acquire("acme", "j_1", limit=5, now=100.0)
    full = RunningSlots(_AtItemSizeLimit(client, "SET holders"), table)
    claim = full.claim("acme", "j_2", limit=5, now=101.0)
    assert (claim.taken, claim.holders) == (False, {"j_1": 100.0})


def test_at_the_item_size_limit_a_slot_goes_back_without_its_session_and_the_next_job_is_woken(slots_table):
    client, table = slots_table
    slots = RunningSlots(client, table)
    assert slots.acquire("acme", "j_1", limit=1, now=100.0)
    assert slots.park("acme", "j_2", limit=1, now=101.0)
    full = RunningSlots(_AtItemSizeLimit(client, "SET sessions"), table)
    waiting = full.release("acme", "j_1", session=PooledSession("s-1", ACME, until=10_000.0))
    assert waiting == {"j_2": 101.0}  # the slot is free and the longest waiting job is named, to be woken
    assert slots.holders("acme") == {}
