"""What the SQL guard reads as a plain query but PostgreSQL, unlike Redshift, would let a tenant use to leave state in
its kept-alive session or to write (the guard review): the embedded warehouse refuses it to tenants, as Redshift,
which has none of these functions, does (``local/redshift_data/engine.py``, ``CLOSE_POSTGRES_ONLY_DOORS``)."""

from __future__ import annotations

import pytest

from spectra.sql_guard import check_sql

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "sql",
    [
        # set_config hidden in a string that ts_stat runs as SQL: the session's search_path was changed
        "SELECT count(*) AS n FROM ts_stat('SELECT to_tsvector(set_config(''search_path'', ''pwned'', false))')",
        "SELECT query_to_xml('SELECT set_config(''search_path'', ''pwned'', false)', true, false, '') AS x",
        # a session-level lock held after the statement ended
        "SELECT pg_advisory_lock(4242) IS NULL AS locked",
        "SELECT pg_try_advisory_lock(4242) AS locked",
        "SELECT setseed(0.5) IS NULL AS seeded",
        # a committed write by a read-only tenant
        "SELECT lo_from_bytea(0, 'kept') > 0 AS made",
        "SELECT pg_logical_emit_message(false, 'tenant', 'kept') IS NOT NULL AS written",
    ],
    ids=["ts_stat", "query_to_xml", "advisory-lock", "try-advisory-lock", "setseed", "large-object", "wal-message"],
)
def test_a_read_only_tenant_cannot_reach_what_redshift_does_not_have(api, name, sql):
    user = f"{name}_reader"
    api.run(f"CREATE USER {user}")
    assert check_sql(sql, max_bytes=100_000)  # the guard reads it as a query: the warehouse is what refuses it
    failed = api.run(sql, expect="FAILED", DbUser=user)
    assert "permission denied for function" in failed["Error"]
    assert api.rows("SELECT pg_try_advisory_lock(4242)") == [[True]]  # no tenant holds it
    api.rows("SELECT pg_advisory_unlock_all() IS NULL")


def test_a_writer_cannot_change_session_settings_through_a_view_over_pg_settings(api, redshift_data, name):
    """An UPDATE of pg_settings is set_config: through a view in its own schema, a writer tenant changed its session's
    search_path for its next jobs in the session."""
    user, schema = f"{name}_writer", f"{name}_owned"
    api.run(f"CREATE USER {user}")
    api.run(f"CREATE SCHEMA {schema} AUTHORIZATION {user}")
    grant = {"allow_writes": True, "owned_schemas": [schema]}
    create = f"CREATE VIEW {schema}.s AS SELECT name, setting FROM pg_catalog.pg_settings"
    update = f"UPDATE {schema}.s SET setting = 'pwned' WHERE name = 'search_path'"
    assert check_sql(create, max_bytes=100_000, **grant) and check_sql(update, max_bytes=100_000, **grant)
    api.run(create, DbUser=user)
    failed = api.run(update, expect="FAILED", DbUser=user)
    assert "permission denied" in failed["Error"]


def test_what_the_emulator_itself_calls_on_a_tenants_connection_stays_open(api):
    """The emulator keeps pg_last_copy_id() with set_config and installs stl_load_errors under a transaction-level
    advisory lock, on the tenant's own connection (the COPY tests run both as tenants)."""
    for function in ("set_config(text, text, boolean)", "pg_advisory_xact_lock(bigint)"):
        assert api.rows(f"SELECT has_function_privilege('public', '{function}', 'execute')") == [[True]]


def test_every_database_a_request_may_name_is_closed(api, name):
    """Only template1 and the default database were: a request naming ``postgres`` (initdb's, made before) had them
    all (diff review)."""
    user = f"{name}_reader"
    api.run(f"CREATE USER {user}")
    failed = api.run("SELECT lo_from_bytea(0, 'kept') > 0 AS made", expect="FAILED", DbUser=user, Database="postgres")
    assert "permission denied for function" in failed["Error"]
