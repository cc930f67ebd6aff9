"""Tenants and demo data for the local stack, made through the same doors production uses.

Database objects are created with the Data API as the admin user (the emulator's ``awsuser`` superuser, as on a
fresh Redshift cluster), in PostgreSQL's dialect (``CREATE USER`` without a password, ``CREATE POLICY``), which the
emulator runs as it is: Redshift spells users and row-level security its own way (README, Deploy). Tenants and keys
are made through :class:`spectra.tenants.TenantDirectory`. The demo table carries a
row-level security policy keyed on ``current_user``, so each tenant's key sees only its own rows, and a column-level
grant: its ``margin`` column is acme's to read; globex may read every other column, and its query of ``margin`` (or
``select *``) fails with the database's own "permission denied".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import boto3

from spectra import onboarding
from spectra.share import UsagePlans, statement_timeout_sql
from spectra.tenants import TenantDirectory

ADMIN_USER = "awsuser"
TERMINAL = {"FINISHED", "FAILED", "ABORTED"}


class AdminSqlFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Warehouse:
    """Where admin statements go: a redshift-data client and the cluster/database the stack is configured for."""

    client: Any
    cluster_id: str
    database: str = "dev"

    def run(self, *sqls: str, timeout: float = 30) -> dict:
        """Run statements as the admin in one transaction and wait for them (bounded)."""
        target = {"ClusterIdentifier": self.cluster_id, "Database": self.database, "DbUser": ADMIN_USER}
        if len(sqls) == 1:
            statement_id = self.client.execute_statement(Sql=sqls[0], **target)["Id"]
        else:
            statement_id = self.client.batch_execute_statement(Sqls=list(sqls), **target)["Id"]
        deadline = time.monotonic() + timeout
        while True:
            described = self.client.describe_statement(Id=statement_id)
            if described["Status"] in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise AdminSqlFailed(f"admin statement still {described['Status']} after {timeout}s")
            time.sleep(0.02)
        if described["Status"] != "FINISHED":
            raise AdminSqlFailed(f"admin SQL failed: {described.get('Error')}")
        return described


DEFAULT_TIER = "standard"
#: The demo tenants' statement timeout: long enough for any demo query, short enough to end a runaway one.
DEFAULT_STATEMENT_TIMEOUT_MS = 5 * 60 * 1000


def add_tenant(
    warehouse: Warehouse,
    tenants: TenantDirectory,
    tenant_id: str,
    *,
    db_user: str | None = None,
    tier: str = DEFAULT_TIER,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    max_running_statements: int | None = None,
    max_waits: int | None = None,
    usage_plans: UsagePlans | None = None,
    owned_schema: str | None = None,
) -> str:
    """A tenant as production provisions one, returning its fresh API key: its own database user (no privileges
    beyond what grants give it) with a statement timeout, an API Gateway key in its tier's usage plan (by default the
    plans of every stack on this endpoint, ``UsagePlans.by_name``), and its record.

    With ``owned_schema`` the user also owns that schema and the tenant is flagged to write there through the
    query API (the guard allows DML and DDL on objects in it, and the warehouse agrees because the user owns it).

    What can refuse the tenant (its fields, its tier, an id already taken, a database user another tenant had, a
    deleted one's included) is asked before anything is made, and the user, its timeout and its schema are made in
    one transaction: refused after its CREATE USER, it left the user (its schema, an API key) behind, and the
    corrected call then failed on 'role "tenant_..." already exists'.
    """
    db_user = db_user or f"tenant_{tenant_id.replace('-', '_')}"
    plans = usage_plans or UsagePlans.by_name(boto3.client("apigateway"))
    share = {"max_running_statements": max_running_statements, "max_waits": max_waits}
    writes = {"allow_writes": True, "owned_schemas": [owned_schema]} if owned_schema else {}
    timeout_sql = statement_timeout_sql(db_user, statement_timeout_ms)
    onboarding.check_new(tenants, plans, tenant_id, tier=tier, db_user=db_user, **writes, **share)
    schema = [f'CREATE SCHEMA "{owned_schema}" AUTHORIZATION "{db_user}"'] if owned_schema else []
    warehouse.run(f'CREATE USER "{db_user}"', timeout_sql, *schema)  # one transaction: all made, or none
    return onboarding.onboard(tenants, plans, tenant_id, tier=tier, db_user=db_user, **writes, **share).api_key


def create_shared_table(warehouse: Warehouse, table: str, rows: list[tuple[str, int, str, float]], readers: list[str]):
    """A table shared by tenants, each row owned by one database user; RLS shows each user only its own rows."""
    values = ", ".join(f"('{owner}', {rid}, '{item}', {amount})" for owner, rid, item, amount in rows)
    grants = [f'GRANT SELECT ON {table} TO "{reader}"' for reader in readers]
    warehouse.run(
        f"CREATE TABLE {table} (owner varchar(128) NOT NULL, id int NOT NULL, item varchar(64), amount numeric(12,2))",
        f"INSERT INTO {table} VALUES {values}",
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY {table.replace('.', '_')}_by_owner ON {table} USING (owner = current_user)",
        *grants,
    )


def grant_columns(warehouse: Warehouse, table: str, db_user: str, columns: list[str]) -> None:
    """Column-level security: ``db_user`` may read these columns of ``table`` and no other. Its table-wide SELECT,
    if it had one, is revoked first: a table grant covers every column, those added later included."""
    warehouse.run(
        f'REVOKE SELECT ON {table} FROM "{db_user}"',
        f'GRANT SELECT ({", ".join(columns)}) ON {table} TO "{db_user}"',
    )


def create_contacts_table(warehouse: Warehouse, table: str, users: list[str]) -> None:
    """The demo's bulk table: tenants load and read it; each row belongs to the user that loaded it (its ``owner``
    defaults to ``current_user``), and row-level security keeps each tenant to its own rows, for reads and for the
    rows an update, upsert or delete may touch."""
    rows = [
        (users[0], "wile@acme.test", "Wile E. Coyote", "Desert"),
        (users[0], "road@acme.test", "Road Runner", "Desert"),
        (users[-1], "hank@globex.test", "Hank Scorpio", "Cypress Creek"),
    ]
    values = ", ".join(f"('{owner}', '{email}', '{name}', '{city}')" for owner, email, name, city in rows)
    warehouse.run(
        f"CREATE TABLE {table} (owner varchar(128) NOT NULL DEFAULT current_user, email varchar(128) NOT NULL,"
        " name varchar(64), city varchar(64))",
        f"INSERT INTO {table} VALUES {values}",
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_by_owner ON {table} USING (owner = current_user) WITH CHECK (owner = current_user)",
        *(f'GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO "{user}"' for user in users),
    )


@dataclass(frozen=True)
class Demo:
    tenant_id: str
    api_key: str
    other_tenant_id: str
    other_api_key: str
    table: str = "sales"
    bulk_table: str = "contacts"


def seed_demo(warehouse: Warehouse, tenants: TenantDirectory) -> Demo:
    """Two tenants sharing one ``sales`` table under row-level security (its ``margin`` column is acme's only), and a
    ``contacts`` table both may load through the S3 drop and the Bulk API."""
    acme_key = add_tenant(warehouse, tenants, "acme")
    globex_key = add_tenant(warehouse, tenants, "globex")
    create_sales_table(warehouse, "sales", "tenant_acme", "tenant_globex")
    create_contacts_table(warehouse, "contacts", ["tenant_acme", "tenant_globex"])
    return Demo("acme", acme_key, "globex", globex_key)


def create_sales_table(warehouse: Warehouse, table: str, acme_user: str, globex_user: str) -> None:
    """The demo's sales table: each tenant sees only its own rows (RLS), and the sensitive ``margin`` column is
    granted to ``acme_user`` only; ``globex_user`` may read every other column."""
    rows = [
        (acme_user, 1, "anvil", 120.00),
        (acme_user, 2, "rocket skates", 349.99),
        (acme_user, 3, "bird seed", 9.50),
        (globex_user, 1, "hammock", 75.00),
        (globex_user, 2, "flamethrower", 999.00),
    ]
    create_shared_table(warehouse, table, rows, readers=[acme_user, globex_user])
    warehouse.run(
        f"ALTER TABLE {table} ADD COLUMN margin numeric(12,2)", f"UPDATE {table} SET margin = round(amount * 0.35, 2)"
    )
    grant_columns(warehouse, table, globex_user, ["owner", "id", "item", "amount"])
