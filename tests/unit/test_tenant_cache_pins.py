"""Tenant cache behaviour no test held before (found by mutation testing spectra/tenant_cache.py): a record is kept for
``max_age`` seconds and no longer (exactly ``max_age`` old still counts), an absent tenant is remembered too, each
tenants port has its own records, and ``forget`` drops one tenant's record or all of them."""

from __future__ import annotations

import pytest

from spectra import tenant_cache
from spectra.tenant_cache import forget, tenant_record
from tests.unit.fakes import FakeTenants

pytestmark = pytest.mark.unit


@pytest.fixture
def clock(monkeypatch):
    """The cache's monotonic clock, moved by the test: ``clock[0]`` seconds."""
    now = [500.0]
    monkeypatch.setattr(tenant_cache.time, "monotonic", lambda: now[0])
    return now


def _tenants() -> FakeTenants:
    tenants = FakeTenants()
    tenants.create_tenant("acme", db_user="tenant_acme", max_running_statements=2)
    return tenants


def test_a_record_is_kept_for_max_age_seconds_then_read_again(clock):
    """A change made in the table is seen once the record is older than max_age (5 s), not before."""
    tenants = _tenants()
    assert tenant_record(tenants, "acme", max_age=5.0).max_running_statements == 2
    tenants.update_tenant("acme", max_running_statements=7)
    clock[0] += 5.0  # exactly max_age old: still trusted
    assert tenant_record(tenants, "acme", max_age=5.0).max_running_statements == 2
    clock[0] += 0.5
    assert tenant_record(tenants, "acme", max_age=5.0).max_running_statements == 7


def test_max_age_zero_reads_the_table_at_once_and_a_longer_one_accepts_the_kept_record(clock):
    """The same record is trusted by a caller accepting 60 s and re-read by one accepting 0 s, once time moved on."""
    tenants = _tenants()
    tenant_record(tenants, "acme", max_age=60.0)
    tenants.update_tenant("acme", max_running_statements=9)
    clock[0] += 1.0
    assert tenant_record(tenants, "acme", max_age=60.0).max_running_statements == 2
    assert tenant_record(tenants, "acme", max_age=0.0).max_running_statements == 9


def test_an_absent_tenant_is_remembered_as_absent(clock):
    """A tenant not in the table reads None, and stays None within max_age even once created."""
    tenants = FakeTenants()
    assert tenant_record(tenants, "late", max_age=5.0) is None
    tenants.create_tenant("late", db_user="tenant_late")
    clock[0] += 1.0
    assert tenant_record(tenants, "late", max_age=5.0) is None
    clock[0] += 5.0
    assert tenant_record(tenants, "late", max_age=5.0).tenant_id == "late"


def test_each_tenants_port_has_its_own_records(clock):
    """Another port's table is read, not this one's kept record."""
    first, second = _tenants(), FakeTenants()
    second.create_tenant("acme", db_user="tenant_acme", max_running_statements=4)
    assert tenant_record(first, "acme", max_age=60.0).max_running_statements == 2
    assert tenant_record(second, "acme", max_age=60.0).max_running_statements == 4


def _two_kept_then_changed() -> FakeTenants:
    """acme (2) and beta (1) read into the cache, then changed in the table to 8 and 3."""
    tenants = _tenants()
    tenants.create_tenant("beta", db_user="tenant_beta", max_running_statements=1)
    tenant_record(tenants, "acme", max_age=60.0)
    tenant_record(tenants, "beta", max_age=60.0)
    tenants.update_tenant("acme", max_running_statements=8)
    tenants.update_tenant("beta", max_running_statements=3)
    return tenants


def test_forget_one_tenant_drops_its_record_and_keeps_the_others(clock):
    """After forget(port, "acme") acme is read again at once; another tenant's record is still the kept one."""
    tenants = _two_kept_then_changed()
    forget(tenants, "acme")
    assert tenant_record(tenants, "acme", max_age=60.0).max_running_statements == 8
    assert tenant_record(tenants, "beta", max_age=60.0).max_running_statements == 1


def test_forget_all_drops_every_record_of_the_port(clock):
    """forget(port) makes the next read of every tenant go to the table."""
    tenants = _two_kept_then_changed()
    forget(tenants)
    assert tenant_record(tenants, "acme", max_age=60.0).max_running_statements == 8
    assert tenant_record(tenants, "beta", max_age=60.0).max_running_statements == 3


def test_forgetting_on_a_port_never_read_does_nothing(clock):
    """forget on a port the cache has not seen, or of an unknown tenant, raises nothing."""
    tenants = _tenants()
    forget(tenants)
    forget(tenants, "acme")
    tenant_record(tenants, "acme", max_age=60.0)
    forget(tenants, "nobody")
    assert tenant_record(tenants, "acme", max_age=60.0).tenant_id == "acme"
