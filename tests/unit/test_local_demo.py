"""local/demo.py's add_tenant, the local stack's way to provision a tenant (README, Tenancy and security; Deploy):
a call it refuses leaves nothing behind, so the corrected call works."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from local.demo import add_tenant
from spectra.errors import Conflict
from spectra.share import UsagePlans
from spectra.tenants import KEY_PREFIX
from tests.unit.fakes import FakeTenants

pytestmark = pytest.mark.unit


class RecordingWarehouse:
    """local.demo.Warehouse's one method, keeping the admin SQL it was given."""

    def __init__(self) -> None:
        self.sqls: list[str] = []

    def run(self, *sqls: str, timeout: float = 30) -> dict:
        self.sqls.extend(sqls)
        return {"Status": "FINISHED"}


class FakeApiGateway:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def create_api_key(self, *, name, value, enabled, tags):
        self.keys.append(value)
        return {"id": f"key{len(self.keys)}"}

    def create_usage_plan_key(self, *, usagePlanId, keyId, keyType):
        pass


class Tenants(FakeTenants):
    def issue_key(self, tenant_id: str) -> str:
        assert tenant_id in self.tenants
        return KEY_PREFIX + tenant_id


@pytest.fixture
def setting():
    warehouse, api, tenants = RecordingWarehouse(), FakeApiGateway(), Tenants()
    plans = UsagePlans(api, {"basic": "p-basic", "standard": "p-std", "premium": "p-prem"})
    return warehouse, api, tenants, plans


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"owned_schema": "Acme-Data"}, ValidationError),  # not a schema name the guard can hold the tenant to
        ({"tier": "gold"}, ValueError),  # no such usage plan
        ({"max_running_statements": -1}, ValidationError),
        ({"statement_timeout_ms": -5}, ValueError),
    ],
)
def test_a_refused_tenant_leaves_nothing_behind_and_the_corrected_call_works(setting, options, error):
    """README walk: add_tenant(..., owned_schema="Acme-Data") made the API key, the user and its schema, then the
    tenant record refused the schema's name; the corrected call then failed on 'role "tenant_acme" already exists'."""
    warehouse, api, tenants, plans = setting
    with pytest.raises(error):
        add_tenant(warehouse, tenants, "acme", usage_plans=plans, **options)
    assert (warehouse.sqls, api.keys, tenants.tenants) == ([], [], {})

    assert add_tenant(warehouse, tenants, "acme", usage_plans=plans, owned_schema="acme_data") == "spk_acme"
    assert warehouse.sqls[0] == 'CREATE USER "tenant_acme"'
    assert tenants.get("acme").owned_schemas == ["acme_data"] and tenants.get("acme").usage_key == api.keys[0]


def test_a_tenant_id_taken_is_refused_before_anything_is_made(setting):
    warehouse, api, tenants, plans = setting
    add_tenant(warehouse, tenants, "acme", usage_plans=plans)
    made = (list(warehouse.sqls), list(api.keys))
    with pytest.raises(Conflict, match="already exists"):
        add_tenant(warehouse, tenants, "acme", db_user="tenant_acme_2", usage_plans=plans)
    assert (warehouse.sqls, api.keys) == made


def test_a_tenant_made_again_on_a_deleted_ones_user_is_refused_before_anything_is_made(setting):
    """README: a deleted tenant's user serves no later tenant. The identity's claim refused the record only after
    CREATE USER, CREATE SCHEMA and the API Gateway key were made (found by the diff review)."""
    warehouse, api, tenants, plans = setting
    add_tenant(warehouse, tenants, "acme", usage_plans=plans, owned_schema="acme_data")
    tenants.delete_tenant("acme")  # and the operator drops tenant_acme and its schema, as README says
    made = (list(warehouse.sqls), list(api.keys))
    with pytest.raises(Conflict, match="tenant_acme was given to tenant 'acme'"):
        add_tenant(warehouse, tenants, "acme", usage_plans=plans, owned_schema="acme_data")
    assert (warehouse.sqls, api.keys) == made
    add_tenant(warehouse, tenants, "acme", db_user="tenant_acme_2", usage_plans=plans, owned_schema="acme_data")


def test_the_user_and_its_schema_are_made_in_one_transaction(setting):
    """A schema that exists already failed its CREATE SCHEMA after the user was made in a run of its own: the user
    stayed, and the corrected call failed on 'role ... already exists'."""
    warehouse, _, tenants, plans = setting
    runs: list[tuple[str, ...]] = []
    warehouse.run = lambda *sqls, timeout=30: runs.append(sqls)
    add_tenant(warehouse, tenants, "acme", usage_plans=plans, owned_schema="acme_data")
    assert len(runs) == 1
    assert runs[0][0] == 'CREATE USER "tenant_acme"' and runs[0][-1].startswith('CREATE SCHEMA "acme_data"')
