"""python -m spectra.admin tenants / keys against moto: a deployed stack found through its CloudFormation outputs,
and what each command refuses leaving nothing behind (no tenant record, no API Gateway key), so the corrected
command works. The whole stack's use of them (a created tenant querying, a tier move, a delete) is
tests/e2e/test_tenant_admin.py."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest

from local.aws import LocalAws, ServiceFault, dynamodb_error
from spectra import admin
from spectra.tenants import TenantDirectory
from tests.fixtures.dynamodb import Conflicting, cancelled

pytestmark = pytest.mark.integration

TIERS = ("basic", "standard", "premium")


@pytest.fixture
def stack(local_aws: LocalAws):
    """A CloudFormation stack in moto with the outputs the commands read, as template.yaml gives them: the tenants
    table, and the usage plans' ids by tier (the plans made beside it: moto's CloudFormation makes none)."""
    name = "ten" + uuid.uuid4().hex[:8]
    apigateway = local_aws.client("apigateway")
    plan_ids = {tier: apigateway.create_usage_plan(name=f"{name}-{tier}")["id"] for tier in TIERS}
    template = {
        "Parameters": {  # a provisioned cluster's stack, as template.yaml's parameters say (the prefix its default)
            "RedshiftClusterId": {"Type": "String", "Default": ""},
            "RedshiftWorkgroup": {"Type": "String", "Default": ""},
            "TenantDbUserPrefix": {"Type": "String", "Default": "tenant_"},
        },
        "Resources": {
            "TenantsTable": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "TableName": f"{name}-tenants",
                    "BillingMode": "PAY_PER_REQUEST",
                    "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                },
            }
        },
        "Outputs": {
            "TenantsTableName": {"Value": {"Ref": "TenantsTable"}},
            "UsagePlanIds": {"Value": json.dumps(plan_ids)},
        },
    }
    local_aws.client("cloudformation").create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "RedshiftClusterId", "ParameterValue": "warehouse"}],
    )
    return name, TenantDirectory(local_aws.client("dynamodb"), f"{name}-tenants"), plan_ids


@pytest.fixture
def acme() -> str:
    """A tenant id no other test uses: moto's API Gateway keys outlive each test's stack."""
    return "acme" + uuid.uuid4().hex[:8]


def run(local_aws: LocalAws, name: str, *argv: str, session=None) -> tuple[int, str, str]:
    out = io.StringIO()
    err = io.StringIO()
    session = session or boto3.session.Session(region_name=local_aws.region)
    original, admin.sys.stderr = admin.sys.stderr, err
    try:
        status = admin.main(["--stack", name, *argv], session=session, out=out)
    finally:
        admin.sys.stderr = original
    return status, out.getvalue(), err.getvalue()


def api_keys(local_aws: LocalAws, tenant_id: str) -> list[dict]:
    """The tenant's API Gateway keys, with their values (nameQuery matches the start of a name: the rest are
    other tenants')."""
    found = local_aws.client("apigateway").get_api_keys(nameQuery=f"spectra-tenant-{tenant_id}", includeValues=True)
    return [key for key in found["items"] if key["name"] == f"spectra-tenant-{tenant_id}"]


def test_a_tenant_created_through_the_stack_outputs_is_in_its_tiers_plan_with_a_working_key(local_aws, stack, acme):
    name, tenants, plan_ids = stack
    status, out, _ = run(
        local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}", "--tier", "standard"
    )
    assert status == 0, out
    api_key = out.split("API key (shown this once): ", 1)[1].split()[0]
    assert tenants.authenticate(api_key).tenant_id == acme
    assert f'CREATE USER "tenant_{acme}" PASSWORD DISABLE;' in out
    (key,) = api_keys(local_aws, acme)
    plans = local_aws.client("apigateway").get_usage_plans(keyId=key["id"])["items"]
    assert [plan["id"] for plan in plans] == [plan_ids["standard"]]
    status, out, _ = run(local_aws, name, "tenants", "list")
    assert status == 0 and f"{acme}: active, tier standard, user tenant_{acme}, max running default" in out


def test_a_schema_named_twice_is_owned_and_made_once(local_aws, stack, acme):
    """Kept twice, the tenant's record carried the schema twice and the printed SQL made it twice, which stops the
    administrator's script at "schema already exists" (ops review)."""
    name, tenants, _ = stack
    argv = ["--db-user", f"tenant_{acme}", "--owned-schema", "s1", "--owned-schema", "s2", "--owned-schema", "s1"]
    status, out, _ = run(local_aws, name, "tenants", "create", acme, *argv, "--json")
    assert status == 0, out
    made = json.loads(out)
    assert made["owned_schemas"] == ["s1", "s2"]
    assert [sql for sql in made["warehouse_sql"] if sql.startswith("CREATE SCHEMA")] == [
        f'CREATE SCHEMA "s1" AUTHORIZATION "tenant_{acme}";',
        f'CREATE SCHEMA "s2" AUTHORIZATION "tenant_{acme}";',
    ]
    assert tenants.get(acme).owned_schemas == ["s1", "s2"]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--tier", "gold"], "no usage plan for tier 'gold'"),
        (["--owned-schema", "Acme-Data"], "owned_schemas.0: String should match pattern"),
        (["--owned-schema", "pg_temp"], "owned_schemas names system schemas"),
    ],
)
def test_a_refused_create_leaves_no_record_and_no_api_gateway_key(local_aws, stack, acme, argv, said):
    name, tenants, _ = stack
    status, out, err = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}", *argv)
    assert (status, out) == (1, "") and said in err, err
    assert tenants.get(acme) is None and api_keys(local_aws, acme) == []
    status, _, err = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")
    assert status == 0, err


@pytest.mark.parametrize("cap", ["--max-running", "--max-waits"])
def test_a_cap_past_its_bound_is_refused_at_once_not_with_a_traceback(local_aws, stack, acme, cap):
    """A 39-digit cap reached DynamoDB, whose decimal.Rounded came out as a traceback (the operations review)."""
    name, tenants, _ = stack
    with pytest.raises(SystemExit) as exited:
        run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}", cap, "1" + "0" * 40)
    assert exited.value.code == 2 and tenants.get(acme) is None
    status, _, err = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}", cap, "10000")
    assert status == 0, err
    with pytest.raises(SystemExit) as exited:
        run(local_aws, name, "tenants", "update", acme, cap, "10001")
    assert exited.value.code == 2


def test_a_statement_timeout_the_warehouse_would_refuse_is_refused_at_once(local_aws, stack, acme):
    """statement_timeout is a 32-bit count of milliseconds: a larger one was printed in the administrator's SQL.
    argparse refuses it (exit 2: "... is not between 0 and 2147483647")."""
    name, tenants, _ = stack
    create = ["tenants", "create", acme, "--db-user", f"tenant_{acme}", "--statement-timeout-ms"]
    with pytest.raises(SystemExit) as exited:
        run(local_aws, name, *create, "2147483648")
    assert exited.value.code == 2 and tenants.get(acme) is None
    status, out, err = run(local_aws, name, *create, "2147483647")
    assert status == 0 and "SET statement_timeout TO 2147483647" in out, err


@pytest.mark.parametrize(
    ("identity", "said"),
    [
        (["--db-user", "awsuser"], "database user 'awsuser' is not a tenant user of this stack"),
        (["--db-user", "tenant_"], "database user 'tenant_' is not a tenant user of this stack"),
        (["--db-user", "Tenant_x"], "their names start with 'tenant_' (TenantDbUserPrefix; case matters)"),
        (["--secret-arn", "arn:aws:secretsmanager:us-east-1:1:secret:spectra/tenants/x"], "(--db-user)"),
    ],
)
def test_an_identity_the_executor_would_refuse_refuses_the_tenant_before_anything_is_made(
    local_aws, stack, acme, identity, said
):
    """(Found by the operations review.) ``--db-user awsuser`` made the tenant, printed SQL that would give the
    warehouse's administrator a statement timeout, spent the identity for good, and every job of the tenant failed
    identity_refused. The stack's parameters say what its executor takes: a cluster's users under TenantDbUserPrefix."""
    name, tenants, _ = stack
    status, out, err = run(local_aws, name, "tenants", "create", acme, *identity)
    assert (status, out) == (1, "") and said in err, err
    assert tenants.get(acme) is None and api_keys(local_aws, acme) == []
    assert tenants.identity_holder("db_user", "awsuser") is None  # not spent
    status, _, err = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")
    assert status == 0, err


def test_an_id_taken_or_a_deleted_tenants_user_is_refused_before_a_key_is_made(local_aws, stack, acme):
    name, tenants, _ = stack
    assert run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")[0] == 0
    status, _, err = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}_2")
    assert status == 1 and f"tenant '{acme}' already exists" in err
    assert len(api_keys(local_aws, acme)) == 1

    status, out, _ = run(local_aws, name, "tenants", "delete", acme, "--yes")
    assert status == 0 and "and its usage-plan key" in out
    assert api_keys(local_aws, acme) == []
    status, _, err = run(local_aws, name, "tenants", "create", acme + "x", "--db-user", f"tenant_{acme}")
    assert status == 1 and f"was given to tenant '{acme}'" in err
    assert api_keys(local_aws, acme + "x") == [] and tenants.get(acme + "x") is None
    status, _, err = run(local_aws, name, "tenants", "delete", acme, "--yes")  # nothing left to delete
    assert status == 1 and f"tenant '{acme}' not found" in err


def test_a_delete_that_meets_a_jobs_transaction_on_the_tenants_slots_is_tried_again(
    local_aws, stack, acme, monkeypatch
):
    """A tenant's delete is one transaction with its slots item, which its jobs' ends write in transactions of their
    own: DynamoDB cancels the one that meets another (TransactionConflict), botocore does not try it again, and the
    delete was an error the operator had to repeat while the tenant's last jobs ended."""
    name, tenants, _ = stack
    assert run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")[0] == 0
    proxy = Conflicting(local_aws.client("dynamodb").meta.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
    try:
        proxy.script("TransactWriteItems", cancelled("None", "TransactionConflict", "None"), times=1)
        status, _, err = run(local_aws, name, "tenants", "delete", acme, "--yes")
    finally:
        proxy.close()
    assert (status, err) == (0, "") and proxy.seen["TransactWriteItems"] == 2
    assert tenants.get(acme) is None


def test_a_tenant_without_a_usage_plan_key_gets_one_with_its_tier(local_aws, stack, acme):
    """A tenant made before usage plans (or its key deleted by hand) is answered 403 by API Gateway: tenants tier
    gives it a key in the tier's plan, and its record the key's value."""
    name, tenants, plan_ids = stack
    tenants.create_tenant(acme, db_user=f"tenant_{acme}")
    status, out, _ = run(local_aws, name, "tenants", "show", acme)
    assert status == 0 and "no usage-plan key" in out
    assert run(local_aws, name, "tenants", "tier", acme, "premium")[0] == 0
    (key,) = api_keys(local_aws, acme)
    assert tenants.get(acme).usage_key == key["value"]
    plans = local_aws.client("apigateway").get_usage_plans(keyId=key["id"])["items"]
    assert [plan["id"] for plan in plans] == [plan_ids["premium"]]
    assert (tenants.get(acme).tier, run(local_aws, name, "tenants", "tier", acme, "gold")[0]) == ("premium", 1)


def test_keys_are_revoked_by_the_start_of_their_hash_and_only_one_at_a_time(local_aws, stack, acme):
    name, tenants, _ = stack
    assert run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")[0] == 0
    second = run(local_aws, name, "keys", "issue", acme)[1].rsplit(" ", 1)[-1].strip()
    keys = json.loads(run(local_aws, name, "keys", "list", acme, "--json")[1])
    assert len(keys) == 2
    status, _, err = run(local_aws, name, "keys", "revoke", acme, "")
    assert status == 1 and f"no key of tenant '{acme}'" in err
    status, _, err = run(local_aws, name, "keys", "revoke", acme, "zz")
    assert status == 1 and "no key" in err
    assert run(local_aws, name, "tenants", "create", acme + "x", "--db-user", f"tenant_{acme}x")[0] == 0
    status, _, err = run(local_aws, name, "keys", "revoke", acme + "x", keys[0]["key_hash"])  # not its key
    assert status == 1 and f"no key of tenant '{acme}x'" in err
    wanted = next(key for key in keys if key["hint"] == second[:8])
    status, out, _ = run(local_aws, name, "keys", "revoke", acme, wanted["key_hash"][:10].upper())
    assert status == 0 and wanted["key_hash"] in out
    assert [key["key_hash"] for key in json.loads(run(local_aws, name, "keys", "list", acme, "--json")[1])] == [
        next(key["key_hash"] for key in keys if key is not wanted)
    ]
    with pytest.raises(Exception, match="invalid API key"):
        tenants.authenticate(second)


def test_a_stack_that_is_not_one_of_ours_is_said_so(local_aws):
    name = "other" + uuid.uuid4().hex[:8]
    template = {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}
    local_aws.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))
    status, _, err = run(local_aws, name, "tenants", "list")
    assert status == 1 and "has no output TenantsTableName" in err


@contextmanager
def failing(local_aws: LocalAws, fault: ServiceFault) -> Iterator[None]:
    """moto answering ``fault``'s error while the block runs."""
    local_aws.fail(fault)
    try:
        yield
    finally:
        local_aws.recover()


def plan_refuses(plan_id: str) -> ServiceFault:
    """API Gateway's 404 for a plan deleted by hand."""
    body = json.dumps({"message": "Invalid Usage Plan ID specified"})
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "NotFoundException"}
    return ServiceFault("apigateway", 404, body, headers, until=time.time() + 60, resource=plan_id)


def dynamodb_fails(resource: str) -> ServiceFault:
    """DynamoDB's 500 for the requests naming ``resource``."""
    return dynamodb_error("InternalServerError", status=500, seconds=60, resource=resource)


def test_a_tier_move_the_new_plan_refuses_leaves_the_key_in_its_old_plan(local_aws, stack, acme):
    """API Gateway takes a key in one plan per stage, so a move leaves the old plan first; refused by the new one,
    the key goes back to the old plan and the record keeps its tier, so the tenant is served as before."""
    name, tenants, plan_ids = stack
    apigateway = local_aws.client("apigateway")
    assert run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")[0] == 0
    with failing(local_aws, plan_refuses(plan_ids["premium"])):
        status, _, err = run(local_aws, name, "tenants", "tier", acme, "premium")
    assert status == 1 and "Invalid Usage Plan ID" in err
    (key,) = api_keys(local_aws, acme)
    assert [plan["id"] for plan in apigateway.get_usage_plans(keyId=key["id"])["items"]] == [plan_ids["standard"]]
    assert tenants.get(acme).tier == "standard"
    assert run(local_aws, name, "tenants", "tier", acme, "premium")[0] == 0  # once the plan takes it
    assert [plan["id"] for plan in apigateway.get_usage_plans(keyId=key["id"])["items"]] == [plan_ids["premium"]]


def test_a_plan_that_refuses_a_new_key_leaves_no_key_behind(local_aws, stack, acme):
    """Found by the diff review: the key was made, then refused by the plan, and stayed, named by no record (each
    retry made one more, and no delete could find them)."""
    name, tenants, plan_ids = stack
    keyless = acme + "k"
    tenants.create_tenant(keyless, db_user=f"tenant_{keyless}")
    with failing(local_aws, plan_refuses(plan_ids["premium"])):
        created = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}", "--tier", "premium")
        moved = run(local_aws, name, "tenants", "tier", keyless, "premium")
    assert created[0] == 1 and "Invalid Usage Plan ID" in created[2]
    assert tenants.get(acme) is None and api_keys(local_aws, acme) == []
    assert moved[0] == 1 and api_keys(local_aws, keyless) == [] and tenants.get(keyless).usage_key is None
    assert run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}", "--tier", "premium")[0] == 0
    assert len(api_keys(local_aws, acme)) == 1


def test_a_record_refused_after_its_key_was_made_takes_the_key_along(local_aws, stack, acme):
    """DynamoDB failing the record's write (the one request naming created_at; the checks before it read only)."""
    name, tenants, _ = stack
    with failing(local_aws, dynamodb_fails("created_at")):
        status, _, err = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")
    assert status == 1 and "InternalServerError" in err
    assert tenants.get(acme) is None and api_keys(local_aws, acme) == []


def test_a_first_key_that_cannot_be_issued_is_said_and_issued_after(local_aws, stack, acme):
    """Found by the diff review: the tenant was made and only a DynamoDB error was shown; the same create was then
    refused (the id taken), and delete then create was refused too (its database user spent)."""
    name, tenants, _ = stack
    with failing(local_aws, dynamodb_fails("key_hashes")):
        status, _, err = run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")
    assert status == 1 and f"tenant '{acme}' was created, but its first API key could not be issued" in err, err
    assert tenants.get(acme) is not None and len(api_keys(local_aws, acme)) == 1
    status, out, _ = run(local_aws, name, "keys", "issue", acme)
    assert status == 0 and tenants.authenticate(out.rsplit(" ", 1)[-1].strip()).tenant_id == acme


def test_a_tier_move_whose_record_cannot_be_written_puts_the_key_back(local_aws, stack, acme):
    """Found by the last review: the key went to the new tier's plan while the record kept the old tier, and nothing
    said so. The record's write (the one DynamoDB request naming the attribute tier) fails: the key goes back."""
    name, tenants, plan_ids = stack
    apigateway = local_aws.client("apigateway")
    assert run(local_aws, name, "tenants", "create", acme, "--db-user", f"tenant_{acme}")[0] == 0
    with failing(local_aws, dynamodb_fails("tier")):
        status, _, err = run(local_aws, name, "tenants", "tier", acme, "premium")
    assert status == 1 and "InternalServerError" in err
    (key,) = api_keys(local_aws, acme)
    assert [plan["id"] for plan in apigateway.get_usage_plans(keyId=key["id"])["items"]] == [plan_ids["standard"]]
    assert tenants.get(acme).tier == "standard"
