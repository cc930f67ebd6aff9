"""Provisioning a tenant and taking one away, as operators' tools run it (``python -m spectra.admin tenants``, and
``local.demo.add_tenant``, which also makes the tenant's database user on the local stack).

The service keeps a tenant in two places: its record and API keys (:class:`~spectra.tenants.TenantDirectory`), and
its API Gateway key in its tier's usage plans (:class:`~spectra.share.UsagePlans`, which the authorizer's
``usageIdentifierKey`` names). Each function asks what could refuse it before it makes anything, and orders its steps
so that a failure midway leaves nothing the same command, run again, trips over:

- :func:`onboard`: the usage-plan key (deleted again if a plan refuses it), then the record (the key is deleted again
  if the record is refused), then the tenant's first API key. A failure after the record leaves a tenant with no
  API key, which the error says (:class:`NotOnboarded`): issue one.
- :func:`offboard`: the usage-plan key first (the record names it until then), then the record with its keys, slots
  and waits, and an end for its webhook subscriptions (:meth:`~spectra.tenants.TenantDirectory.delete_tenant`).
- :func:`change_tier`: the key moves to the new tier's plans, then the record says so (refused, the key goes back to
  the tier the record names); a tenant without a key (made before usage plans, or its key deleted by hand) gets a
  new one, which its record then names (deleted again if the record is refused).

The warehouse side (the database user or secret, its grants, row-level security and statement timeout) is the
warehouse administrator's: README, Deploy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from spectra.errors import Conflict, NotFound, SpectraError
from spectra.identity import TenantIdentities
from spectra.share import UsagePlans
from spectra.tenants import Tenant, TenantDirectory


@dataclass(frozen=True)
class Onboarded:
    tenant: Tenant
    api_key: str  # in clear this once: the directory keeps its hash only


class NotOnboarded(SpectraError):
    """The tenant exists, without an API key: the operator issues one."""

    code = "tenant_without_key"


@dataclass(frozen=True)
class Offboarded:
    deleted: bool  # there was a tenant record to delete
    usage_key_deleted: bool  # and an API Gateway key of its, now deleted


def check_new(
    tenants: TenantDirectory,
    plans: UsagePlans,
    tenant_id: str,
    *,
    tier: str,
    identities: TenantIdentities | None = None,
    **attributes: Any,
) -> Tenant:
    """The tenant as it would be created, or what refuses it (ValueError: its fields, its tier, or an identity the
    stack's executor would refuse, ``identities`` when known; Conflict: the id is taken, or a database identity it
    names was another tenant's, a deleted one's included), asked before anything is made. ``attributes``:
    :meth:`TenantDirectory.create_tenant`'s."""
    tenant = Tenant.new(tenant_id, tier=tier, **attributes)
    TenantDirectory.refuse_system_schemas(tenant.owned_schemas)
    if identities is not None and (problem := identities.problem(db_user=tenant.db_user, secret_arn=tenant.secret_arn)):
        raise ValueError(problem)
    if tier not in plans.tiers:
        raise ValueError(f"no usage plan for tier {tier!r}; known tiers: {sorted(plans.tiers)}")
    if tenants.get(tenant_id) is not None:
        raise Conflict(f"tenant {tenant_id!r} already exists")
    for field_name in ("db_user", "secret_arn"):
        value = getattr(tenant, field_name)
        if value and (holder := tenants.identity_holder(field_name, value)) is not None:
            raise Conflict(
                f"the database identity {value} was given to tenant {holder!r} (maybe deleted since), and an identity "
                "serves one tenant, ever: give this tenant a new one"
            )
    return tenant


def onboard(
    tenants: TenantDirectory,
    plans: UsagePlans,
    tenant_id: str,
    *,
    tier: str,
    identities: TenantIdentities | None = None,
    **attributes: Any,
) -> Onboarded:
    """Create the tenant in ``tier`` (its API Gateway key in the tier's plans, its record) and issue its first API
    key. ``attributes``: :meth:`TenantDirectory.create_tenant`'s (``db_user`` or ``secret_arn``, its caps, its write
    grant), checked first (:func:`check_new`, with the stack's ``identities``)."""
    check_new(tenants, plans, tenant_id, tier=tier, identities=identities, **attributes)
    usage_key = plans.attach(tenant_id, tier)
    try:
        tenant = tenants.create_tenant(tenant_id, tier=tier, usage_key=usage_key, **attributes)
    except BaseException:
        _forget_key(tenants, plans, tenant_id, usage_key)
        raise
    try:
        return Onboarded(tenant, tenants.issue_key(tenant_id))
    except (ClientError, BotoCoreError) as exc:
        raise NotOnboarded(
            f"tenant {tenant_id!r} was created, but its first API key could not be issued ({exc}): issue one (keys "
            "issue); creating the tenant again is refused, and deleting it first would spend its database identity"
        ) from exc


def _forget_key(tenants: TenantDirectory, plans: UsagePlans, tenant_id: str, usage_key: str) -> None:
    """Delete the usage-plan key made for a record that was refused, unless the record was written after all (an
    answer lost on its way back, Ctrl-C after the write): then the record names it, and it stays."""
    with contextlib.suppress(ClientError, BotoCoreError):  # the refusal is what the caller needs to hear
        current = tenants.get(tenant_id)
        if current is None or current.usage_key != usage_key:
            plans.delete_key(tenant_id, usage_key)


def offboard(tenants: TenantDirectory, plans: UsagePlans, tenant_id: str) -> Offboarded:
    """Delete the tenant: its API Gateway key, then its record and keys (:meth:`TenantDirectory.delete_tenant`). Run
    again after a failure, it finishes what was left."""
    tenant = tenants.get(tenant_id)
    usage_key_deleted = bool(tenant and tenant.usage_key and plans.delete_key(tenant_id, tenant.usage_key))
    return Offboarded(deleted=tenants.delete_tenant(tenant_id), usage_key_deleted=usage_key_deleted)


def change_tier(tenants: TenantDirectory, plans: UsagePlans, tenant_id: str, tier: str) -> Tenant:
    """Move the tenant to ``tier``: its API Gateway key to the tier's plans (its request rate and quota), then its
    record, or the key back where the record says it is. NotFound for an unknown tenant, ValueError for an unknown
    tier."""
    tenant = tenants.get(tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id!r} not found")
    if tier not in plans.tiers:
        raise ValueError(f"no usage plan for tier {tier!r}; known tiers: {sorted(plans.tiers)}")
    if tenant.usage_key and plans.move(tenant_id, tenant.usage_key, tier):
        try:
            return tenants.update_tenant(tenant_id, tier=tier)
        except BaseException:
            # back to the tier its record names, so that the record says where its key is
            with contextlib.suppress(ClientError, BotoCoreError, ValueError):
                plans.move(tenant_id, tenant.usage_key, tenant.tier)
            raise
    usage_key = plans.attach(tenant_id, tier)
    try:
        return tenants.update_tenant(tenant_id, tier=tier, usage_key=usage_key)
    except BaseException:
        _forget_key(tenants, plans, tenant_id, usage_key)
        raise
