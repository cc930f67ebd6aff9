"""Where the SQL guard's reader (sqlglot) and the warehouse's (PostgreSQL here, Redshift's lineage on AWS) could
split a statement differently, the guard refuses it: these run the refused text on the emulator, as a tenant-like
user, to show what the warehouse would have made of it."""

from __future__ import annotations

import pytest

from spectra.errors import SqlRejected
from spectra.sql_guard import check_sql

pytestmark = pytest.mark.integration

NBSP_TAG = "$\u00a0$"  # a dollar quote's tag to PostgreSQL; two parameters and a string to sqlglot


def test_a_dollar_quote_the_guard_cannot_read_is_refused_and_would_have_deleted_rows(api, name):
    user, table = f"{name}_reader", f"{name}_t"
    api.run(f"CREATE USER {user}")
    api.run(f"CREATE TABLE {table} (a int)")
    api.run(f"INSERT INTO {table} VALUES (1), (2), (3)")
    api.run(f"GRANT SELECT, DELETE ON {table} TO {user}")  # as a tenant that loads through the Bulk API has
    sql = (
        f"WITH d AS (SELECT {NBSP_TAG} ' {NBSP_TAG} AS x), e AS (DELETE FROM public.{table} RETURNING 1) "
        f"SELECT count(*) FROM e -- ') SELECT 1"
    )
    with pytest.raises(SqlRejected) as refused:
        check_sql(sql, max_bytes=100_000)  # a read-only tenant's query
    assert refused.value.details == {"reason": "dollar"}

    # What the warehouse reads: a data-modifying CTE, not the string literal the guard's parser saw.
    assert api.rows(sql, DbUser=user) == [[3]]
    assert api.rows(f"SELECT count(*) FROM {table}") == [[0]]


def test_a_plain_dollar_quote_reads_alike_and_passes(api):
    sql = "SELECT $$it's$$ AS a, $t$ ' $t$ AS b"
    assert check_sql(sql, max_bytes=100_000) == sql
    assert api.rows(sql) == [["it's", " ' "]]
