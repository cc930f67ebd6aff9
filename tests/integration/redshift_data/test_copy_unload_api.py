"""COPY and UNLOAD through boto3's ``redshift-data`` client: the issue's round trip via moto S3, end to end.

The statements run on the Data API emulator as an ordinary database user (DbUser), so the load honours that user's
privileges; the rejected rows of a MAXERROR load are read back from ``stl_load_errors`` through the API too.
"""

from __future__ import annotations

import csv
import io
import json
import uuid

import psycopg
import pytest

from local.redshift_data.engine import BULK_RESTART_SETTINGS, BULK_SETTINGS
from local.redshift_data.redshift_sql import install_system_tables
from spectra.bulk.models import BulkOperation
from spectra.bulk.sql import LOADED_ROWS, REJECTED_ROWS, Manifest, copy_statement, load_statements
from tests.fixtures.redshift import CLUSTER, DATABASE, wait_for_statement
from tests.unit.bulk_helpers import bulk_job

pytestmark = pytest.mark.integration


def run(client, sql: str, expect: str = "FINISHED", **kwargs) -> dict:
    statement_id = client.execute_statement(Sql=sql, Database=DATABASE, ClusterIdentifier=CLUSTER, **kwargs)["Id"]
    described = wait_for_statement(client, statement_id, timeout=60)
    assert described["Status"] == expect, described
    return described


def records(client, sql: str, **kwargs) -> list[list]:
    described = run(client, sql, **kwargs)
    result = client.get_statement_result(Id=described["Id"])
    return [[next(iter(field.values())) if not field.get("isNull") else None for field in r] for r in result["Records"]]


@pytest.fixture(scope="module", autouse=True)
def system_tables(redshift_emulator):
    """stl_load_errors in the emulator's database (idempotent; the emulator's own start-up may already have run it)."""
    with psycopg.connect(redshift_emulator.admin_database_url, autocommit=True) as admin:
        install_system_tables(admin)


@pytest.fixture
def s3(local_aws):
    return local_aws.client("s3")


@pytest.fixture
def bucket(s3):
    name = "copy-unload-api-" + uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def loader(redshift_data):
    """A database user that owns its table, created through the API by the admin user."""
    user = "loader_" + uuid.uuid4().hex[:8]
    run(redshift_data, f"CREATE USER {user} PASSWORD 'Secret123'")
    run(redshift_data, f"GRANT CREATE ON SCHEMA public TO {user}")
    return user


def test_unload_then_copy_round_trip_through_the_data_api(redshift_data, s3, bucket, loader):
    source, target = f"src_{loader}", f"dst_{loader}"
    run(redshift_data, f"CREATE TABLE {source} (id int, name varchar(20), amount numeric(10,2))", DbUser=loader)
    run(
        redshift_data,
        f"INSERT INTO {source} SELECT g, 'name ' || g, g * 0.5 FROM generate_series(1, 1000) g",
        DbUser=loader,
    )

    unloaded = run(
        redshift_data,
        f"UNLOAD ('select * from {source} where id > 0') TO 's3://{bucket}/export/' "
        "IAM_ROLE 'arn:aws:iam::123456789012:role/unload' FORMAT CSV HEADER GZIP MANIFEST",
        DbUser=loader,
    )
    assert unloaded["ResultRows"] == 1000
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="export/")["Contents"]]
    assert keys == ["export/0000_part_00.gz", "export/manifest"]

    run(redshift_data, f"CREATE TABLE {target} (LIKE {source})", DbUser=loader)
    copied = run(
        redshift_data,
        f"COPY {target} FROM 's3://{bucket}/export/manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/copy' "
        "MANIFEST CSV GZIP IGNOREHEADER 1",
        DbUser=loader,
    )
    assert copied["ResultRows"] == 1000
    assert records(redshift_data, "SELECT pg_last_copy_count()", DbUser=loader) == [[0]]  # another session's COPY
    batch = redshift_data.batch_execute_statement(
        Sqls=[
            f"COPY {target} FROM 's3://{bucket}/export/manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/copy' "
            "MANIFEST CSV GZIP IGNOREHEADER 1",
            "SELECT pg_last_copy_count()",
        ],
        Database=DATABASE,
        ClusterIdentifier=CLUSTER,
        DbUser=loader,
    )
    finished = wait_for_statement(redshift_data, batch["Id"], timeout=60)
    assert finished["Status"] == "FINISHED", finished
    counted = redshift_data.get_statement_result(Id=finished["SubStatements"][1]["Id"])["Records"]
    assert counted == [[{"longValue": 1000}]]  # Redshift's pg_last_copy_count(): the rows the session's COPY loaded
    # (the table holds each row twice now: the comparison below is of sets)
    difference = records(
        redshift_data,
        f"SELECT count(*) FROM ((SELECT * FROM {source} EXCEPT SELECT * FROM {target}) "
        f"UNION ALL (SELECT * FROM {target} EXCEPT SELECT * FROM {source})) d",
        DbUser=loader,
    )
    assert difference == [[0]]


def test_copy_with_bad_rows_through_the_data_api(redshift_data, s3, bucket, loader):
    table = f"t_{loader}"
    run(redshift_data, f"CREATE TABLE {table} (id int, amount numeric(10,2))", DbUser=loader)
    body = io.StringIO()
    csv.writer(body).writerows([["id", "amount"], [1, "1.5"], [2, "oops"], [3, "3"]])
    s3.put_object(Bucket=bucket, Key="bad.csv", Body=body.getvalue().encode())

    failed = run(
        redshift_data, f"COPY {table} FROM 's3://{bucket}/bad.csv' CSV IGNOREHEADER 1", expect="FAILED", DbUser=loader
    )
    assert "Check 'stl_load_errors' system table for details" in failed["Error"]
    assert records(redshift_data, f"SELECT count(*) FROM {table}", DbUser=loader) == [[0]]

    loaded = run(
        redshift_data, f"COPY {table} FROM 's3://{bucket}/bad.csv' CSV IGNOREHEADER 1 MAXERROR 1", DbUser=loader
    )
    assert loaded["ResultRows"] == 2
    errors = records(
        redshift_data,
        f"SELECT line_number, trim(colname), err_code FROM stl_load_errors "
        f"WHERE tbl = '{table}'::regclass::oid::int ORDER BY query, line_number",
        DbUser=loader,
    )
    assert errors == [[3, "amount", 1209], [3, "amount", 1209]]  # one per COPY: the failed one and the tolerant one


def test_each_file_of_a_manifest_is_read_on_its_own_and_a_backslash_dot_line_is_a_row(
    redshift_data, s3, bucket, loader
):
    """Redshift reads each file on its own, and has no end-of-data marker. The emulator streamed every file into one
    COPY: a quote left open at the end of one file took the next file's rows into that field, and a line that is
    only \\. (PostgreSQL's marker) dropped every row after it without a word."""
    table = f"files_{loader}"
    run(redshift_data, f"CREATE TABLE {table} (name varchar(40), n int)", DbUser=loader)
    files = {"open.csv": b'ann,1\n"bob,2\n', "next.csv": b"cid,3\n", "marker.csv": b"dan,4\n\\.\neve,5\n"}
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    entries = [{"url": f"s3://{bucket}/{key}", "mandatory": True} for key in files]
    s3.put_object(Bucket=bucket, Key="files.manifest", Body=json.dumps({"entries": entries}).encode())
    loaded = run(
        redshift_data,
        f"COPY {table} FROM 's3://{bucket}/files.manifest' IAM_ROLE 'arn:aws:iam::123456789012:role/copy' "
        "MANIFEST CSV MAXERROR 10",
        DbUser=loader,
    )
    assert records(redshift_data, f"SELECT name, n FROM {table} ORDER BY n", DbUser=loader) == [
        ["ann", 1],
        ["cid", 3],
        ["dan", 4],
        ["eve", 5],
    ]
    assert loaded["ResultRows"] == 4
    rejected = records(
        redshift_data,
        f"SELECT trim(filename), line_number FROM stl_load_errors WHERE tbl = '{table}'::regclass::oid::int"
        " ORDER BY 1, 2",
        DbUser=loader,
    )
    assert rejected == [[f"s3://{bucket}/marker.csv", 2], [f"s3://{bucket}/open.csv", 2]]


def test_an_unloads_query_is_read_as_any_statement(redshift_data, s3, bucket, loader):
    """Its quoted names folded and Redshift's functions mapped, as every other statement's: the header said Email
    where Redshift writes email, and NVL failed."""
    run(
        redshift_data,
        f"UNLOAD ('select nvl(null, 1) as \"Email\"') TO 's3://{bucket}/folded/' CSV HEADER PARALLEL OFF",
        DbUser=loader,
    )
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="folded/")["Contents"]]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines() == ["email", "1"]


def test_copy_folds_quoted_names_as_every_statement_does(redshift_data, s3, bucket, loader):
    """On Redshift "Orders" and "Id" are orders and id in CREATE TABLE and COPY alike; COPY's own parser kept the
    case, so the table the CREATE made was not found (found by the diff review)."""
    table = "Orders_" + uuid.uuid4().hex[:6]
    run(redshift_data, f'CREATE TABLE "{table}" ("Id" int, "Name" varchar(10))', DbUser=loader)
    s3.put_object(Bucket=bucket, Key="quoted/a.csv", Body=b"1,x\n")
    run(redshift_data, f'COPY "{table}" ("Id", "Name") FROM \'s3://{bucket}/quoted/\' CSV', DbUser=loader)
    assert records(redshift_data, f"SELECT id, name FROM {table.lower()}", DbUser=loader) == [[1, "x"]]
    # unquoted, only ASCII letters fold (PostgreSQL's and Redshift's rule): Ä stays, where str.lower made it ä
    other = "Äpfel_" + uuid.uuid4().hex[:6]
    run(redshift_data, f"CREATE TABLE {other} (id int)", DbUser=loader)
    run(redshift_data, f"COPY {other} FROM 's3://{bucket}/quoted/' CSV", DbUser=loader, expect="FAILED")  # 2 fields
    s3.put_object(Bucket=bucket, Key="one/a.csv", Body=b"7\n")
    run(redshift_data, f"COPY {other} FROM 's3://{bucket}/one/' CSV", DbUser=loader)
    assert records(redshift_data, f"SELECT id FROM {other}", DbUser=loader) == [[7]]


def test_unload_refuses_a_limit_in_its_outer_select_as_redshift_does(redshift_data, bucket, loader):
    """Redshift's UNLOAD usage notes: the query cannot use LIMIT in its outer SELECT; a nested one is the way."""
    unload = "UNLOAD ('{}') TO 's3://" + bucket + "/lim/part-' IAM_ROLE 'arn:aws:iam::123456789012:role/u' CSV"
    refused = run(redshift_data, unload.format("select 1 as a limit 1"), expect="FAILED", DbUser=loader)
    assert "LIMIT clause is not supported in the outer SELECT of UNLOAD" in refused["Error"]
    run(redshift_data, unload.format("select * from (select 1 as a limit 1) q"), DbUser=loader)
    # the words as a column's alias or name are no clause (the export review: both were refused)
    again = unload + " ALLOWOVERWRITE"
    run(redshift_data, again.format("select 1 as limit, 2 as offset"), DbUser=loader)
    run(redshift_data, again.format("select q.limit from (select 1 as limit) q"), DbUser=loader)


def test_copy_of_a_missing_object_fails_the_statement_with_an_actionable_message(redshift_data, bucket, loader):
    table = "missing_" + uuid.uuid4().hex[:8]
    run(redshift_data, f"CREATE TABLE {table} (id int)", DbUser=loader)
    described = run(
        redshift_data, f"COPY {table} FROM 's3://{bucket}/nothing/here.csv' CSV", expect="FAILED", DbUser=loader
    )
    assert f"s3://{bucket}/nothing/here.csv" in described["Error"]
    assert "Internal error" not in described["Error"]  # the user's mistake, reported as such


def test_pg_last_copy_id_keys_the_rejected_rows_of_the_copy_just_run_in_the_same_batch(
    redshift_data, s3, bucket, loader
):
    """A batch (one transaction, one session) reads the errors of its own COPY, as bulk loads do on Redshift."""
    table = f"last_{loader}"
    run(redshift_data, f"CREATE TABLE {table} (id int, amount numeric(10,2))", DbUser=loader)
    s3.put_object(Bucket=bucket, Key="mixed.csv", Body=b"id,amount\n1,1.5\n2,oops\n3,3\nx,4\n")
    batch = redshift_data.batch_execute_statement(
        Sqls=[
            "SELECT pg_last_copy_id()",
            f"COPY {table} FROM 's3://{bucket}/mixed.csv' CSV IGNOREHEADER 1 MAXERROR 10",
            "SELECT line_number, trim(colname) FROM stl_load_errors WHERE query = pg_last_copy_id() ORDER BY 1",
        ],
        Database=DATABASE,
        ClusterIdentifier=CLUSTER,
        DbUser=loader,
    )
    described = wait_for_statement(redshift_data, batch["Id"])
    assert described["Status"] == "FINISHED", described
    before, copy, errors = described["SubStatements"]
    assert copy["ResultRows"] == 2
    assert redshift_data.get_statement_result(Id=before["Id"])["Records"] == [[{"longValue": -1}]]
    rows = redshift_data.get_statement_result(Id=errors["Id"])["Records"]
    assert [[f.get("longValue", f.get("stringValue")) for f in r] for r in rows] == [[3, "amount"], [5, "id"]]


def test_copy_into_a_table_under_row_level_security_loads_as_redshift_does(redshift_data, s3, bucket, loader):
    """PostgreSQL refuses COPY FROM into a table whose policies apply to the user; Redshift loads it. The emulator
    loads it too. Here PostgreSQL's WITH CHECK still refuses a row the user may not own, which Redshift, whose
    row-level security does not apply to INSERT or COPY, would load: the Bulk API refuses a file that names the
    owner column (README, "Whose a row is"), so nothing relies on this refusal."""
    table = "rls_" + uuid.uuid4().hex[:8]
    run(
        redshift_data,
        f"CREATE TABLE {table} (owner varchar(64) NOT NULL DEFAULT current_user, id int, note varchar(8))",
    )
    run(redshift_data, f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    run(redshift_data, f"CREATE POLICY mine ON {table} USING (owner = current_user) WITH CHECK (owner = current_user)")
    run(redshift_data, f"GRANT SELECT, INSERT ON {table} TO {loader}")
    s3.put_object(Bucket=bucket, Key="rls.csv", Body=b"id,note\n1,a\n2,b\n3,way too long\n")
    loaded = run(
        redshift_data,
        f"COPY {table} (id, note) FROM 's3://{bucket}/rls.csv' CSV IGNOREHEADER 1 MAXERROR 5",
        DbUser=loader,
    )
    assert loaded["ResultRows"] == 2  # the over-long note is rejected row by row, as without RLS
    assert records(redshift_data, f"SELECT owner, id FROM {table} ORDER BY id") == [[loader, 1], [loader, 2]]
    s3.put_object(Bucket=bucket, Key="theirs.csv", Body=b"owner,id\nsomeone_else,9\n")
    refused = run(
        redshift_data,
        f"COPY {table} (owner, id) FROM 's3://{bucket}/theirs.csv' CSV IGNOREHEADER 1",
        expect="FAILED",
        DbUser=loader,
    )
    assert "row-level security" in refused["Error"]


def test_the_embedded_postgresql_is_sized_for_bulk_work(redshift_data, loader):
    """The emulator's own PostgreSQL gets memory for bulk jobs' joins and staging tables (engine.BULK_SETTINGS), as
    every session sees it: a tenant's statement, not only the admin's."""
    wanted = {**BULK_SETTINGS, **BULK_RESTART_SETTINGS}
    names = list(wanted)
    shown = records(
        redshift_data,
        "SELECT " + ", ".join(f"pg_size_bytes(current_setting('{name}'))" for name in names),
        DbUser=loader,
    )
    expected = records(redshift_data, "SELECT " + ", ".join(f"pg_size_bytes('{wanted[name]}')" for name in names))
    assert shown == expected


def test_a_bulk_insert_batch_reads_salesforce_style_values_as_redshift_does(redshift_data, s3, bucket, loader):
    """The batch a bulk insert runs (spectra.bulk.sql: COPY ... MANIFEST CSV IGNOREHEADER 1 MAXERROR n DATEFORMAT
    'auto' TIMEFORMAT 'auto' ROUNDEC, then its rejected rows and pg_last_copy_count()) on values where PostgreSQL's
    COPY and Redshift's part: a VARCHAR(n) counts bytes (7 two-byte characters are too long for 10), \\N is COPY's
    default null string, blanks are NULL in a column that is not text. Before, the local stack loaded the long name
    and refused the other two rows."""
    table = f"t_{loader}"
    columns = "id int, name varchar(10), amount numeric(8,2), seen timestamp"
    run(redshift_data, f"CREATE TABLE {table} ({columns})", DbUser=loader)
    data = "id,name,amount,seen\n1," + "\u00e9" * 7 + ",1,\n2,\\N,\\N,\\N\n3,x,  ,2024-01-15T10:00:00.5Z\n"
    s3.put_object(Bucket=bucket, Key="in/a.csv", Body=data.encode())
    manifest = {"entries": [{"url": f"s3://{bucket}/in/a.csv", "mandatory": True}]}
    s3.put_object(Bucket=bucket, Key="in/manifest", Body=json.dumps(manifest).encode())
    copy = copy_statement(
        table,
        ["id", "name", "amount", "seen"],
        Manifest(f"s3://{bucket}/in/manifest", gzip=False),
        bulk_job(object=table),
        role="default",
        max_errors=100,
    )
    batch = redshift_data.batch_execute_statement(
        Sqls=[copy, REJECTED_ROWS, LOADED_ROWS], Database=DATABASE, ClusterIdentifier=CLUSTER, DbUser=loader
    )
    finished = wait_for_statement(redshift_data, batch["Id"], timeout=60)
    assert finished["Status"] == "FINISHED", finished
    rejected = redshift_data.get_statement_result(Id=finished["SubStatements"][1]["Id"])["Records"]
    assert [[next(iter(f.values())) for f in r] for r in rejected] == [
        [f"s3://{bucket}/in/a.csv", 2, "name", "String length exceeds DDL length"]
    ]
    counted = redshift_data.get_statement_result(Id=finished["SubStatements"][2]["Id"])["Records"]
    assert counted == [[{"longValue": 2}]]
    loaded = records(redshift_data, f"SELECT id, name, amount, seen::varchar FROM {table} ORDER BY id", DbUser=loader)
    assert loaded == [[2, None, None, None], [3, "x", None, "2024-01-15 10:00:00.5"]]


# -- a bulk change's whole batch (spectra.bulk.sql.load_statements), run as the executor runs it ----------------------


def load_batch(client, s3, bucket, user, operation, table, data, **options):
    """Upload ``data`` (CSV with its header line), run the batch of a bulk ``operation`` keyed on ``id`` against
    ``table`` as ``user``; the plan and each sub-statement's rows."""
    key = f"{table}/{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=bucket, Key=f"{key}.csv", Body=data.encode())
    manifest = {"entries": [{"url": f"s3://{bucket}/{key}.csv", "mandatory": True}]}
    s3.put_object(Bucket=bucket, Key=f"{key}.manifest", Body=json.dumps(manifest).encode())
    columns = data.split("\n", 1)[0].split(",")
    statements, plan = load_statements(
        bulk_job(operation, object=table, external_id_field="id"),
        columns,
        [Manifest(f"s3://{bucket}/{key}.manifest", gzip=False)],
        role="default",
        max_errors=100,
        **options,
    )
    batch = client.batch_execute_statement(Sqls=statements, Database=DATABASE, ClusterIdentifier=CLUSTER, DbUser=user)
    finished = wait_for_statement(client, batch["Id"], timeout=60)
    assert finished["Status"] == "FINISHED", finished
    answers = [
        [
            [None if f.get("isNull") else next(iter(f.values())) for f in row]
            for row in client.get_statement_result(Id=sub["Id"])["Records"]
        ]
        if sub.get("HasResultSet")
        else None
        for sub in finished["SubStatements"]
    ]
    return plan, answers


def test_an_update_on_an_integer_id_changes_only_the_rows_it_reports_applied(redshift_data, s3, bucket, loader):
    """An integer external id (the staging SQL casts it to text to find blanks and to list it), and rows refused for
    each reason: a duplicated id, a missing one, one no row has, a NULL for a NOT NULL column. Only the one row
    applied changes: the refused rows leave the staging table before the UPDATE (left in, the duplicated id would
    be set from either of its rows, and the NULL would fail the whole batch)."""
    table = f"upd_{loader}"
    run(redshift_data, f"CREATE TABLE {table} (id int, name varchar(20), n int NOT NULL)", DbUser=loader)
    run(redshift_data, f"INSERT INTO {table} VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3)", DbUser=loader)
    data = "id,name,n\n1,uno,10\n2,dos,20\n2,deux,21\n,nobody,0\n9,nueve,90\n3,tres,\n"
    plan, answers = load_batch(redshift_data, s3, bucket, loader, BulkOperation.UPDATE, table, data, not_null=["n"])
    assert answers[plan.loaded[0]] == [[6]] and answers[plan.copies[0][1]] == []
    assert answers[plan.applied_index] == [[1]]
    assert sorted(answers[plan.outcome_index]) == [
        ["2", "duplicate external id"],
        ["3", "n: missing data for a NOT NULL column"],
        ["9", "not found"],
    ]
    assert records(redshift_data, f"SELECT id, name, n FROM {table} ORDER BY id", DbUser=loader) == [
        [1, "uno", 10],
        [2, "two", 2],
        [3, "three", 3],
    ]


def test_an_upsert_on_an_integer_id_lists_its_outcomes_as_text(redshift_data, s3, bucket, loader):
    """The outcome SELECT is a UNION of the refused ids and the created or updated ones: each branch casts its id
    to text, or PostgreSQL, like Redshift, refuses to UNION an integer with text and the whole load fails."""
    table = f"ups_{loader}"
    run(redshift_data, f"CREATE TABLE {table} (id int, name varchar(20))", DbUser=loader)
    run(redshift_data, f"INSERT INTO {table} VALUES (1, 'one'), (2, 'two')", DbUser=loader)
    data = "id,name\n1,uno\n5,cinco\n6,seis\n7,siete\n7,sept\n"
    plan, answers = load_batch(redshift_data, s3, bucket, loader, BulkOperation.UPSERT, table, data)
    assert (answers[plan.applied_index], answers[plan.updated_index]) == ([[3]], [[1]])
    assert sorted(answers[plan.outcome_index]) == [["1", "updated"], ["7", "duplicate external id"]]
    assert records(redshift_data, f"SELECT id, name FROM {table} ORDER BY id", DbUser=loader) == [
        [1, "uno"],
        [2, "two"],
        [5, "cinco"],
        [6, "seis"],
    ]


def test_an_upsert_of_the_id_alone_inserts_the_new_ids_and_keeps_the_rest(redshift_data, s3, bucket, loader):
    """A file naming only the external id has no column to set: the batch runs no UPDATE (an empty SET list would
    fail the job), inserts the new ids and leaves the existing rows as they were."""
    table = f"ids_{loader}"
    run(redshift_data, f"CREATE TABLE {table} (id int, name varchar(20))", DbUser=loader)
    run(redshift_data, f"INSERT INTO {table} VALUES (1, 'one')", DbUser=loader)
    plan, answers = load_batch(redshift_data, s3, bucket, loader, BulkOperation.UPSERT, table, "id\n1\n8\n")
    assert (answers[plan.applied_index], answers[plan.updated_index]) == ([[2]], [[1]])
    assert records(redshift_data, f"SELECT id, name FROM {table} ORDER BY id", DbUser=loader) == [[1, "one"], [8, None]]


def test_a_delete_reads_the_id_alone_whatever_the_files_other_columns_hold(redshift_data, s3, bucket, loader):
    """A table's export loaded as a delete: its other columns, a NOT NULL one's NULL marker included, are not the
    delete's to check; every row whose id the table has is deleted, the others are "not found"."""
    table = f"del_{loader}"
    run(redshift_data, f"CREATE TABLE {table} (id int, n int NOT NULL)", DbUser=loader)
    run(redshift_data, f"INSERT INTO {table} VALUES (1, 1), (2, 2), (3, 3)", DbUser=loader)
    data = "id,n\n1,1\n2,\\N\n4,x\n"
    plan, answers = load_batch(redshift_data, s3, bucket, loader, BulkOperation.DELETE, table, data, not_null=["n"])
    assert answers[plan.applied_index] == [[2]]
    assert answers[plan.outcome_index] == [["4", "not found"]]
    assert records(redshift_data, f"SELECT id FROM {table}", DbUser=loader) == [[3]]
