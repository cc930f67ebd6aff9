"""The tenant commands (spectra/tenant_admin.py), the behaviour mutation testing found no test held: a local stack's
state file read for its tables, stack name and identity rule; ``tenants update`` (a number, ``default``, nothing);
``tenants deactivate`` / ``activate``; ``tenants show`` of a tenant that does not exist; and the line a tenant is
shown as. The commands against DynamoDB and API Gateway (moto) are tests/integration/admin/test_tenant_admin.py's;
here the directory is tests/unit/fakes.py's FakeTenants."""

from __future__ import annotations

import argparse
import io
import json
import re

import pytest

from spectra import tenant_admin
from spectra.errors import InvalidRequest, NotFound
from spectra.identity import TenantIdentities
from spectra.tenants import Tenant
from tests.unit.fakes import FakeTenants

pytestmark = pytest.mark.unit


def _parse(*argv: str) -> argparse.Namespace:
    """``argv`` parsed as ``python -m spectra.admin`` parses it (its ``tenants`` and ``keys`` commands)."""
    parser = argparse.ArgumentParser()
    tenant_admin.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def _run(tenants: FakeTenants, *argv: str) -> str:
    out = io.StringIO()
    assert tenant_admin.run(_parse(*argv), tenants, None, out) == 0
    return out.getvalue()


def _state_file(tmp_path, state: dict):
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    return path


def test_a_local_stacks_state_file_gives_its_tables_stack_name_and_identity_rule(tmp_path):
    """The tables' physical ids, no usage plan ids (the plans are found by name), and what the executor takes."""
    path = _state_file(
        tmp_path,
        {
            "stack_name": "spectra-local",
            "parameter_overrides": {"RedshiftClusterId": "warehouse", "TenantDbUserPrefix": "t_"},
            "resources": {
                "TenantsTable": {"physical_id": "spectra-local-tenants-1"},
                "SubscriptionsTable": {"physical_id": "spectra-local-subscriptions-1"},
            },
        },
    )
    assert tenant_admin.resources_from_state(path) == tenant_admin.Resources(
        tenants_table="spectra-local-tenants-1",
        subscriptions_table="spectra-local-subscriptions-1",
        plan_ids=None,
        stack_name="spectra-local",
        identities=TenantIdentities(cluster=True, prefix="t_"),
    )


def test_a_state_file_without_subscriptions_table_or_parameters_is_read_without_them(tmp_path):
    path = _state_file(tmp_path, {"stack_name": "s", "resources": {"TenantsTable": {"physical_id": "s-tenants"}}})
    resources = tenant_admin.resources_from_state(path)
    assert (resources.tenants_table, resources.subscriptions_table, resources.identities) == ("s-tenants", None, None)


@pytest.mark.parametrize(
    "content",
    ["not json", json.dumps({"stack_name": "s", "resources": {}}), json.dumps({"resources": {}}), json.dumps([1])],
)
def test_a_file_that_is_no_stacks_state_is_refused_naming_it(tmp_path, content):
    """An InvalidRequest the admin command says in one line, not a traceback."""
    path = tmp_path / "stack.json"
    path.write_text(content, encoding="utf-8")
    said = f"{path} is not a local stack's state file with a tenants table"
    with pytest.raises(InvalidRequest, match=re.escape(said)):
        tenant_admin.resources_from_state(path)


def test_a_missing_state_file_is_refused_naming_it(tmp_path):
    with pytest.raises(InvalidRequest, match=re.escape("nothing.json is not a local stack's state file")):
        tenant_admin.resources_from_state(tmp_path / "nothing.json")


def _tenants(**attributes) -> FakeTenants:
    tenants = FakeTenants()
    tenants.create_tenant("acme", db_user="tenant_acme", usage_key="k" * 20, **attributes)
    return tenants


def test_update_sets_a_number_and_puts_default_back_to_the_services_value():
    tenants = _tenants(max_running_statements=5)
    out = _run(tenants, "tenants", "update", "acme", "--max-running", "default", "--max-waits", "3")
    assert (tenants.get("acme").max_running_statements, tenants.get("acme").max_waits) == (None, 3)
    assert out == "acme: active, tier standard, user tenant_acme, max running default, max waits 3\n"


def test_update_of_one_cap_to_0_pauses_the_tenant_and_leaves_the_other_cap():
    """0 running statements is a cap (the tenant paused), not a cap left out."""
    tenants = _tenants(max_running_statements=5, max_waits=7)
    out = _run(tenants, "tenants", "update", "acme", "--max-running", "0")
    assert (tenants.get("acme").max_running_statements, tenants.get("acme").max_waits) == (0, 7)
    assert "max running 0, max waits 7" in out


def test_update_with_no_cap_is_refused_saying_what_to_give():
    tenants = _tenants(max_running_statements=5)
    with pytest.raises(InvalidRequest, match=r"nothing to change: give --max-running or --max-waits"):
        _run(tenants, "tenants", "update", "acme")
    assert tenants.get("acme").max_running_statements == 5


def test_default_is_a_cap_for_update_only_not_for_create():
    """create has no service value to go back to: ``--max-running default`` is refused by argparse (exit 2)."""
    assert _parse("tenants", "update", "acme", "--max-waits", "default").max_waits == "default"
    with pytest.raises(SystemExit) as exited:
        _parse("tenants", "create", "acme", "--db-user", "tenant_acme", "--max-running", "default")
    assert exited.value.code == 2


def test_deactivate_and_activate_change_the_tenant_and_show_it():
    tenants = _tenants()
    assert _run(tenants, "tenants", "deactivate", "acme").startswith("acme: INACTIVE, tier standard")
    assert tenants.get("acme").active is False
    assert _run(tenants, "tenants", "activate", "acme").startswith("acme: active, tier standard")
    assert tenants.get("acme").active is True


def test_show_of_a_tenant_that_does_not_exist_is_not_found():
    with pytest.raises(NotFound, match="tenant 'globex' not found"):
        _run(_tenants(), "tenants", "show", "globex")


def test_a_tenant_line_says_its_secret_its_schemas_and_a_missing_usage_plan_key():
    tenant = Tenant.new(
        "acme",
        secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:spectra/tenants/acme",
        allow_writes=True,
        owned_schemas=["s1", "s2"],
        tier="premium",
        max_waits=2,
    )
    assert tenant_admin._line(tenant) == (
        "acme: active, tier premium (no usage-plan key: its requests are refused 403; run tenants tier), "
        "secret arn:aws:secretsmanager:us-east-1:1:secret:spectra/tenants/acme, max running default, max waits 2, "
        "writes in s1, s2"
    )


def test_a_statement_timeout_of_0_is_taken_and_below_0_refused():
    """0 is no timeout (the SQL's statement_timeout TO 0); -1 is refused by argparse (exit 2)."""
    create = ("tenants", "create", "acme", "--db-user", "tenant_acme", "--statement-timeout-ms")
    assert _parse(*create, "0").statement_timeout_ms == 0
    with pytest.raises(SystemExit) as exited:
        _parse(*create, "-1")
    assert exited.value.code == 2


@pytest.mark.parametrize(
    ("option", "lowest"),
    [("--max-running", 0), ("--max-waits", 1)],
)
def test_a_cap_below_its_lowest_is_refused_by_the_command_and_its_lowest_taken(option, lowest):
    """0 running statements pauses a tenant, while a tenant with no one-call wait at all could not run one: the
    commands refuse one below each (exit 2, before anything is written) and take the lowest itself."""
    for verb in (("tenants", "create", "acme", "--db-user", "tenant_acme"), ("tenants", "update", "acme")):
        assert getattr(_parse(*verb, option, str(lowest)), option[2:].replace("-", "_")) == lowest
        with pytest.raises(SystemExit) as exited:
            _parse(*verb, option, str(lowest - 1))
        assert exited.value.code == 2
