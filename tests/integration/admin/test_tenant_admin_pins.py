"""The tenant commands (spectra/tenant_admin.py) against moto, the behaviour mutation testing found no test held
below the e2e tier: what ``tenants create --json`` prints (the key that works, the usage-plan key said as there, the
SQL with its default statement timeout of five minutes), what ``tenants list --json`` and ``tenants show --json``
print, the key lines of ``show`` and ``keys list``, and a ``keys revoke`` that another operator's revoke beat. The
stack and the command's runner are tests/integration/admin/test_tenant_admin.py's."""

from __future__ import annotations

import json

import boto3
import pytest

from tests.fixtures.aws import Faulty
from tests.integration.admin.test_tenant_admin import acme, run, stack  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration


def test_create_json_gives_a_working_key_and_sql_with_five_minutes(local_aws, stack, acme):  # noqa: F811
    """The key authenticates, the usage-plan key is said as there (its value left out), and the SQL gives the
    user 300000 ms when --statement-timeout-ms is not given."""
    name, tenants, _ = stack
    status, out, err = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}", "--json")
    assert status == 0, err
    made = json.loads(out)
    assert tenants.authenticate(made["api_key"]).tenant_id == acme
    assert (made["tenant_id"], made["tier"], made["usage_plan_key"]) == (acme, "standard", True)
    assert "usage_key" not in made and "generation" not in made
    assert made["warehouse_sql"] == [
        f'CREATE USER "tenant_{acme}" PASSWORD DISABLE;',
        f'ALTER USER "tenant_{acme}" SET statement_timeout TO 300000;',
    ]


def test_list_json_gives_every_tenant_with_its_usage_plan_key_said(local_aws, stack, acme):  # noqa: F811
    """Each tenant of the table, its usage-plan key said as there or not, its value left out."""
    name, tenants, _ = stack
    assert run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")[0] == 0
    tenants.create_tenant(acme + "k", db_user=f"tenant_{acme}k")  # no usage-plan key
    status, out, err = run(local_aws, name, "tenants", "list", "--json")
    assert status == 0, err
    listed = {tenant["tenant_id"]: tenant for tenant in json.loads(out)}
    assert set(listed) == {acme, acme + "k"}
    assert (listed[acme]["usage_plan_key"], listed[acme + "k"]["usage_plan_key"]) == (True, False)
    assert listed[acme]["db_user"] == f"tenant_{acme}" and "usage_key" not in listed[acme]


def test_show_and_keys_list_give_each_key_by_its_hash_start_and_issue_time(local_aws, stack, acme):  # noqa: F811
    """The lines an operator reads a hash from for keys revoke: one per key, under the tenant's line in show."""
    name, tenants, _ = stack
    assert run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")[0] == 0
    assert run(local_aws, name, "keys", "issue", acme)[0] == 0
    keys = tenants.list_keys(acme)
    lines = [f"{key.key_hash} ({key.hint}..., issued {key.created_at})" for key in keys]
    assert len(lines) == 2
    status, out, err = run(local_aws, name, "tenants", "show", acme)
    assert status == 0, err
    assert out.splitlines()[1:] == [f"  key {line}" for line in lines]
    status, out, err = run(local_aws, name, "keys", "list", acme)
    assert status == 0 and out.splitlines() == lines, err


def test_show_json_gives_the_tenant_as_list_does_with_its_keys_by_hash(local_aws, stack, acme):  # noqa: F811
    """``tenants show --json``: the tenant as ``list --json`` gives it, plus its keys (hashes, never a key)."""
    name, tenants, _ = stack
    status, out, err = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}", "--json")
    assert status == 0, err
    api_key = json.loads(out)["api_key"]
    status, out, err = run(local_aws, name, "tenants", "show", acme, "--json")
    assert status == 0, err
    shown = json.loads(out)
    listed = {
        tenant["tenant_id"]: tenant for tenant in json.loads(run(local_aws, name, "tenants", "list", "--json")[1])
    }
    assert {k: v for k, v in shown.items() if k != "keys"} == listed[acme]
    assert [key["key_hash"] for key in shown["keys"]] == [key.key_hash for key in tenants.list_keys(acme)]
    assert len(shown["keys"]) == 1 and api_key not in out


def test_a_key_another_operator_revoked_after_it_was_listed_is_said_gone_already(local_aws, stack, acme):  # noqa: F811
    """``keys revoke`` finds the key by its listing, and another operator revokes it before this command's delete:
    the command says the key is gone already and fails (1), and the tenant's other key is untouched."""
    name, tenants, _ = stack
    assert run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")[0] == 0
    assert run(local_aws, name, "keys", "issue", acme)[0] == 0
    first, second = tenants.list_keys(acme)

    def revoked_meanwhile(delete_item, kwargs):
        assert tenants.revoke_key_hash(acme, first.key_hash)  # the other operator, through a client of its own
        return delete_item(**kwargs)

    session = RacedSession(boto3.session.Session(region_name=local_aws.region), {"delete_item": revoked_meanwhile})
    status, out, err = run(local_aws, name, "keys", "revoke", acme, first.key_hash[:12], session=session)
    assert status == 1 and out == ""
    assert err == f"error: the key {first.key_hash} of tenant {acme!r} is gone already\n"
    assert [key.key_hash for key in tenants.list_keys(acme)] == [second.key_hash]


class RacedSession:
    """A boto3 session whose DynamoDB clients run ``faults`` (tests.fixtures.aws.Faulty) on the calls they name."""

    def __init__(self, session: boto3.session.Session, faults: dict) -> None:
        self._session = session
        self._faults = faults

    def client(self, service: str, **kwargs):
        client = self._session.client(service, **kwargs)
        if service != "dynamodb":
            return client
        faulty = Faulty(client)
        faulty.faults.update(self._faults)
        return faulty

    def __getattr__(self, name):
        return getattr(self._session, name)
