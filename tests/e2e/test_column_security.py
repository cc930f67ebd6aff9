"""Column-level security, decided by the warehouse: the demo's sales table (local.demo, the schema `make run` seeds)
grants its ``margin`` column to one tenant only. The other tenant's query of that column fails with the database's
own permission error; its query of the other columns works, row-level security still applying."""

from __future__ import annotations

import pytest

from local.demo import create_sales_table

pytestmark = pytest.mark.e2e


@pytest.fixture
def sales(new_tenant, warehouse, unique_name):
    acme, globex = new_tenant(), new_tenant()
    table = f"sales_{unique_name}"
    create_sales_table(warehouse, table, acme.db_user, globex.db_user)
    return acme, globex, table


def rows(client, sql: str) -> list:
    job = client.wait(client.submit(sql)["job_id"])
    assert job["status"] == "COMPLETED", job
    return client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()["rows"]


def permission_error(client, sql: str, table: str) -> str:
    job = client.wait(client.submit(sql)["job_id"])
    assert job["status"] == "FAILED", job
    assert job["error"]["code"] == "statement_failed"
    message = job["error"]["message"]
    assert "permission denied" in message and table in message, message
    return message


def test_the_granted_tenant_reads_the_sensitive_column(sales):
    acme, _, table = sales
    assert rows(acme, f"select id, item, margin from {table} order by id") == [
        [1, "anvil", "42.00"],
        [2, "rocket skates", "122.50"],
        [3, "bird seed", "3.33"],
    ]


def test_the_other_tenant_is_refused_the_column_by_the_database(sales):
    _, globex, table = sales
    permission_error(globex, f"select margin from {table}", table)
    permission_error(globex, f"select * from {table}", table)  # * names the column too
    permission_error(globex, f"select id from {table} where margin > 100", table)  # so does a filter
    permission_error(globex, f"select sum(margin) as total from {table}", table)


def test_the_other_tenant_reads_every_other_column(sales):
    _, globex, table = sales
    assert rows(globex, f"select id, item, amount from {table} order by id") == [
        [1, "hammock", "75.00"],
        [2, "flamethrower", "999.00"],
    ]
