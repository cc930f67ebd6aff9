"""``python -m spectra.admin tenants`` / ``keys`` on the whole stack, reached through its state file as an operator
reaches ``make run``'s: a tenant it creates (with the database user its printed SQL asks for) queries through the
API with the key it printed; a second key works beside the first until revoked; a tier move puts the tenant's
API Gateway key in the new tier's plan, and only there; deactivating refuses the keys; deleting the tenant takes its
API Gateway key along."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import boto3
import pytest

from local.aws import LocalAws
from local.runner.stack import LocalStack
from spectra import admin
from spectra.ports import get_ports
from tests.e2e.test_identity import assert_refused_within_the_cache
from tests.fixtures.stack import ApiClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def state_file(spectra_stack: LocalStack, local_aws: LocalAws, tmp_path: Path) -> Path:
    """The parts of a local stack's state file (local/runner/state.py) the tenant commands read."""
    path = tmp_path / "stack.json"
    resources = {
        name: {"type": "AWS::DynamoDB::Table", "physical_id": spectra_stack.physical_id(name), "status": "created"}
        for name in ("TenantsTable", "SubscriptionsTable")
    }
    state = {
        "stack_name": spectra_stack.stack_name,
        "region": local_aws.region,
        "aws_endpoint_url": local_aws.endpoint_url,
        "resources": resources,
    }
    path.write_text(json.dumps(state))
    return path


def admin_command(state_file: Path, *argv: str) -> str:
    out = io.StringIO()
    status = admin.main(["--state", str(state_file), *argv], session=boto3.session.Session(), out=out)
    assert status == 0, out.getvalue()
    return out.getvalue()


def plans_of(local_aws: LocalAws, stack_name: str, tenant_id: str) -> list[str]:
    """The tiers whose plans hold the tenant's API Gateway key (none when it has no key)."""
    apigateway = local_aws.client("apigateway")
    keys = apigateway.get_api_keys(nameQuery=f"spectra-tenant-{tenant_id}")["items"]
    tiers = []
    for key in keys:
        for plan in apigateway.get_usage_plans(keyId=key["id"])["items"]:
            tiers.append(plan["name"].removeprefix(f"{stack_name}-"))
    return sorted(tiers)


def test_a_tenant_made_by_the_admin_command_queries_and_is_changed_and_deleted_by_it(
    spectra_stack, local_aws, warehouse, state_file
):
    tenant_id = "adm" + uuid.uuid4().hex[:10]
    db_user = f"tenant_{tenant_id}"
    made = json.loads(
        admin_command(state_file, "tenants", "create", tenant_id, "--db-user", db_user, "--tier", "basic", "--json")
    )
    assert (made["tenant_id"], made["tier"], made["db_user"], made["usage_plan_key"]) == (
        tenant_id,
        "basic",
        db_user,
        True,
    )
    assert made["warehouse_sql"][0] == f'CREATE USER "{db_user}" PASSWORD DISABLE;'
    assert "statement_timeout TO 300000" in made["warehouse_sql"][1]
    warehouse.run(f'CREATE USER "{db_user}"')  # the printed SQL, in the emulator's PostgreSQL dialect
    client = ApiClient(spectra_stack.api_url, made["api_key"], tenant_id, db_user)
    job = client.wait(client.submit("select current_user as who")["job_id"])
    assert job["status"] == "COMPLETED", job
    rows = client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()["rows"]
    assert rows == [[db_user]]  # it runs as its own database user
    assert plans_of(local_aws, spectra_stack.stack_name, tenant_id) == ["basic"]

    # a second key works beside the first, until revoked by the start of its hash
    second = admin_command(state_file, "keys", "issue", tenant_id).rsplit(" ", 1)[-1].strip()
    other = ApiClient(spectra_stack.api_url, second, tenant_id, db_user)
    assert other.request("GET", "/v1/jobs").status_code == 200
    keys = json.loads(admin_command(state_file, "keys", "list", tenant_id, "--json"))
    assert len(keys) == 2 and keys[1]["hint"] == second[:8]
    admin_command(state_file, "keys", "revoke", tenant_id, keys[1]["key_hash"][:12])
    assert_refused_within_the_cache(other, time.monotonic())
    assert client.request("GET", "/v1/jobs").status_code == 200

    # another tier: its key leaves the old plan for the new one
    admin_command(state_file, "tenants", "tier", tenant_id, "premium")
    assert plans_of(local_aws, spectra_stack.stack_name, tenant_id) == ["premium"]
    assert get_ports().tenants.get(tenant_id).tier == "premium"
    assert client.wait(client.submit("select 1 as one")["job_id"])["status"] == "COMPLETED"

    admin_command(state_file, "tenants", "update", tenant_id, "--max-running", "2")
    shown = json.loads(admin_command(state_file, "tenants", "show", tenant_id, "--json"))
    assert shown["max_running_statements"] == 2 and len(shown["keys"]) == 1
    assert "usage_key" not in shown and "generation" not in shown

    admin_command(state_file, "tenants", "deactivate", tenant_id)
    assert_refused_within_the_cache(client, time.monotonic())
    admin_command(state_file, "tenants", "activate", tenant_id)
    assert client.wait(client.submit("select 2 as two")["job_id"])["status"] == "COMPLETED"

    listed = json.loads(admin_command(state_file, "tenants", "list", "--json"))
    assert tenant_id in [tenant["tenant_id"] for tenant in listed]

    out = admin_command(state_file, "tenants", "delete", tenant_id, "--yes")
    assert "and its usage-plan key" in out
    assert plans_of(local_aws, spectra_stack.stack_name, tenant_id) == []  # its API Gateway key is gone
    assert get_ports().tenants.get(tenant_id) is None
    assert_refused_within_the_cache(client, time.monotonic())
