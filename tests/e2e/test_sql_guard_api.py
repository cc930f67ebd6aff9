"""The SQL guard through the API on the local stack: read-only by default, writes only into owned schemas, and
nesting refused cleanly; the statements that pass really run in the warehouse."""

import time
import uuid

import pytest

from spectra.sql_guard import MAX_NESTING
from tests.e2e.test_api_contract import error_of

pytestmark = pytest.mark.e2e


def refused(client, sql: str) -> dict:
    error = error_of(client.request("POST", "/v1/queries", json={"sql": sql}), 400)
    assert error["code"] == "sql_rejected", error
    return error


def completed(client, sql: str) -> dict:
    job = client.wait(client.submit(sql)["job_id"])
    assert job["status"] == "COMPLETED", job
    return job


def owned_schema() -> str:
    return "work_" + uuid.uuid4().hex[:12]


def test_a_flagged_tenant_creates_and_fills_a_table_in_its_own_schema_and_nowhere_else(new_tenant):
    schema = owned_schema()
    writer = new_tenant(owned_schema=schema)
    completed(writer, f"CREATE TABLE {schema}.scores (player varchar(16), points int)")
    completed(writer, f"INSERT INTO {schema}.scores VALUES ('ada', 3), ('bob', 5)")
    completed(writer, f"UPDATE {schema}.scores SET points = points + 1 WHERE player = 'ada'")
    job = completed(writer, f"SELECT player, points FROM {schema}.scores ORDER BY player")
    rows = writer.request("GET", f"/v1/jobs/{job['job_id']}/results").json()["rows"]
    assert rows == [["ada", 4], ["bob", 5]]

    # Everywhere else stays closed to it, before anything reaches the warehouse.
    assert refused(writer, "CREATE TABLE scores (a int)")["details"] == {"reason": "not_owned"}
    assert refused(writer, "INSERT INTO public.sales VALUES ('x', 1, 'y', 1)")["details"] == {"reason": "not_owned"}
    assert refused(writer, f"DROP TABLE {schema}.scores CASCADE")["details"] == {"reason": "cascade"}
    assert refused(writer, "SET search_path TO public")["details"] == {"reason": "session"}


def test_a_flagged_tenant_runs_table_ddl_written_for_a_cluster(new_tenant):
    """Redshift's table design clauses (distribution, sort keys, compression, IDENTITY) as Redshift documents and
    prints them: the guard reads them and the warehouse runs them."""
    schema = owned_schema()
    writer = new_tenant(owned_schema=schema)
    completed(
        writer,
        f"CREATE TABLE {schema}.orders (id bigint IDENTITY(1, 1) ENCODE az64, region varchar(8) ENCODE lzo DISTKEY, "
        "amount numeric(10,2) ENCODE az64) DISTSTYLE KEY INTERLEAVED SORTKEY (region, amount) ENCODE AUTO BACKUP NO",
    )
    for change in [
        "ALTER SORTKEY AUTO",
        "ALTER ENCODE AUTO",
        "ALTER COLUMN region ENCODE zstd",
        "ALTER DISTSTYLE AUTO",
    ]:
        completed(writer, f"ALTER TABLE {schema}.orders {change}")
    completed(writer, f"INSERT INTO {schema}.orders (region, amount) VALUES ('eu', 2.5), ('us', 4)")
    job = completed(writer, f"SELECT id, region FROM {schema}.orders ORDER BY id")
    assert writer.request("GET", f"/v1/jobs/{job['job_id']}/results").json()["rows"] == [[1, "eu"], [2, "us"]]
    assert refused(writer, f"ALTER TABLE {schema}.orders ALTER ENCODE zstd")["details"] == {"reason": "syntax"}


def test_an_unflagged_tenant_gets_400_sql_rejected_for_the_same_writes(new_tenant):
    schema = owned_schema()
    writer = new_tenant(owned_schema=schema)
    reader = new_tenant()
    for sql in [
        f"CREATE TABLE {schema}.intruder (a int)",
        f"INSERT INTO {schema}.scores VALUES ('eve', 99)",
        "CREATE TABLE mine (a int)",
    ]:
        error = refused(reader, sql)
        assert error["details"] == {"reason": "read_only"}
        assert "POST /v1/bulk/jobs" in error["message"]
    absent = completed(writer, f"SELECT to_regclass('{schema}.intruder') IS NULL AS absent")
    assert writer.request("GET", f"/v1/jobs/{absent['job_id']}/results").json()["rows"] == [[True]]


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("CREATE EXTERNAL TABLE spectrum.t (a int) STORED AS PARQUET LOCATION 's3://b/p/'", "external"),
        ("CREATE EXTERNAL TABLE spectrum.t STORED AS PARQUET LOCATION 's3://b/p/' AS SELECT 1", "external"),
        ("CREATE EXTERNAL VIEW spectrum.v AS SELECT 1", "external"),
        ("INSERT INTO spectrum.t SELECT 1", "read_only"),
        ("DROP TABLE public.sales", "read_only"),
        ("VACUUM sales", "maintenance"),
        ("ANALYZE sales", "maintenance"),
        ("SET wlm_query_slot_count TO 10", "session"),
        ("LOCK sales", "maintenance"),
    ],
)
def test_what_the_issue_found_is_refused_through_the_api(new_tenant, sql, reason):
    assert refused(new_tenant(), sql)["details"] == {"reason": reason}


def test_nesting_generated_sql_uses_runs_and_deeper_is_a_quick_400(new_tenant):
    client = new_tenant()
    job = completed(client, "SELECT " + "COALESCE(" * 100 + "42" + ")" * 100 + " AS answer")
    assert client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()["rows"] == [[42]]

    started = time.monotonic()
    error = refused(client, "SELECT " + "COALESCE(" * 5000 + "1" + ")" * 5000)
    assert error["details"] == {"reason": "nesting"}
    assert str(MAX_NESTING) in error["message"]
    assert time.monotonic() - started < 10  # generous for a busy machine; the guard spends well under a second


def test_a_dollar_quote_the_guard_cannot_read_is_refused_on_both_routes(new_tenant):
    """Both routes that take a tenant's SELECT: POST /v1/queries (EXPLAIN skips the placeholder binding that happened
    to stop the plain SELECT) and a Bulk API query job, whose query the executor wraps in UNLOAD."""
    client, tag = new_tenant(), "$\u00a0$"
    hidden = f"SELECT {tag} ' {tag}; DELETE FROM public.sales; -- '"
    assert refused(client, f"EXPLAIN {hidden}")["details"] == {"reason": "dollar"}
    response = client.request("POST", "/v1/bulk/jobs", json={"operation": "query", "query": hidden})
    error = error_of(response, 400)
    assert (error["code"], error["details"]) == ("sql_rejected", {"reason": "dollar"})
