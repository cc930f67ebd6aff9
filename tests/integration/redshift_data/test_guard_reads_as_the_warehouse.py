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


def test_a_nul_character_is_refused_and_would_have_run_only_the_statement_before_it(api, name):
    table = f"{name}_t"
    api.run(f"CREATE TABLE {table} (a int)")
    api.run(f"INSERT INTO {table} VALUES (1), (2), (3)")
    sql = f"SELECT count(*) FROM {table} WHERE a = 1 -- note\x00\n OR true"
    with pytest.raises(SqlRejected) as refused:
        check_sql(sql, max_bytes=100_000)
    assert refused.value.details == {"reason": "nul_character"}

    # What the warehouse reads: the text up to the NUL, not the statement the guard's parser saw.
    assert api.rows(sql) == [[1]]
    assert api.rows(sql.replace("\x00", "")) == [[3]]


#: Each hides ``e AS (DELETE ... RETURNING 1)`` from the guard: sqlglot reads it as a string or a comment, the
#: warehouse as code.
SPLITS = {
    # sqlglot does not count a /* right after another /*; PostgreSQL nests (depth 2)
    "comment opened twice": (
        "WITH d AS (SELECT 1 AS a, /*/* */ ' */ 1 AS b), e AS (DELETE FROM public.{table} RETURNING 1) "
        "SELECT count(*) FROM e -- ' AS b) SELECT a FROM d"
    ),
    # at depth 2, sqlglot reads */* as a close and a reopen sharing the slash; PostgreSQL as a close and a star
    "close and reopen sharing a slash": (
        "WITH d AS (SELECT 1 AS a /* /* */* */ ), e AS (DELETE FROM public.{table} RETURNING 1) "
        "SELECT count(*) FROM e -- */ ) SELECT a FROM d"
    ),
    # sqlglot reads the operator #- over the comment's first dash; PostgreSQL ends an operator at --
    "an operator over a comment's dash": (
        "WITH d AS (SELECT 2 #-- '\n 2 AS a), e AS (DELETE FROM public.{table} RETURNING 1) "
        "SELECT count(*) FROM e -- ' AS a) SELECT a FROM d"
    ),
    # FETCH is a command keyword to sqlglot's tokenizer: the first version of the check stopped comparing there
    "behind a FETCH clause": (
        "WITH d AS (SELECT 1 AS a FETCH /*/* */ ' */ FIRST 1 ROWS ONLY), "
        "e AS (DELETE FROM public.{table} RETURNING 1) SELECT count(*) FROM e -- ') SELECT a FROM d"
    ),
}


@pytest.mark.parametrize(
    "sql",
    [
        # sqlglot: one name a#set_config; PostgreSQL: a, the operator #, and a call of set_config
        "SELECT a#set_config('spectra.pwned', '7', false)::int AS b FROM (SELECT 0 AS a) AS s",
        # sqlglot: after BEGIN, FETCH makes the rest one string; PostgreSQL: the alias begin, FETCH FIRST (expression)
        "SELECT 7 AS b FROM (SELECT 1) begin FETCH FIRST (set_config('spectra.pwned', '7', false)::int) ROWS ONLY",
    ],
)
def test_set_config_read_otherwise_by_the_guard_is_refused_and_would_have_run(api, name, sql):
    with pytest.raises(SqlRejected) as refused:
        check_sql(sql, max_bytes=100_000)
    assert refused.value.details == {"reason": "ambiguous_sql"}
    user = f"{name}_reader"
    api.run(f"CREATE USER {user}")
    assert api.rows(sql, DbUser=user) == [[7]]  # the warehouse ran set_config


@pytest.mark.parametrize("split", sorted(SPLITS))
def test_a_statement_split_otherwise_by_the_warehouse_is_refused_and_would_have_deleted_rows(api, name, split):
    user, table = f"{name}_reader", f"{name}_t"
    api.run(f"CREATE USER {user}")
    api.run(f"CREATE TABLE {table} (a int)")
    api.run(f"INSERT INTO {table} VALUES (1), (2), (3)")
    api.run(f"GRANT SELECT, DELETE ON {table} TO {user}")
    sql = SPLITS[split].format(table=table)
    with pytest.raises(SqlRejected) as refused:
        check_sql(sql, max_bytes=100_000)
    assert refused.value.details == {"reason": "ambiguous_sql"}
    assert api.rows(sql, DbUser=user) == [[3]]  # what the warehouse does with it: the DELETE runs
    assert api.rows(f"SELECT count(*) FROM {table}") == [[0]]


def test_a_plain_dollar_quote_reads_alike_and_passes(api):
    sql = "SELECT $$it's$$ AS a, $t$ ' $t$ AS b"
    assert check_sql(sql, max_bytes=100_000) == sql
    assert api.rows(sql) == [["it's", " ' "]]
