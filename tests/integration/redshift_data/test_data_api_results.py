"""GetStatementResult and GetStatementResultV2: paging a large result, CSV records, format rules."""

from __future__ import annotations

import csv
import io

import pytest

pytestmark = pytest.mark.integration

ROWS = 100_000


def test_100k_rows_page_through_get_statement_result(api, redshift_data):
    described = api.run(f"SELECT g AS n, 'row ' || g AS label FROM generate_series(1, {ROWS}) g")
    assert described["ResultRows"] == ROWS
    expected, pages, token = 1, 0, None
    while True:
        page = redshift_data.get_statement_result(Id=described["Id"], **({"NextToken": token} if token else {}))
        pages += 1
        assert page["TotalNumRows"] == ROWS
        for record in page["Records"]:
            assert record == [{"longValue": expected}, {"stringValue": f"row {expected}"}]
            expected += 1
        token = page.get("NextToken")
        if not token:
            break
    assert expected - 1 == ROWS
    assert pages > 1, "a 100k-row result must come in several pages"


def test_100k_rows_page_through_get_statement_result_v2_as_csv(api, redshift_data):
    described = api.run(
        f"SELECT g AS n, 'a,\"quoted\" ' || g AS label, NULL::text AS nothing FROM generate_series(1, {ROWS}) g",
        ResultFormat="CSV",
    )
    rows, pages, token = [], 0, None
    while True:
        page = redshift_data.get_statement_result_v2(Id=described["Id"], **({"NextToken": token} if token else {}))
        pages += 1
        assert page["ResultFormat"] == "CSV"
        assert [c["name"] for c in page["ColumnMetadata"]] == ["n", "label", "nothing"]
        (record,) = page["Records"]
        rows += list(csv.reader(io.StringIO(record["CSVRecords"])))
        token = page.get("NextToken")
        if not token:
            break
    assert pages > 1
    assert len(rows) == ROWS
    assert rows[0] == ["1", 'a,"quoted" 1', ""]
    assert rows[-1] == [str(ROWS), f'a,"quoted" {ROWS}', ""]


def test_csv_records_quote_what_copy_csv_quotes_a_lone_carriage_return_included(api, redshift_data):
    """As PostgreSQL's COPY CSV: a value holding a CR (even with no LF after it), an LF, a quote or a comma is
    quoted; an empty string is ""; NULL is an empty field; other control characters go as they are."""
    described = api.run(
        "SELECT * FROM (VALUES (1, 'a' || chr(13) || 'b'), (2, chr(13)), (3, 'say \"hi\"'), (4, chr(1) || chr(31)),"
        " (5, ''), (6, NULL), (7, 'x' || chr(10) || 'y')) AS t(n, s) ORDER BY n",
        ResultFormat="CSV",
    )
    (record,) = redshift_data.get_statement_result_v2(Id=described["Id"])["Records"]
    assert record["CSVRecords"] == ('1,"a\rb"\n2,"\r"\n3,"say ""hi"""\n4,\x01\x1f\n5,""\n6,\n7,"x\ny"\n')


def test_empty_result_has_columns_and_no_records(api, redshift_data):
    described = api.run("SELECT 1 AS one WHERE false")
    assert described["HasResultSet"] is True and described["ResultRows"] == 0
    result = redshift_data.get_statement_result(Id=described["Id"])
    assert result["Records"] == [] and result["TotalNumRows"] == 0
    assert [c["name"] for c in result["ColumnMetadata"]] == ["one"]


def test_result_calls_check_the_result_format(api, redshift_data):
    as_json = api.run("SELECT 1")
    as_csv = api.run("SELECT 1", ResultFormat="CSV")
    with pytest.raises(redshift_data.exceptions.ValidationException, match="GetStatementResult"):
        redshift_data.get_statement_result_v2(Id=as_json["Id"])
    with pytest.raises(redshift_data.exceptions.ValidationException, match="GetStatementResultV2"):
        redshift_data.get_statement_result(Id=as_csv["Id"])
    assert redshift_data.describe_statement(Id=as_csv["Id"])["ResultFormat"] == "CSV"


def test_result_of_a_failed_statement_is_a_validation_error(api, redshift_data):
    failed = api.run("SELECT 1/0", expect="FAILED")
    assert "division by zero" in failed["Error"]
    with pytest.raises(redshift_data.exceptions.ValidationException, match="FAILED"):
        redshift_data.get_statement_result(Id=failed["Id"])


def test_a_forged_result_token_is_a_validation_error(api, redshift_data):
    described = api.run("SELECT 1")
    with pytest.raises(redshift_data.exceptions.ValidationException, match="NextToken"):
        redshift_data.get_statement_result(Id=described["Id"], NextToken="garbage")


def test_the_row_limit_counts_bytes_not_characters(api):
    """The Data API allows 64 KB per row: 40,000 'é' are 80,000 bytes, refused as on AWS, where characters let them
    through (found by the fidelity review); 60,000 ASCII characters pass."""
    for result_format in ("JSON", "CSV"):
        assert api.run("SELECT repeat('a', 60000) AS v", ResultFormat=result_format)["ResultRows"] == 1
        # 24,000 bytes, which JSON escapes into 72,000 characters: accepted (the row's bytes count, not its JSON)
        assert api.run("SELECT repeat('é', 12000) AS v", ResultFormat=result_format)["ResultRows"] == 1
        refused = api.run("SELECT repeat('é', 40000) AS v", expect="FAILED", ResultFormat=result_format)
        assert "Packet for query is too large" in refused["Error"]
