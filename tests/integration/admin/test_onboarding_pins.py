"""Provisioning and taking away a tenant (spectra/onboarding.py), the behaviour no test held before (found by mutation
testing spectra/onboarding.py): a tier change for a tenant that does not exist, or for a keyless tenant whose record
then refuses the new key; a record written although its answer was lost keeps the usage-plan key it names; a first
API key that cannot be issued leaves a tenant whose error says so; and what a delete says it deleted. The directory
and the usage plans are the real ones on moto's DynamoDB and API Gateway (the test process's moto server, with a
tenants table and usage plans of each test's own); failures come through tests/fixtures/aws.py's Faulty client."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from spectra import onboarding
from spectra.errors import NotFound
from spectra.share import UsagePlans
from spectra.tenants import TenantDirectory
from tests.fixtures.aws import Faulty, table_from_template

pytestmark = pytest.mark.integration


@pytest.fixture
def aws(local_aws):
    """A tenants table (as template.yaml shapes it) and a usage plan per tier of this test's own: ``(dynamodb,
    apigateway, plan ids by tier, table name, ids of the keys made before it)``; ``dynamodb`` is a Faulty client,
    failing the calls a test names. API keys are the account's (moto's, shared by the process's tests, one at a
    time): a key made before the test is none of its."""
    apigateway = local_aws.client("apigateway")
    plans = f"onboarding-pins-{uuid.uuid4().hex[:8]}"
    plan_ids = {tier: apigateway.create_usage_plan(name=f"{plans}-{tier}")["id"] for tier in ("standard", "premium")}
    before = {key["id"] for page in apigateway.get_paginator("get_api_keys").paginate() for key in page["items"]}
    with table_from_template(local_aws, "TenantsTable", "onboarding-pins-") as (dynamodb, table):
        yield Faulty(dynamodb), apigateway, plan_ids, table, before


def _directory(aws) -> TenantDirectory:
    return TenantDirectory(aws[0], aws[3])


def _plans(aws) -> UsagePlans:
    return UsagePlans(aws[1], aws[2])


def _keys(aws, tenant_id: str) -> list[dict]:
    """The tenant's API Gateway keys, with their values and the plans each is in."""
    apigateway = aws[1]
    pages = apigateway.get_paginator("get_api_keys").paginate(
        nameQuery=f"spectra-tenant-{tenant_id}", includeValues=True
    )
    keys = [key for page in pages for key in page["items"] if key["id"] not in aws[4]]
    return [
        {"value": key["value"], "plans": sorted(p["id"] for p in apigateway.get_usage_plans(keyId=key["id"])["items"])}
        for key in keys
        if key["name"] == f"spectra-tenant-{tenant_id}"
    ]


def _refused(operation: str):
    def fault(real, kwargs):
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "refused"}}, operation)

    return fault


def test_a_tier_change_for_a_tenant_that_does_not_exist_is_not_found_and_makes_no_key(aws):
    """``tenants tier ghost premium`` is a NotFound naming the tenant (an exit 1 saying so), not a crash on a missing
    record, and no API Gateway key is made for an id no record names."""
    with pytest.raises(NotFound, match="tenant 'ghost' not found"):
        onboarding.change_tier(_directory(aws), _plans(aws), "ghost", "premium")
    assert _keys(aws, "ghost") == []


def test_a_keyless_tenants_tier_change_whose_record_is_refused_takes_the_new_key_away(aws):
    """A tenant without a usage-plan key gets a new one in the tier's plan; when its record then refuses the change,
    the refusal is raised, the record is as it was and the new key is deleted: no key nobody names is left behind, and
    the same command, run again, works."""
    tenants = _directory(aws)
    tenants.create_tenant("acme", db_user="tenant_acme", tier="standard")
    aws[0].faults = {"update_item": _refused("UpdateItem"), "transact_write_items": _refused("TransactWriteItems")}
    with pytest.raises(ClientError, match="refused"):
        onboarding.change_tier(tenants, _plans(aws), "acme", "premium")
    assert (tenants.get("acme").tier, tenants.get("acme").usage_key, _keys(aws, "acme")) == ("standard", None, [])

    aws[0].faults = {}
    moved = onboarding.change_tier(tenants, _plans(aws), "acme", "premium")
    assert _keys(aws, "acme") == [{"value": moved.usage_key, "plans": [aws[2]["premium"]]}]
    assert tenants.get("acme").tier == "premium"


def test_a_record_written_although_its_answer_was_lost_keeps_the_key_it_names(aws):
    """The record's write reaches DynamoDB and its answer is lost: the error is raised, but the usage-plan key the
    record names stays in the tier's plan (deleting it would leave a tenant API Gateway answers 403)."""
    tenants = _directory(aws)

    def lost(real, kwargs):
        real(**kwargs)
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "answer lost"}}, "TransactWriteItems")

    aws[0].faults = {"transact_write_items": lost}
    with pytest.raises(ClientError, match="answer lost"):
        onboarding.onboard(tenants, _plans(aws), "acme", tier="standard", db_user="tenant_acme")
    record = tenants.get("acme")
    assert record is not None and record.usage_key.startswith("spu_")
    assert _keys(aws, "acme") == [{"value": record.usage_key, "plans": [aws[2]["standard"]]}]


def test_a_record_refused_takes_its_usage_plan_key_along(aws):
    """The record's write refused (nothing written): the refusal is raised and the key made for it is deleted."""
    tenants = _directory(aws)
    aws[0].faults = {"transact_write_items": _refused("TransactWriteItems")}
    with pytest.raises(ClientError, match="refused"):
        onboarding.onboard(tenants, _plans(aws), "acme", tier="standard", db_user="tenant_acme")
    assert (tenants.get("acme"), _keys(aws, "acme")) == (None, [])


def test_a_first_api_key_that_cannot_be_issued_leaves_a_tenant_the_error_says_to_issue_one(aws):
    """The tenant is made (record and usage-plan key) and its key's write fails: NotOnboarded (code
    tenant_without_key) says the tenant was created and to issue a key, naming the cause; the tenant is kept."""
    tenants = _directory(aws)
    aws[0].faults = {"put_item": _refused("PutItem")}
    with pytest.raises(onboarding.NotOnboarded) as raised:
        onboarding.onboard(tenants, _plans(aws), "acme", tier="standard", db_user="tenant_acme")
    assert raised.value.code == "tenant_without_key"
    message = str(raised.value)
    assert message.startswith("tenant 'acme' was created, but its first API key could not be issued (")
    assert "refused" in message and "issue one (keys issue)" in message
    record = tenants.get("acme")
    assert _keys(aws, "acme") == [{"value": record.usage_key, "plans": [aws[2]["standard"]]}]


def test_a_delete_says_what_it_deleted(aws):
    """A tenant with its usage-plan key: both deleted; a tenant without one: its record only; no tenant: nothing."""
    tenants, plans = _directory(aws), _plans(aws)
    onboarding.onboard(tenants, plans, "acme", tier="standard", db_user="tenant_acme")
    tenants.create_tenant("keyless", db_user="tenant_keyless", tier="standard")

    assert onboarding.offboard(tenants, plans, "acme") == onboarding.Offboarded(deleted=True, usage_key_deleted=True)
    assert (tenants.get("acme"), _keys(aws, "acme")) == (None, [])
    assert onboarding.offboard(tenants, plans, "keyless") == onboarding.Offboarded(
        deleted=True, usage_key_deleted=False
    )
    assert onboarding.offboard(tenants, plans, "ghost") == onboarding.Offboarded(deleted=False, usage_key_deleted=False)


def test_a_system_schema_is_refused_before_any_api_gateway_key_is_made(aws):
    """An owned schema pg_... is refused by check_new itself, so ``local.demo.add_tenant`` (which asks check_new
    before it makes the database user) and ``tenants create`` make nothing: no API Gateway key is ever created, even
    for a moment, and no record is written."""
    made = []
    apigateway = Faulty(aws[1])
    apigateway.faults = {"create_api_key": lambda real, kwargs: made.append(kwargs["name"]) or real(**kwargs)}
    plans, tenants = UsagePlans(apigateway, aws[2]), _directory(aws)
    with pytest.raises(ValueError, match="owned_schemas names system schemas, which no tenant may own: pg_temp"):
        onboarding.check_new(tenants, plans, "acme", tier="standard", db_user="tenant_acme", owned_schemas=["pg_temp"])
    with pytest.raises(ValueError, match="system schemas"):
        onboarding.onboard(tenants, plans, "acme", tier="standard", db_user="tenant_acme", owned_schemas=["pg_temp"])
    assert (made, tenants.get("acme"), _keys(aws, "acme")) == ([], None, [])


def test_check_new_gives_the_tenant_as_it_would_be_created_and_writes_nothing(aws):
    """A caller asking first (a dry run) gets the tenant as onboard would create it: its id, tier, identity and caps,
    no usage-plan key yet; nothing is written."""
    tenants = _directory(aws)
    tenant = onboarding.check_new(
        tenants, _plans(aws), "acme", tier="premium", db_user="tenant_acme", max_running_statements=3
    )
    assert (tenant.tenant_id, tenant.tier, tenant.db_user, tenant.max_running_statements, tenant.usage_key) == (
        "acme",
        "premium",
        "tenant_acme",
        3,
        None,
    )
    assert (tenants.get("acme"), _keys(aws, "acme")) == (None, [])


def test_a_tier_move_whose_record_is_refused_raises_the_refusal_with_the_key_back_in_its_old_plan(aws):
    """A tenant with a key: the key moves to the new tier's plan, the record's write is refused. The caller hears the
    refusal (not a tenant returned as if moved), the key is back in its old tier's plan and the record keeps it."""
    tenants, plans = _directory(aws), _plans(aws)
    made = onboarding.onboard(tenants, plans, "acme", tier="standard", db_user="tenant_acme").tenant

    def once(real, kwargs):  # the first write refused, any later one taken
        aws[0].faults = {}
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "refused"}}, "UpdateItem")

    aws[0].faults = {"update_item": once, "transact_write_items": once}
    with pytest.raises(ClientError, match="refused"):
        onboarding.change_tier(tenants, plans, "acme", "premium")
    assert tenants.get("acme").tier == "standard"
    assert _keys(aws, "acme") == [{"value": made.usage_key, "plans": [aws[2]["standard"]]}]
