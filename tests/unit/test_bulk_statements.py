"""Statements of a load and an export the first tests do not pin (found by the mutation review)."""

from __future__ import annotations

import pytest

from events import Delivery, ResultFormat
from spectra.bulk.lifecycle import export_statement
from spectra.bulk.models import BulkOperation, ColumnDelimiter
from spectra.bulk.sql import STAGE, unload_statement
from spectra.delivery import statement_sql
from spectra.jobs import Job, new_job_id, utcnow
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import make_settings
from tests.unit.test_bulk_sql import TARGET, load

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
