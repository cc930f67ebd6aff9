"""The SQL guard: each refusal's stable reason and what it tells the tenant, for statements the corpora refuse for
other reasons or not at all. Found by mutation testing of spectra/sql_guard.py: each line here once let a changed
guard through (a reason renamed, a message emptied or replaced, a check dropped)."""

from __future__ import annotations

import pytest

from spectra.errors import SqlRejected
from spectra.sql_guard import check_sql

pytestmark = pytest.mark.unit

WRITER = {"allow_writes": True, "owned_schemas": ["owned"]}


def refusal(sql: str, **grant) -> SqlRejected:
    with pytest.raises(SqlRejected) as error:
        check_sql(sql, max_bytes=10_000, **grant)
    return error.value


@pytest.mark.parametrize(
    ("sql", "grant", "reason", "told"),
    [
        # DDL the write flag does not open, in an owned schema
        ("ALTER VIEW owned.v RENAME TO w", WRITER, "unsupported", "ALTER VIEW is not allowed in queries"),
        ("ALTER INDEX owned.i RENAME TO j", WRITER, "unsupported", "ALTER INDEX is not allowed in queries"),
        ("DROP SCHEMA owned", WRITER, "unsupported", "DROP SCHEMA is not allowed in queries"),
        ("CREATE SCHEMA owned2", WRITER, "unsupported", "CREATE SCHEMA is not allowed in queries"),
        (
            "DROP MATERIALIZED VIEW owned.v",
            WRITER,
            "unsupported",
            "materialized views are not allowed: their refreshes run outside any query",
        ),
        (
            "CREATE MATERIALIZED VIEW owned.v AS SELECT 1",
            WRITER,
            "unsupported",
            "materialized views are not allowed: their refreshes run outside any query",
        ),
        ("CREATE TABLE owned.t CLONE owned.s", WRITER, "unsupported", "CREATE TABLE ... CLONE is not allowed"),
        (
            "CREATE TABLE owned.t (a int) WITH (foo = 1)",
            WRITER,
            "unsupported",
            "CREATE TABLE option foo=1 is not allowed: a table may set BACKUP, DISTSTYLE, DISTKEY",
        ),
        # ALTER TABLE actions outside the list, and SET LOCATION named for what it is
        (
            "ALTER TABLE owned.t SET TABLE PROPERTIES ('a'='b')",
            WRITER,
            "unsupported",
            "ALTER TABLE ... SET TABLE PROPERTIES ('a' = 'b') is not allowed in queries: ALTER TABLE may add",
        ),
        (
            "ALTER TABLE owned.t SET LOCATION 's3://b/'",
            WRITER,
            "external",
            "ALTER TABLE ... SET LOCATION is not allowed: external tables use S3",
        ),
        (
            "ALTER TABLE owned.t DROP COLUMN a CASCADE",
            WRITER,
            "unsupported",
            "ALTER TABLE ... DROP may drop a column or a constraint, without CASCADE",
        ),
        # external objects, whichever of sqlglot's paths reads them
        (
            "CREATE EXTERNAL TABLE owned.t (a int) LOCATION 's3://b/'",
            WRITER,
            "external",
            "external tables and views are not allowed: they use S3 with the cluster's role",
        ),
        (
            "ALTER EXTERNAL TABLE owned.t ADD PARTITION (d='1') LOCATION 's3://b/'",
            WRITER,
            "external",
            "ALTER EXTERNAL is not allowed: external objects read and write S3 with the cluster's role",
        ),
        (
            "CREATE USER bob PASSWORD 'x'",
            WRITER,
            "privileges",
            "CREATE USER is not allowed: users, roles, ownership and policies are the administrator's",
        ),
        # temporary tables, however they are asked for
        (
            "CREATE TEMP TABLE owned.t (a int)",
            WRITER,
            "temporary",
            "temporary tables are not allowed: they outlive the query in a shared session",
        ),
        (
            "CREATE TABLE pg_temp.t (a int)",
            WRITER,
            "temporary",
            "temporary tables are not allowed: they outlive the query in a shared session",
        ),
        (
            "SELECT 1 AS a INTO TEMP owned.t",
            WRITER,
            "temporary",
            "SELECT ... INTO TEMP is not allowed: temporary tables outlive the query",
        ),
        (
            "SELECT 1 AS a INTO public.t",
            WRITER,
            "not_owned",
            "SELECT ... INTO may only change objects in your schemas (owned), not 'public'",
        ),
        # a name of more than three parts is no table name, whatever its first part says
        ("INSERT INTO owned.t.x.y VALUES (1)", WRITER, "unsupported", "INSERT must name a table or view"),
        (
            "SELECT * FROM owned.t FOR UPDATE",
            {},
            "maintenance",
            "SELECT ... FOR UPDATE / FOR SHARE is not allowed: locks are not for queries",
        ),
        # SHOW and EXPLAIN
        ("SHOW LOCK x", WRITER, "syntax", "SHOW takes the name of a setting"),
        ("EXPLAIN", WRITER, "syntax", "EXPLAIN needs a statement to explain"),
        ("EXPLAIN VERBOSE", WRITER, "syntax", "EXPLAIN needs a statement to explain"),
        ("EXPLAIN EXPLAIN SELECT 1", WRITER, "syntax", "EXPLAIN EXPLAIN is not a statement"),
        (
            "EXPLAIN ANALYZE SELECT 1",
            WRITER,
            "explain_analyze",
            "EXPLAIN ANALYZE and EXPLAIN options are not allowed: they run the statement",
        ),
        # the statement named in upper case, as SQL writes keywords, whatever case it was sent in
        ("insert into owned.t values (1)", {}, "read_only", "INSERT is not allowed: queries are read-only"),
        ("truncate owned.t", {}, "read_only", "TRUNCATE is not allowed: queries are read-only"),
        ("create table owned.t (a int)", {}, "read_only", "CREATE TABLE is not allowed: queries are read-only"),
        ("insert into public.t values (1)", WRITER, "not_owned", "INSERT may only change objects in your schemas"),
        ("delete a from owned.a, owned.b", WRITER, "unsupported", "DELETE of several tables at once is not allowed"),
        ("with d as (vacuum) select 1", WRITER, "nested_statement", "VACUUM inside another statement is not allowed"),
    ],
)
def test_a_refusal_gives_its_reason_and_says_why(sql, grant, reason, told):
    error = refusal(sql, **grant)
    assert error.details == {"reason": reason}
    assert error.message.startswith(told)


@pytest.mark.parametrize(
    ("sql", "told"),
    [
        (
            "CREATE TABLE owned.t (a int) WITHOUT OIDS",
            "a COMPOUND or INTERLEAVED SORTKEY of its columns or SORTKEY AUTO",
        ),
        ("ALTER TABLE owned.t APPEND FROM owned.s", "ALTER TABLE may add, alter, rename or drop a column"),
    ],
)
def test_a_table_statement_in_a_form_the_guard_cannot_read_says_which_forms_it_can(sql, told):
    """CREATE TABLE and ALTER TABLE are allowed to a tenant that may write, in the forms sqlglot parses; one it keeps
    as unparsed text is refused saying what those forms are, not that CREATE TABLE is never allowed. A tenant that
    may not write hears that instead: no form would do."""
    what = " ".join(sql.split()[:2])
    error = refusal(sql, **WRITER)
    assert error.details == {"reason": "unsupported"}
    assert error.message.startswith(f"this form of {what} is not allowed in queries: ")
    assert told in error.message
    error = refusal(sql)
    assert error.details == {"reason": "read_only"}
    assert error.message.startswith(f"{what} is not allowed: queries are read-only for this tenant")


@pytest.mark.parametrize(
    ("sql", "told"),
    [
        ("CREATE VIEW owned.v WITH (foo=1) AS SELECT 1", "CREATE VIEW option foo=1 is not allowed"),
        ("CREATE TABLE owned.t (a int) COMMENT 'x'", "CREATE TABLE option SCHEMACOMMENTPROPERTY is not allowed: "),
        ("ALTER TABLE owned.t SET LOGGED", "ALTER TABLE ... SET is not allowed in queries: "),
        (
            "ALTER TABLE owned.t ALTER DISTKEY a TABLESPACE x",
            "ALTER TABLE ... TABLESPACE x is not allowed in queries: ",
        ),
        ("CREATE VIEW owned.v SORTKEY AUTO AS SELECT 1", "CREATE VIEW option SORTKEY AUTO is not allowed: "),
        ("CREATE VIEW owned.v ENCODE AUTO AS SELECT 1", "CREATE VIEW option ENCODE AUTO is not allowed: "),
    ],
)
def test_an_option_or_action_outside_the_list_is_named_and_only_a_table_hears_of_table_options(sql, told):
    """Redshift's SQL generator writes some options as nothing at all (a table COMMENT): the refusal then names the
    option's kind, never an empty name. A view is not told which options a table may set."""
    error = refusal(sql, **WRITER)
    assert error.details == {"reason": "unsupported"}
    assert error.message.startswith(told)
    assert ("a table may set" in error.message) is sql.startswith("CREATE TABLE")


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE owned.t (a int ENCODE zstd) DISTSTYLE AUTO",
        "CREATE TABLE owned.t (a int) SORTKEY (a)",
        # Redshift's table design clauses sqlglot has no grammar for (spectra/sql_design.py)
        "CREATE TABLE owned.t (a int) SORTKEY AUTO",
        "CREATE TABLE owned.t (a int, b int) DISTSTYLE AUTO SORTKEY AUTO ENCODE AUTO",
        "CREATE TABLE owned.t (a int, b int) INTERLEAVED SORTKEY (a, b)",
        "CREATE TABLE owned.t (a bigint IDENTITY(1, 1) ENCODE az64 DISTKEY SORTKEY, b varchar(8)) BACKUP NO",
        "CREATE TABLE owned.t DISTKEY (a) COMPOUND SORTKEY (a) AS SELECT 1 AS a",
        "CREATE TABLE owned.t SORTKEY AUTO AS SELECT 1 AS a",
        "ALTER TABLE owned.t ALTER ENCODE AUTO",
        "ALTER TABLE owned.t ALTER COLUMN a ENCODE zstd",
        "ALTER TABLE owned.t ALTER a ENCODE zstd, ALTER COLUMN b ENCODE lzo",
        "ALTER TABLE owned.t ALTER SORTKEY AUTO",
        "CREATE VIEW owned.v AS SELECT 1 WITH NO SCHEMA BINDING",
    ],
)
def test_the_table_those_messages_describe_is_accepted(sql):
    assert check_sql(sql, max_bytes=10_000, **WRITER) == sql
    assert refusal(sql).details == {"reason": "read_only"}


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("CREATE TABLE public.t (a int) SORTKEY AUTO", "not_owned"),
        ("ALTER TABLE public.t ALTER COLUMN a ENCODE zstd", "not_owned"),
        ("ALTER TABLE t ALTER ENCODE AUTO", "not_owned"),
        ("CREATE TEMP TABLE owned.t (a int DISTKEY) ENCODE AUTO", "temporary"),
        ("CREATE TABLE owned.t (a int) ENCODE AUTO LOCATION 's3://x/'", "external"),
        ("CREATE TABLE owned.t (a int) INTERLEAVED (a)", "syntax"),
        ("CREATE VIEW owned.v ENCODE AUTO AS SELECT 1", "unsupported"),
        ("ALTER TABLE owned.t ALTER COLUMN a ENCODE bogus", "syntax"),
        ("ALTER TABLE owned.t ALTER SORTKEY AUTO ENCODE AUTO", "unsupported"),
    ],
)
def test_the_design_clauses_open_nothing_else(sql, reason):
    """Reading Redshift's design clauses lets no statement through that another rule refuses."""
    assert refusal(sql, **WRITER).details == {"reason": reason}


def test_a_dollar_apart_from_its_digits_is_not_a_positional_parameter():
    """Only ``$1`` written together is positional to both readers; ``$ 1`` is a lone ``$``, refused."""
    assert check_sql("select $1", max_bytes=1_000) == "select $1"
    assert refusal("select $ 1").details == {"reason": "dollar"}
