"""Usage plan look-up behaviour no test held before (found by mutation testing spectra/share.py): the local stack
finds its tiers' plans by name (``UsagePlans.by_name``, ``<stack>-<tier>`` as template.yaml names them), and a tenant
is attached to its own stack's plan of its tier only. On API Gateway in moto."""

from __future__ import annotations

import pytest

from local.aws import LocalAws
from spectra.share import UsagePlans

pytestmark = pytest.mark.integration


def test_a_stacks_plans_are_found_by_their_names_and_a_tenant_is_attached_to_its_tiers(
    local_aws: LocalAws, unique_name
):
    """Plans of another stack, or named without a stack, are not the stack's; every tier of the stack is found."""
    client = local_aws.client("apigateway")
    ids = {
        name: client.create_usage_plan(name=name)["id"]
        for name in (f"{unique_name}-standard", f"{unique_name}-premium", f"other{unique_name}-standard", "loose")
    }
    plans = UsagePlans.by_name(client, [unique_name])
    assert plans.tiers == {"standard", "premium"}
    plans.attach("acme", "standard")
    keyed = {name for name, plan_id in ids.items() if client.get_usage_plan_keys(usagePlanId=plan_id)["items"]}
    assert keyed == {f"{unique_name}-standard"}


def test_a_move_of_a_key_that_does_not_exist_is_false_and_attaches_nothing(local_aws: LocalAws, unique_name):
    """A tenant whose key was deleted by hand: the move says False (the caller then issues a new key), and no plan
    is changed."""
    client = local_aws.client("apigateway")
    ids = [client.create_usage_plan(name=f"{unique_name}-{tier}")["id"] for tier in ("standard", "premium")]
    plans = UsagePlans.by_name(client, [unique_name])
    assert plans.move("acme", "spu_" + unique_name, "premium") is False
    assert all(client.get_usage_plan_keys(usagePlanId=plan_id)["items"] == [] for plan_id in ids)
