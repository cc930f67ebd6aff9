"""Operator commands for tenants and their API keys (``python -m spectra.admin tenants ...`` / ``keys ...``):

    tenants list [--json]
    tenants show TENANT [--json]
    tenants create TENANT (--db-user NAME | --secret-arn ARN) [--tier TIER] [--max-running N] [--max-waits N]
                          [--owned-schema SCHEMA ...] [--statement-timeout-ms MS] [--json]
    tenants update TENANT [--max-running N|default] [--max-waits N|default]
    tenants tier TENANT TIER
    tenants deactivate TENANT | activate TENANT
    tenants delete TENANT --yes
    keys issue TENANT | keys list TENANT [--json] | keys revoke TENANT HASH

Each is a thin layer over :mod:`spectra.onboarding` and :class:`~spectra.tenants.TenantDirectory`, which decide the
order of the steps and what refuses them. ``create`` prints the tenant's first API key, shown this once (the
directory keeps its hash), and for a database user the SQL its warehouse administrator runs (README, Deploy); the
command does not run it: the operator running the command need not be the warehouse's administrator. ``--owned-schema``
gives the tenant the write grant on that schema (``allow_writes``), which the warehouse must agree with (the user
owns the schema). ``keys revoke`` takes a key's hash as ``keys list`` shows it, or enough of its start to name one key.

**Where the tables and plans are.** A deployed stack's outputs (``--stack``: ``TenantsTableName``,
``SubscriptionsTableName``, ``UsagePlanIds``), or a local stack's state file (``--state``: the tables' physical ids,
and the usage plans named ``<stack>-<tier>``, as template.yaml names them).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spectra import onboarding
from spectra.cli import whole_number
from spectra.errors import InvalidRequest, NotFound
from spectra.identity import TenantIdentities
from spectra.share import UsagePlans, statement_timeout_sql
from spectra.tenants import KeyInfo, Tenant, TenantDirectory

COMMANDS = ("tenants", "keys")
#: ``--statement-timeout-ms``'s default, in the SQL ``create`` prints: five minutes, as the demo tenants have
DEFAULT_STATEMENT_TIMEOUT_MS = 5 * 60 * 1000


@dataclass(frozen=True)
class Resources:
    tenants_table: str
    subscriptions_table: str | None
    #: tier → plan id(s), as the stack output gives them; None: the plans named ``<stack_name>-<tier>``
    plan_ids: dict[str, Any] | str | None
    stack_name: str
    #: what the stack's executor takes for a tenant identity (its parameters); None when they do not say
    identities: TenantIdentities | None = None


def resources_from_state(path: Path) -> Resources:
    """The local stack's tables and stack name, from its state file (local/runner/state.py)."""
    try:
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        resources = state["resources"]
        return Resources(
            tenants_table=resources["TenantsTable"]["physical_id"],
            subscriptions_table=(resources.get("SubscriptionsTable") or {}).get("physical_id"),
            plan_ids=None,
            stack_name=state["stack_name"],
            identities=TenantIdentities.of_parameters(state.get("parameter_overrides") or {}),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidRequest(f"{path} is not a local stack's state file with a tenants table ({exc})") from None


def resources_from_stack(cloudformation, stack_name: str) -> Resources:
    """A deployed stack's tables and usage plans, from its outputs."""
    (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    if "TenantsTableName" not in outputs:
        raise NotFound(f"stack {stack_name} has no output TenantsTableName: is it a Redshift Spectra stack?")
    return Resources(
        tenants_table=outputs["TenantsTableName"],
        subscriptions_table=outputs.get("SubscriptionsTableName"),
        plan_ids=outputs.get("UsagePlanIds"),
        stack_name=stack_name,
        identities=TenantIdentities.of_parameters(
            {p["ParameterKey"]: p.get("ParameterValue") or "" for p in stack.get("Parameters", [])}
        ),
    )


def add_commands(commands) -> None:
    """The ``tenants`` and ``keys`` commands, on ``python -m spectra.admin``'s subparsers."""
    tenants = commands.add_parser("tenants", help="tenants: create, list, change and delete them")
    verbs = tenants.add_subparsers(dest="tenants_command", required=True)
    listing = verbs.add_parser("list", help="every tenant")
    listing.add_argument("--json", action="store_true", help="JSON instead of text")
    show = verbs.add_parser("show", help="one tenant and its keys")
    show.add_argument("tenant")
    show.add_argument("--json", action="store_true", help="JSON instead of text")
    create = verbs.add_parser("create", help="a new tenant, in its tier's usage plan, with its first API key")
    create.add_argument("tenant", help="its id: lower case letters, digits, - and _ (at most 63)")
    identity = create.add_mutually_exclusive_group(required=True)
    identity.add_argument("--db-user", help="the database user it runs as (a provisioned cluster)")
    identity.add_argument("--secret-arn", help="the Secrets Manager secret it runs as (Redshift Serverless)")
    create.add_argument("--tier", default="standard", help="its usage plan's tier (default standard)")
    create.add_argument("--max-running", type=_count, help="its own cap on running statements (0 pauses it)")
    create.add_argument("--max-waits", type=_positive, help="its own cap on one-call queries waiting")
    create.add_argument(
        "--owned-schema", action="append", default=[], help="a schema it owns and may write in (repeatable)"
    )
    create.add_argument(
        "--statement-timeout-ms",
        type=_timeout_ms,
        default=DEFAULT_STATEMENT_TIMEOUT_MS,
        help="in the SQL printed for the warehouse administrator (default 300000)",
    )
    create.add_argument("--json", action="store_true", help="JSON instead of text")
    update = verbs.add_parser("update", help="a tenant's own caps (default: the service's)")
    update.add_argument("tenant")
    update.add_argument("--max-running", type=_or_default(_count), help="a cap on running statements, or default")
    update.add_argument("--max-waits", type=_or_default(_positive), help="a cap on one-call waits, or default")
    tier = verbs.add_parser("tier", help="move a tenant to another tier's usage plan")
    tier.add_argument("tenant")
    tier.add_argument("tier")
    for verb, text in (("deactivate", "refuse its keys; its queued jobs fail"), ("activate", "serve it again")):
        verbs.add_parser(verb, help=text).add_argument("tenant")
    delete = verbs.add_parser("delete", help="delete a tenant, its keys and its usage-plan key")
    delete.add_argument("tenant")
    delete.add_argument("--yes", action="store_true", required=True, help="say so: a deleted tenant is gone for good")
    keys = commands.add_parser("keys", help="a tenant's API keys")
    key_verbs = keys.add_subparsers(dest="keys_command", required=True)
    key_verbs.add_parser("issue", help="a new API key, shown this once").add_argument("tenant")
    key_list = key_verbs.add_parser("list", help="the tenant's keys: hash, first characters, issue time")
    key_list.add_argument("tenant")
    key_list.add_argument("--json", action="store_true", help="JSON instead of text")
    revoke = key_verbs.add_parser("revoke", help="revoke a key by its hash (or the start of it), as keys list shows")
    revoke.add_argument("tenant")
    revoke.add_argument("hash")


def run(
    args: argparse.Namespace,
    tenants: TenantDirectory,
    plans: UsagePlans,
    out,
    identities: TenantIdentities | None = None,
) -> int:
    """Run a parsed ``tenants`` or ``keys`` command; its exit status. Refusals raise (``spectra.admin`` says them).
    ``identities``: what the stack takes for a tenant identity, which ``create`` asks first."""
    if args.command == "keys":
        return _keys(args, tenants, out)
    verb = args.tenants_command
    if verb == "list":
        found = tenants.list_tenants()
        if args.json:
            _print_json([_view(tenant) for tenant in found], out)
        else:
            print("\n".join(_line(tenant) for tenant in found) or "no tenants", file=out)
    elif verb == "show":
        tenant = _existing(tenants, args.tenant)
        keys = tenants.list_keys(args.tenant)
        if args.json:
            _print_json({**_view(tenant), "keys": [key.model_dump() for key in keys]}, out)
        else:
            print(_line(tenant), file=out)
            print("\n".join(f"  key {_key_line(key)}" for key in keys) or "  no API keys", file=out)
    elif verb == "create":
        _create(args, tenants, plans, out, identities)
    elif verb == "update":
        changes = {
            field: (None if value == "default" else value)
            for field, value in (("max_running_statements", args.max_running), ("max_waits", args.max_waits))
            if value is not None
        }
        if not changes:
            raise InvalidRequest("nothing to change: give --max-running or --max-waits (a number, or default)")
        print(_line(tenants.update_tenant(args.tenant, **changes)), file=out)
    elif verb == "tier":
        print(_line(onboarding.change_tier(tenants, plans, args.tenant, args.tier)), file=out)
    elif verb in ("deactivate", "activate"):
        print(_line(tenants.set_active(args.tenant, verb == "activate")), file=out)
    else:  # delete
        done = onboarding.offboard(tenants, plans, args.tenant)
        if not done.deleted:
            raise NotFound(f"tenant {args.tenant!r} not found (its webhook subscriptions, if any, were given an end)")
        key = "and its usage-plan key" if done.usage_key_deleted else "(no usage-plan key of it was left to delete)"
        print(f"tenant {args.tenant} deleted, with its API keys, {key}", file=out)
    return 0


def _create(
    args: argparse.Namespace, tenants: TenantDirectory, plans: UsagePlans, out, identities: TenantIdentities | None
) -> None:
    """``tenants create``: the tenant through :func:`spectra.onboarding.onboard`, its key printed this once, and the
    SQL its warehouse administrator runs, built first so that a user name the SQL cannot hold refuses the tenant
    before anything is made."""
    attributes: dict[str, Any] = {
        "db_user": args.db_user,
        "secret_arn": args.secret_arn,
        "max_running_statements": args.max_running,
        "max_waits": args.max_waits,
    }
    owned = list(dict.fromkeys(args.owned_schema))  # once each: a second CREATE SCHEMA would stop the admin's script
    if owned:
        attributes |= {"allow_writes": True, "owned_schemas": owned}
    warehouse_sql = [f'CREATE USER "{args.db_user}" PASSWORD DISABLE;'] if args.db_user else []
    if args.db_user:
        warehouse_sql.append(statement_timeout_sql(args.db_user, args.statement_timeout_ms) + ";")
        warehouse_sql += [f'CREATE SCHEMA "{schema}" AUTHORIZATION "{args.db_user}";' for schema in owned]
    made = onboarding.onboard(tenants, plans, args.tenant, tier=args.tier, identities=identities, **attributes)
    if args.json:
        _print_json({**_view(made.tenant), "api_key": made.api_key, "warehouse_sql": warehouse_sql}, out)
        return
    print(f"created {_line(made.tenant)}", file=out)
    print(f"API key (shown this once): {made.api_key}", file=out)
    if warehouse_sql:
        print("The warehouse administrator makes its user, if not made yet (README, Deploy):", file=out)
        print("\n".join(f"  {sql}" for sql in warehouse_sql), file=out)


def _keys(args: argparse.Namespace, tenants: TenantDirectory, out) -> int:
    """``keys issue | list | revoke``; a revoke names one key by its hash or the start of it, as ``keys list`` shows
    them, since nobody holds the keys themselves."""
    verb = args.keys_command
    if verb == "issue":
        print(f"API key for tenant {args.tenant} (shown this once): {tenants.issue_key(args.tenant)}", file=out)
    elif verb == "list":
        keys = tenants.list_keys(args.tenant)
        if args.json:
            _print_json([key.model_dump() for key in keys], out)
        else:
            print("\n".join(_key_line(key) for key in keys) or "no API keys", file=out)
    else:  # revoke
        wanted = args.hash.strip().lower()
        matching = [key for key in tenants.list_keys(args.tenant) if key.key_hash.startswith(wanted)] if wanted else []
        if len(matching) != 1:
            found = "no key" if not matching else f"{len(matching)} keys"
            raise NotFound(f"{found} of tenant {args.tenant!r} with a hash starting {args.hash!r}: see keys list")
        if not tenants.revoke_key_hash(args.tenant, matching[0].key_hash):
            raise NotFound(f"the key {matching[0].key_hash} of tenant {args.tenant!r} is gone already")
        print(f"revoked key {_key_line(matching[0])}", file=out)
    return 0


def _existing(tenants: TenantDirectory, tenant_id: str) -> Tenant:
    tenant = tenants.get(tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id!r} not found")
    return tenant


def _view(tenant: Tenant) -> dict[str, Any]:
    """A tenant as the commands show it: its usage-plan key's value stays out (said only as there or not)."""
    view = tenant.model_dump(mode="json", exclude={"usage_key", "generation"})
    return view | {"usage_plan_key": tenant.usage_key is not None}


def _line(tenant: Tenant) -> str:
    identity = f"user {tenant.db_user}" if tenant.db_user else f"secret {tenant.secret_arn}"
    caps = ", ".join(
        f"{name} {value if value is not None else 'default'}"
        for name, value in (("max running", tenant.max_running_statements), ("max waits", tenant.max_waits))
    )
    writes = f", writes in {', '.join(tenant.owned_schemas)}" if tenant.allow_writes else ""
    state = "active" if tenant.active else "INACTIVE"
    plan = "" if tenant.usage_key else " (no usage-plan key: its requests are refused 403; run tenants tier)"
    return f"{tenant.tenant_id}: {state}, tier {tenant.tier}{plan}, {identity}, {caps}{writes}"


def _key_line(key: KeyInfo) -> str:
    return f"{key.key_hash} ({key.hint}..., issued {key.created_at})"


def _print_json(value: Any, out) -> None:
    print(json.dumps(value, indent=2), file=out)


#: A tenant's own caps: far past any warehouse's concurrency (Redshift runs at most 50 statements a queue), and
#: refused here rather than by DynamoDB's 38 digits (a traceback)
MAX_CAP = 10_000
_count, _positive = whole_number(0, MAX_CAP), whole_number(1, MAX_CAP)
#: statement_timeout is a 32-bit count of milliseconds (about 24.8 days; 0 is none): the administrator's ALTER USER
#: printed with a larger one would be refused by the warehouse
_timeout_ms = whole_number(0, 2**31 - 1)


def _or_default(parse):
    """An argparse type: ``parse``'s, or the word ``default`` (the service's value)."""

    def parse_or_default(text: str):
        return "default" if text == "default" else parse(text)

    return parse_or_default
