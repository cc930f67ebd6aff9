"""Wait lease behaviour no test held before (found by mutation testing spectra/waits.py), on DynamoDB (moto), in a
table made from template.yaml's ``TenantsTable``: a lease whose request died counts for README's 10 s past its end
and no longer; the tenant's first wait is taken in the two writes the module promises; a tenant at its cap is refused
by one write with no warning, while a take whose leases keep changing under every try is refused with a warning
naming the tenant; README's 50 pruned leases per write at its bound; a take without ``now`` reads the clock.

:class:`Writes` counts the UpdateItems (through :class:`~tests.fixtures.aws.Faulty`) and runs ``before_write`` before
each, another request's write landing first."""

from __future__ import annotations

import logging
import time

import pytest

from spectra.waits import WAITS_PREFIX, WaitLeases
from tests.fixtures.aws import Faulty, table_from_template

pytestmark = pytest.mark.integration


class Writes:
    """A fault for UpdateItem that counts the writes and calls ``before_write`` before each."""

    def __init__(self) -> None:
        self.count = 0
        self.before_write = lambda: None

    def __call__(self, real, kwargs):
        self.before_write()
        self.count += 1
        return real(**kwargs)


@pytest.fixture
def table(local_aws):
    """(the writes counted, a WaitLeases, a function that sets tenant acme's leases as another request would)."""
    with table_from_template(local_aws, "TenantsTable", "tenants-waits-pins-") as (client, name):
        faulty, writes = Faulty(client), Writes()
        faulty.faults["update_item"] = writes

        def set_leases(leases: dict[str, float]) -> None:
            client.put_item(
                TableName=name,
                Item={
                    "pk": {"S": WAITS_PREFIX + "acme"},
                    "leases": {"M": {k: {"N": repr(v)} for k, v in leases.items()}},
                },
            )

        yield writes, WaitLeases(faulty, name), set_leases


def test_a_dead_lease_counts_for_ten_seconds_past_its_end_and_no_longer(table):
    """README (Per-tenant share): a lease whose environment died stops counting 10 s after its end, since another
    environment's clock judges it. Before then the tenant's only wait is still taken; from then on it is free."""
    _, leases, _ = table
    assert leases.take("acme", "died", limit=1, until=1028.0, now=1000.0)
    assert not leases.take("acme", "w1", limit=1, until=1066.0, now=1037.9)
    assert leases.take("acme", "w1", limit=1, until=1066.0, now=1038.0)
    assert leases.held("acme") == {"w1": 1066.0}  # the dead one pruned by the take that needed its room


def test_a_tenants_first_wait_is_taken_in_two_writes(table):
    """The module's promise: one conditional write takes a lease, two when the item is made. The take that made the
    item holds its lease and says so at once, without another write."""
    writes, leases, _ = table
    assert leases.take("acme", "w1", limit=2, until=1028.0, now=1000.0)
    assert writes.count == 2
    assert leases.held("acme") == {"w1": 1028.0}
    assert leases.take("acme", "w2", limit=2, until=1028.0, now=1000.0)
    assert writes.count == 3


def test_a_take_whose_leases_keep_changing_under_every_try_is_refused_and_logged(table, caplog):
    """Before each of this take's writes, other requests of the tenant prune the ended lease it means to prune and
    another lease ends (its holder died), so every write fails and every answer shows room again: the take gives up,
    refuses the wait (a 429 the client retries) and logs a warning naming the tenant, rather than trying for ever."""
    writes, leases, set_leases = table
    ended = iter(range(100))
    writes.before_write = lambda: set_leases({"running": 1028.0, f"died{next(ended)}": 990.0})
    with caplog.at_level(logging.WARNING, logger="spectra.waits"):
        assert not leases.take("acme", "mine", limit=2, until=1028.0, now=1000.0)
    assert "mine" not in leases.held("acme")
    assert [r.getMessage() for r in caplog.records if r.name == "spectra.waits"] == [
        "tenant acme: its wait leases kept changing under 4 tries; refusing this wait"
    ]


def test_a_tenant_at_its_cap_is_refused_by_one_write_and_logs_nothing(table, caplog):
    """At its cap the tenant's wait is refused at once: one write, whose failure shows every lease still running,
    and no warning (a tenant at its cap is the cap working, not leases changing under the take)."""
    writes, leases, set_leases = table
    set_leases({"running": 1028.0, "died": 990.0, "also running": 1020.0})
    with caplog.at_level(logging.WARNING, logger="spectra.waits"):
        assert not leases.take("acme", "mine", limit=2, until=1028.0, now=1000.0)
    assert writes.count == 1
    assert [r for r in caplog.records if r.name == "spectra.waits"] == []
    assert set(leases.held("acme")) == {"running", "died", "also running"}


@pytest.mark.parametrize(("died", "expected_writes"), [(50, 2), (51, 3)])
def test_fifty_ended_leases_are_pruned_by_the_takes_own_write_and_more_by_one_before(table, died, expected_writes):
    """README: a take removes the ended leases whose room it needs, 50 at most per write. Fifty are named in the
    take's own write (after the one that found them); one more is removed by a write of its own first."""
    writes, leases, set_leases = table
    set_leases({f"died{n}": 990.0 for n in range(died)})
    assert leases.take("acme", "mine", limit=died, until=1028.0, now=1000.0)
    assert writes.count == expected_writes
    assert leases.held("acme") == {"mine": 1028.0}


def test_a_take_without_a_moment_judges_ends_on_this_hosts_clock(table):
    """``now`` is optional on the port: left out, the take reads the clock, so a full tenant is refused (not a
    TypeError for the missing moment) and an ended lease still makes room."""
    _, leases, set_leases = table
    set_leases({"running": time.time() + 60})
    assert not leases.take("acme", "mine", limit=1, until=time.time() + 30)
    set_leases({"died": time.time() - 60})
    assert leases.take("acme", "mine", limit=1, until=time.time() + 30)
    assert set(leases.held("acme")) == {"mine"}
