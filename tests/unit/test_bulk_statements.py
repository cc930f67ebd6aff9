"""Statements of a load and an export the first tests do not pin (found by the mutation review)."""

from __future__ import annotations

import re
import sqlite3

import pytest
import sqlglot

from events import Delivery, ResultFormat
from spectra.bulk.csvfiles import BulkInputError
from spectra.bulk.lifecycle import export_statement
from spectra.bulk.models import BulkOperation, ColumnDelimiter
from spectra.bulk.sql import (
    FAILED,
    NO_REJECTED_ROWS,
    REJECTED_ROWS,
    STAGE,
    check_statement_sizes,
    copy_statement,
    load_statements,
    max_errors,
    unload_statement,
)
from spectra.delivery import statement_sql
from spectra.jobs import Job, new_job_id, utcnow
from tests.unit.bulk_helpers import bulk_job, run, sqlite_warehouse
from tests.unit.fakes import make_settings
from tests.unit.test_bulk_sql import PLAIN, TARGET, load

pytestmark = pytest.mark.unit


def test_a_delete_stages_the_files_other_columns_as_text_so_they_fail_no_row():
    statements, _ = load(BulkOperation.DELETE, columns=["id", "amount", "born"])
    assert statements[1] == (
        f'CREATE TEMP TABLE {STAGE} AS SELECT "id", CAST(NULL AS varchar(65535)) AS "amount",'
        f' CAST(NULL AS varchar(65535)) AS "born" FROM {TARGET} WHERE 1 = 0'
    )


@pytest.mark.parametrize("delimiter", [ColumnDelimiter.TAB, ColumnDelimiter.PIPE])
def test_a_bulk_query_job_unloads_in_its_column_delimiter(delimiter):
    job = bulk_job(BulkOperation.QUERY, query="select 1 as a, 2 as b", column_delimiter=delimiter)
    sql = export_statement(make_settings(), job)
    assert f"FORMAT AS CSV HEADER DELIMITER AS '{delimiter.char}'" in sql


def test_a_gzip_unload_is_compressed():
    assert " GZIP " in unload_statement("select 1", "s3://r/p/part-", role="default", gzip=True)


def test_a_csv_export_unloads_gzip_files():
    now = utcnow()
    job = Job(
        job_id=new_job_id(),
        tenant_id="acme",
        db_user="tenant_acme",
        sql="select 1 as a",
        created_at=now,
        updated_at=now,
        delivery=Delivery.EXPORT,
        format=ResultFormat.CSV,
    )
    assert " GZIP " in statement_sql(make_settings(), job)


# -- found by mutation testing spectra/bulk/sql.py: behaviour the tests above did not hold ---------------------------


def test_the_rejected_rows_are_the_last_copys_own_trimmed_and_in_file_and_line_order():
    """What failedResults lists for an insert: Redshift's stl_load_errors keeps every COPY's rejected rows (other
    jobs', the tenant's earlier loads) in blank-padded CHAR(n) columns. Only the COPY just run counts, each text
    field without its padding (the result files match the file name and line to the row sent), in file and line
    order. Run on SQLite with the padding Redshift gives."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE stl_load_errors (query, filename, line_number, colname, err_reason)")
    db.create_function("pg_last_copy_id", 0, lambda: 7)
    db.executemany(
        "INSERT INTO stl_load_errors VALUES (?, ?, ?, ?, ?)",
        [
            (7, "s3://in/b.csv   ", 2, "amount   ", "Invalid digit   "),
            (6, "s3://in/a.csv   ", 2, "id   ", "an earlier COPY's   "),
            (7, "s3://in/a.csv   ", 9, "id   ", "Invalid digit   "),
            (7, "s3://in/a.csv   ", 3, "name   ", "String length exceeds DDL length   "),
            (8, "s3://in/a.csv   ", 4, "id   ", "a later COPY's   "),
        ],
    )
    assert run(db, REJECTED_ROWS) == [
        ("s3://in/a.csv", 3, "name", "String length exceeds DDL length"),
        ("s3://in/a.csv", 9, "id", "Invalid digit"),
        ("s3://in/b.csv", 2, "amount", "Invalid digit"),
    ]


def test_a_serverless_load_reads_no_rejected_rows_in_the_same_four_columns():
    """Redshift Serverless: MAXERROR 0, and in place of stl_load_errors a SELECT of the same columns and no row, so
    completion reads the answer as it reads a provisioned cluster's, and finds nothing rejected (a row there would
    fail a record that loaded)."""
    assert max_errors(250, serverless=True) == 0 and max_errors(250, serverless=False) == 250
    statements, plan = load_statements(bulk_job(BulkOperation.INSERT), ["id"], [PLAIN], role="default", max_errors=0)
    assert statements[plan.copies[0][1]] == NO_REJECTED_ROWS and "MAXERROR 0" in statements[plan.copies[0][0]]
    cursor = sqlite3.connect(":memory:").execute(*sqlglot.transpile(NO_REJECTED_ROWS, read="redshift", write="sqlite"))
    assert (cursor.fetchall(), len(cursor.description)) == ([], 4)


@pytest.mark.parametrize("operation", [BulkOperation.UPDATE, BulkOperation.UPSERT])
def test_a_null_in_any_not_null_column_refuses_its_row_naming_the_first(operation):
    """Each row holding NULL for any of the NOT NULL columns is refused (one such row left staged fails the whole
    UPDATE or INSERT, and the job with it), its reason naming the first such column of the file; a row with all of
    them set is not refused. Run on SQLite."""
    columns = ["id", "name", "city"]
    statements, _ = load(operation, columns=columns, not_null=["name", "city"])
    db = sqlite_warehouse(columns, [(i, "old", "old") for i in "1234"])
    run(db, next(s for s in statements if s.startswith(f"CREATE TEMP TABLE {STAGE}")))
    rows = [("1", None, "x"), ("2", "a", None), ("3", None, None), ("4", "a", "b")]
    db.executemany(f"INSERT INTO {STAGE} VALUES (?, ?, ?)", rows)  # what COPY loaded
    for sql in statements:
        if sql.startswith((f"DELETE FROM {STAGE} WHERE", f"CREATE TEMP TABLE {FAILED}", f"INSERT INTO {FAILED}")):
            run(db, sql)
    assert sorted(run(db, f"SELECT id, reason FROM {FAILED}")) == [
        ("1", "name: missing data for a NOT NULL column"),
        ("2", "city: missing data for a NOT NULL column"),
        ("3", "name: missing data for a NOT NULL column"),
    ]


def test_every_varchar_the_statements_cast_to_is_one_redshift_has():
    """Redshift's VARCHAR holds at most 65,535 bytes and refuses a larger length; the emulator's PostgreSQL takes
    one, so only the statement's text can show it."""
    for operation in (BulkOperation.UPDATE, BulkOperation.UPSERT, BulkOperation.DELETE):
        statements, _ = load(operation, not_null=["city"])
        lengths = [int(n) for sql in statements for n in re.findall(r"varchar\((\d+)\)", sql, flags=re.IGNORECASE)]
        assert lengths and max(lengths) <= 65535, (operation, lengths)


@pytest.mark.parametrize("operation", [BulkOperation.UPDATE, BulkOperation.UPSERT, BulkOperation.DELETE])
def test_the_outcomes_are_unloaded_as_the_result_files_read_them(operation):
    """spectra.bulk.outcomes reads the outcome parts as plain CSV, comma-separated, after a header line: whatever
    the job's own delimiter, and never compressed."""
    url = "s3://results/acme/b_1/load/outcome_"
    statements, _ = load(operation, outcome_url=url, column_delimiter=ColumnDelimiter.PIPE)
    unload = statements[-1]
    assert unload.startswith("UNLOAD ('SELECT id::varchar(65535), reason FROM bulk_failed")
    assert unload.endswith(
        f" TO '{url}' IAM_ROLE default FORMAT AS CSV HEADER PARALLEL OFF MAXFILESIZE 100 MB MANIFEST VERBOSE"
        " ALLOWOVERWRITE"
    )


def test_an_upsert_of_the_external_id_alone_inserts_the_new_ids_and_updates_nothing():
    """A file naming only the external id: the new ids are inserted, the existing rows keep every value. There is no
    column to set, so no UPDATE (one with an empty SET list is a syntax error, which would fail the job)."""
    statements, plan = load(BulkOperation.UPSERT, columns=["id"])
    assert not any(s.startswith("UPDATE") for s in statements)
    assert f'INSERT INTO {TARGET} ("id") SELECT "id" FROM bulk_created' in statements
    assert statements[plan.updated_index] == "SELECT applied - created FROM bulk_counts"


def test_a_statement_of_the_data_apis_size_passes_and_one_byte_more_fails_naming_both():
    """The limit is the largest statement the Data API takes: one of exactly that many bytes (UTF-8, as sent) runs.
    One past it fails the job before anything runs, and the message gives the size and the limit, so the tenant
    can tell how many columns to leave out."""
    job = bulk_job(BulkOperation.UPDATE)
    statements = ["SELECT 'é'", "SELECT 1"]  # 11 bytes in UTF-8, 10 characters
    check_statement_sizes(job, ["id"], statements, max_bytes=11)
    with pytest.raises(BulkInputError) as refused:
        check_statement_sizes(job, ["id", "name"], statements, max_bytes=10)
    assert refused.value.code == "too_many_columns"
    assert "this update of 2 columns takes a statement of 11 bytes, past the warehouse's 10-byte limit: " in str(
        refused.value
    )


def test_a_copy_names_its_columns_unless_told_and_explicit_ids_only_when_asked():
    """copy_statement's defaults (the staging COPY and the integration tests use them): the file's columns listed,
    and no EXPLICIT_IDS, which only a file naming an IDENTITY column asks for (a staging table, made by CREATE
    TABLE AS, has none)."""
    sql = copy_statement(TARGET, ["id", "name"], PLAIN, bulk_job(), role="default", max_errors=5)
    assert sql.startswith(f'COPY {TARGET} ("id", "name") FROM \'{PLAIN.url}\' ') and "EXPLICIT_IDS" not in sql
    for operation in (BulkOperation.UPDATE, BulkOperation.UPSERT, BulkOperation.DELETE):
        statements, _ = load(operation)
        copies = [s for s in statements if s.startswith("COPY")]
        assert copies and all(s.startswith(f'COPY {STAGE} ("id", "name", "city") FROM ') for s in copies)
        assert not any("EXPLICIT_IDS" in s for s in copies)
