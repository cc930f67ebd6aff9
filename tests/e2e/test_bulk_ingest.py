"""Bulk ingest through both doors (the Bulk API and the S3 drop), for insert, update, upsert and delete: the table's
contents and the successful, failed and unprocessed files, row by row, with every input record in exactly one file."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.fixtures.bulk import BulkClient, csv_bytes
from tests.fixtures.stack import wait_until

pytestmark = pytest.mark.e2e

HEADER = ["email", "name", "city", "score"]
EXISTING = [
    ("ann@x", "Ann", "Oslo", 10, None),
    ("bob@x", "Bob", "Rome", 20, None),
    ("cid@x", "Cid", "Lima", 30, None),
]


def run(client: BulkClient, door: str, operation: str, data: bytes, **options) -> dict:
    """One job through the given door, waited for until its result files exist."""
    if door == "api":
        return client.load(operation, data, **options)
    sidecar = {"operation": operation, **options}
    return client.dropped_job(client.drop(data, sidecar=sidecar))


def check_accounting(client: BulkClient, job: dict, sent: list[list[str]]) -> tuple[list, list, list]:
    """Every sent record is in exactly one result file, as sent; the job's counts match the files."""
    successful = client.results(job["id"], "successfulResults")
    failed = client.results(job["id"], "failedResults")
    unprocessed = client.results(job["id"], "unprocessedrecords")
    assert successful[0][:2] == ["sf__Id", "sf__Created"]
    assert failed[0][:2] == ["sf__Id", "sf__Error"]
    assert successful[0][2:] == failed[0][2:] == unprocessed[0] == sent[0]
    rows = [r[2:] for r in successful[1:]] + [r[2:] for r in failed[1:]] + unprocessed[1:]
    assert sorted(rows) == sorted(sent[1:])
    assert job["numberRecordsProcessed"] == len(successful) - 1 + len(failed) - 1
    assert job["numberRecordsFailed"] == len(failed) - 1
    # Bulk 2.0's timings, from the job's start to its end (the load runs at least one statement)
    assert job["totalProcessingTime"] == job["apiActiveProcessingTime"] > 0 and job["apexProcessingTime"] == 0
    assert job["apiVersion"] == 1.0 and isinstance(job["apiVersion"], float)  # a number, as Bulk 2.0's 58.0
    return successful[1:], failed[1:], unprocessed[1:]


@pytest.mark.parametrize("door", ["api", "s3"])
def test_insert_loads_good_rows_and_lists_bad_ones_as_sent(door, bulk_tenant, warehouse):
    client = bulk_tenant()
    sent = [
        HEADER,
        ["ann@x", "Ann", "Oslo", "1"],
        ["bob@x", "Bob", "", "not a number"],
        ["cid@x", "Cid", "Lima", "3"],
        ["dee@x", "D" * 80, "Kyiv", "4"],  # name is varchar(64)
        ["eve@x", 'Eve, "the" one', "multi\nline", "5"],
    ]
    job = run(client, door, "insert", csv_bytes(sent))
    assert job["state"] == "JobComplete", job
    assert job["source"] == door
    successful, failed, unprocessed = check_accounting(client, job, sent)
    assert job["numberRecordsProcessed"] == 5 and job["numberRecordsFailed"] == 2
    assert [r[:2] for r in successful] == [["", "true"]] * 3
    errors = {r[2]: r[1] for r in failed}
    assert set(errors) == {"bob@x", "dee@x"}
    assert errors["bob@x"].startswith("score:") and "integer" in errors["bob@x"]
    assert errors["dee@x"] == "name: String length exceeds DDL length"  # Redshift's words (its err_code 1204)
    assert unprocessed == []
    assert client.rows(warehouse) == [
        ("ann@x", "Ann", "Oslo", 1, None),
        ("cid@x", "Cid", "Lima", 3, None),
        ("eve@x", 'Eve, "the" one', "multi\nline", 5, None),
    ]


def test_an_identity_column_is_numbered_by_the_warehouse_or_loaded_from_the_file(bulk_tenant, warehouse):
    """A table written for a cluster, with an IDENTITY column (README, bulk loads, step 1): a file leaving the column
    out has the warehouse number its rows from the seed by the step; one naming it loads its values (the COPY then
    lists its columns, with EXPLICIT_IDS); an upsert naming it fails with the warehouse's message, nothing written."""
    client = bulk_tenant()
    client.table = f"tickets_{client.tenant_id}"
    warehouse.run(
        f"CREATE TABLE {client.table} (id bigint IDENTITY(100, 10) ENCODE az64, subject varchar(32) ENCODE lzo)"
        " DISTSTYLE AUTO SORTKEY AUTO",
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON {client.table} TO "{client.api.db_user}"',
    )
    for sent in ([["subject"], ["one"], ["two"]], [["id", "subject"], ["7", "seven"]]):
        job = client.load("insert", csv_bytes(sent))
        assert (job["state"], job["numberRecordsFailed"]) == ("JobComplete", 0), job
    assert client.rows(warehouse) == [(7, "seven"), (100, "one"), (110, "two")]
    job = client.load(
        "upsert", csv_bytes([["id", "subject"], ["7", "SEVEN"], ["8", "eight"]]), externalIdFieldName="id"
    )
    assert job["state"] == "Failed" and 'column "id"' in job["errorMessage"], job
    assert client.rows(warehouse) == [(7, "seven"), (100, "one"), (110, "two")]


def test_dates_load_as_iso_8601_exports_write_them(bulk_tenant, warehouse):
    """The local stack takes them whatever COPY says; on Redshift it is DATEFORMAT 'auto' that does, which the unit
    test of the COPY statement pins (tests/unit/test_bulk_sql.py)."""
    client = bulk_tenant()
    sent = [
        [*HEADER, "joined"],
        ["ann@x", "Ann", "Oslo", "1", "2024-01-15T10:00:00.000Z"],
        ["bob@x", "Bob", "", "2", ""],
    ]
    job = client.load("insert", csv_bytes(sent))
    assert (job["state"], job["numberRecordsFailed"]) == ("JobComplete", 0), job
    assert client.rows(warehouse) == [("ann@x", "Ann", "Oslo", 1, "2024-01-15"), ("bob@x", "Bob", "", 2, None)]


@pytest.mark.parametrize("operation", ["update", "upsert"])
def test_an_empty_field_of_a_not_null_column_fails_its_row_not_the_job(operation, bulk_tenant, warehouse):
    """The NULL failed the UPDATE or MERGE, and every row with it (found by the bulk values review); an insert's COPY
    refuses such a row on its own, and so do these now."""
    client = bulk_tenant(EXISTING)
    warehouse.run(f"ALTER TABLE {client.table} ADD COLUMN rank int NOT NULL DEFAULT 0")
    sent = [
        ["email", "name", "city", "rank"],
        ["ann@x", "Ann", "Bergen", "7"],
        ["bob@x", "Bob", "Turin", ""],
        ["new@x", "Neo", "Nuuk", ""],
    ]
    job = client.load(operation, csv_bytes(sent), externalIdFieldName="email")
    assert job["state"] == "JobComplete", job
    successful, failed, _ = check_accounting(client, job, sent)
    assert [r[2:] for r in successful] == [["ann@x", "Ann", "Bergen", "7"]]
    reason = "rank: missing data for a NOT NULL column"
    expected = [["bob@x", reason], ["new@x", reason if operation == "upsert" else "not found"]]
    assert sorted(r[:2] for r in failed) == expected
    described = warehouse.run(f"SELECT email, city, rank FROM {client.table} ORDER BY email")
    rows = warehouse.client.get_statement_result(Id=described["Id"])["Records"]
    assert [[next(iter(f.values())) for f in r] for r in rows] == [
        ["ann@x", "Bergen", 7],
        ["bob@x", "Rome", 0],
        ["cid@x", "Lima", 0],
    ]


@pytest.mark.parametrize("door", ["api", "s3"])
def test_a_bulk_2_update_and_delete_naming_no_key_go_by_id(door, bulk_tenant, warehouse):
    """As a Bulk 2.0 script sends them: no externalIdFieldName, the key in an ``Id`` column."""
    client = bulk_tenant()
    client.use_table(warehouse, "nums", "id int NOT NULL, name varchar(20)", "(1, 'one'), (2, 'two'), (3, 'three')")
    updated = run(client, door, "update", b"Id,name\n1,uno\n9,nine\n")
    assert (updated["numberRecordsProcessed"], updated["numberRecordsFailed"]) == (2, 1), updated
    assert updated["externalIdFieldName"] == "id"
    deleted = run(client, door, "delete", b"Id\n2\n")
    assert (deleted["numberRecordsProcessed"], deleted["numberRecordsFailed"]) == (1, 0), deleted
    assert client.rows(warehouse) == [(1, "uno"), (3, "three")]


@pytest.mark.parametrize("door", ["api", "s3"])
def test_update_changes_matching_rows_and_fails_unknown_and_duplicated_ids(door, bulk_tenant, warehouse):
    client = bulk_tenant(EXISTING)
    sent = [
        ["email", "city", "score"],
        ["ann@x", "Bergen", "11"],
        ["zed@x", "Nowhere", "1"],  # no such row
        ["bob@x", "Turin", "21"],
        ["bob@x", "Milan", "22"],  # bob twice: both refused, bob unchanged
        ["", "Void", "0"],  # no id
        ["cid@x", "Cusco", "-5"],  # CHECK (score >= 0) would fail the whole statement: see the failure test
    ][:-1]
    job = run(client, door, "update", csv_bytes(sent), externalIdFieldName="email")
    assert job["state"] == "JobComplete", job
    successful, failed, _ = check_accounting(client, job, sent)
    assert successful == [["ann@x", "false", "ann@x", "Bergen", "11"]]
    reasons = sorted((r[0], r[1]) for r in failed)
    assert reasons == [
        ("", "missing external id"),
        ("bob@x", "duplicate external id"),
        ("bob@x", "duplicate external id"),
        ("zed@x", "not found"),
    ]
    assert client.rows(warehouse) == [
        ("ann@x", "Ann", "Bergen", 11, None),
        ("bob@x", "Bob", "Rome", 20, None),
        ("cid@x", "Cid", "Lima", 30, None),
    ]


@pytest.mark.parametrize("door", ["api", "s3"])
def test_upsert_creates_and_updates_and_says_which(door, bulk_tenant, warehouse):
    client = bulk_tenant(EXISTING)
    sent = [
        HEADER,
        ["ann@x", "Ann B", "Oslo", "12"],
        ["new@x", "Neo", "Zion", "1"],
        ["two@x", "Tia", "Baku", "2"],
        ["two@x", "Tia", "Baku", "3"],  # duplicated id in one upsert file: both refused, nothing created for it
        ["bad@x", "Bad", "Nil", "x"],  # not an integer: rejected by the load
    ]
    job = run(client, door, "upsert", csv_bytes(sent), externalIdFieldName="email")
    assert job["state"] == "JobComplete", job
    successful, failed, _ = check_accounting(client, job, sent)
    assert sorted(r[:2] for r in successful) == [["ann@x", "false"], ["new@x", "true"]]
    reasons = sorted((r[0], r[1]) for r in failed)
    assert [r[0] for r in reasons] == ["bad@x", "two@x", "two@x"]
    assert reasons[0][1].startswith("score:") and "integer" in reasons[0][1]
    assert reasons[1][1] == reasons[2][1] == "duplicate external id"
    assert client.rows(warehouse) == [
        ("ann@x", "Ann B", "Oslo", 12, None),
        ("bob@x", "Bob", "Rome", 20, None),
        ("cid@x", "Cid", "Lima", 30, None),
        ("new@x", "Neo", "Zion", 1, None),
    ]


@pytest.mark.parametrize("operation", ["update", "upsert"])
def test_an_id_the_table_holds_twice_is_updated_in_both_rows(bulk_tenant, warehouse, operation):
    """No key stops a warehouse table holding an id twice. An update and an upsert of that id agree: both rows take
    the file's values, through UPDATE ... FROM (Redshift's MERGE allows no source row to match two target rows, and
    its reference's example keeps one of them, so an upsert does not use it)."""
    client = bulk_tenant([*EXISTING, ("bob@x", "Bob II", "Bern", 21, None)])
    sent = [HEADER, ["bob@x", "Bob C", "Rome", "22"]]
    job = run(client, "api", operation, csv_bytes(sent), externalIdFieldName="email")
    assert job["state"] == "JobComplete", job
    successful, failed, _ = check_accounting(client, job, sent)
    assert [r[0] for r in successful] == ["bob@x"] and failed == []
    assert [r for r in client.rows(warehouse) if r[0] == "bob@x"] == [("bob@x", "Bob C", "Rome", 22, None)] * 2


def test_an_id_the_table_holds_twice_is_deleted_in_both_rows_as_one_record(bulk_tenant, warehouse):
    """README: an id the table holds in several rows is deleted in each, the record one success."""
    client = bulk_tenant([*EXISTING, ("bob@x", "Bob II", "Bern", 21, None)])
    sent = [["email"], ["bob@x"]]
    job = run(client, "api", "delete", csv_bytes(sent), externalIdFieldName="email")
    assert job["state"] == "JobComplete" and job["numberRecordsProcessed"] == 1, job
    successful, failed, _ = check_accounting(client, job, sent)
    assert [r[0] for r in successful] == ["bob@x"] and failed == []
    assert [r[0] for r in client.rows(warehouse)] == ["ann@x", "cid@x"]


@pytest.mark.parametrize(
    ("operation", "sent", "succeeded"),
    [
        ("update", "code,name\nbob@x,Bobby\nzed@x ,Zed\nann@x,A1\nann@x  ,A2\n", ["bob@x"]),
        ("upsert", "code,name\nbob@x,Bobby\nnew@x,N1\nnew@x ,N2\n", ["bob@x"]),
        ("delete", "code\nbob@x\nzed@x \nann@x\nann@x  \n", ["bob@x"]),
    ],
    ids=["update", "upsert", "delete"],
)
def test_a_char_keys_trailing_blanks_are_the_same_id(bulk_tenant, warehouse, operation, sent, succeeded):
    """A CHAR value compares and prints without its trailing blanks: 'zed@x ' not found was listed as 'zed@x', and
    'ann@x' / 'ann@x  ' are one id given twice, both refused. Matched as written, the refused rows were listed as
    successful (bulk values review)."""
    client = bulk_tenant()
    client.use_table(
        warehouse, "codes", "code char(12) NOT NULL, name varchar(20)", "('ann@x', 'Ann'), ('bob@x', 'Bob')"
    )
    job = client.load(operation, sent.encode(), externalIdFieldName="code")
    assert job["state"] == "JobComplete" and job.get("errorMessage") is None, job
    successful = client.results(job["id"], "successfulResults")[1:]
    failed = client.results(job["id"], "failedResults")[1:]
    assert [row[0] for row in successful] == succeeded
    assert len(successful) + len(failed) == job["numberRecordsProcessed"] == len(sent.splitlines()) - 1
    assert len(failed) == job["numberRecordsFailed"]


@pytest.mark.parametrize(
    ("operation", "sent", "successful", "failed"),
    [
        (
            "upsert",
            'email,name,city,score\n"ann@x",Ann,Oslo,11\n "new@x" ,Neo,Zion,12\n',
            [["ann@x", "false"], ["new@x", "true"]],
            [],
        ),
        ("delete", 'email\n "bob@x" \n "gone@x"\t\n', [["bob@x"]], [["gone@x", "not found"]]),
    ],
    ids=["upsert", "delete"],
)
def test_blanks_around_a_quoted_id_are_not_the_ids(bulk_tenant, warehouse, operation, sent, successful, failed):
    """Redshift ignores white space between a delimiter and a quoted field's quotes: `` "new@x" `` is the id new@x.
    The result files read it with its blanks, which matched no id the warehouse printed: the created row was listed
    as updated, the id not found as deleted (found by the drop door review)."""
    client = bulk_tenant(EXISTING)
    job = client.load(operation, sent.encode(), externalIdFieldName="email")
    assert job["state"] == "JobComplete" and job.get("errorMessage") is None, job
    listed = [row[: len(successful[0])] for row in client.results(job["id"], "successfulResults")[1:]]
    assert sorted(listed) == successful
    assert [row[:2] for row in client.results(job["id"], "failedResults")[1:]] == failed
    assert job["numberRecordsProcessed"] == len(sent.splitlines()) - 1 and job["numberRecordsFailed"] == len(failed)
    assert [r[0] for r in client.rows(warehouse)] == (
        ["ann@x", "bob@x", "cid@x", "new@x"] if operation == "upsert" else ["ann@x", "cid@x"]
    )


@pytest.mark.parametrize(
    ("operation", "sent"),
    [
        ("update", b"email,city\n\\N,Nowhere\nann@x,Bergen\n"),
        ("upsert", b"email,name\n\\N,Nobody\nann@x,Ann2\n"),
        ("delete", b"email\n\\N\nann@x\n"),
    ],
    ids=["update", "upsert", "delete"],
)
def test_an_id_of_copys_null_marker_is_a_missing_id(bulk_tenant, warehouse, operation, sent):
    """An unquoted ``\\N`` is NULL to COPY, an id the load refuses as missing; the result files read it as the text
    and listed the record as loaded (upsert: created), with the job's counts disagreeing (found by the bulk review)."""
    client = bulk_tenant(EXISTING)
    job = client.load(operation, sent, externalIdFieldName="email")
    assert job["state"] == "JobComplete" and job.get("errorMessage") is None, job
    assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (2, 1)
    assert [row[:2] for row in client.results(job["id"], "failedResults")[1:]] == [["\\N", "missing external id"]]
    assert [row[0] for row in client.results(job["id"], "successfulResults")[1:]] == ["ann@x"]


def raw_results(client, job_id: str) -> dict[str, list[bytes]]:
    """The successful and failed result files' lines, as bytes (how each field was quoted shows)."""
    raw = {}
    for kind in ("successfulResults", "failedResults"):
        response = client.api.request("GET", f"/v1/bulk/jobs/{job_id}/{kind}")
        assert response.status_code == 200, response.text
        raw[kind] = response.content.split(b"\n")
    return raw


def test_result_files_write_null_and_the_text_backslash_n_as_sent(bulk_tenant, warehouse):
    """COPY reads an unquoted ``\\N`` as NULL and a quoted one as the text (the local warehouse does; Redshift may
    read both as NULL, see JSON records in README). The result files wrote every field of a row holding a CR quoted,
    NULL too, and a text ``\\N`` unquoted, so a record sent again from them loaded each as the other (found by the
    bulk review)."""
    client = bulk_tenant()
    client.use_table(warehouse, "marks", "k int, s varchar(10), t varchar(10)", "(0, 'z', 'z')")
    sent = b'k,s,t\n10,"\\N",x\n11,"a\rb",\\N\n12,\\N,"\\N"\nbad,"\\N",\\N\n'
    job = client.load("insert", sent)
    assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (4, 1), job
    assert client.rows(warehouse) == [(0, "z", "z"), (10, "\\N", "x"), (11, "a\rb", None), (12, None, "\\N")]
    raw = raw_results(client, job["id"])
    assert raw["successfulResults"][1:] == [b',true,10,"\\N",x', b',true,11,"a\rb",\\N', b',true,12,\\N,"\\N"', b""]
    assert raw["failedResults"][1].endswith(b',bad,"\\N",\\N') and raw["failedResults"][2:] == [b""]


def test_result_files_write_a_quoted_empty_field_as_sent(bulk_tenant, warehouse):
    """COPY reads ``""`` as the empty text (refused by a number) and an empty field as NULL: the result files wrote
    ``""`` back empty, so a failed row re-sent as failedResults gave it loaded NULL where it had been refused (the
    values review)."""
    client = bulk_tenant()
    client.use_table(warehouse, "blanks", "k int, n smallint, s varchar(10)", "(0, 0, 'z')")
    sent = b'k,n,s\n1,,""\n2,"",x\n3, "" ,\n'
    job = client.load("insert", sent)
    assert (job["numberRecordsProcessed"], job["numberRecordsFailed"]) == (3, 2), job
    assert client.rows(warehouse) == [(0, 0, "z"), (1, None, "")]
    raw = raw_results(client, job["id"])
    assert raw["successfulResults"][1:] == [b',true,1,,""', b""]
    failed = raw["failedResults"][1:]
    assert len(failed) == 3 and failed[0].endswith(b',2,"",x') and failed[1].endswith(b',3,"",') and failed[2] == b""


def test_a_varchar_id_longer_than_its_column_by_blanks_is_the_id_the_warehouse_stored(bulk_tenant, warehouse):
    """The warehouse cuts a value's blanks past a VARCHAR(n)'s length when it stores it, and prints it so: a refused
    'zed@xx  ' was listed as successful, matched as written (diff review)."""
    client = bulk_tenant()
    client.use_table(warehouse, "vcodes", "code varchar(6) NOT NULL, name varchar(20)", "('bob@xx', 'Bob')")
    job = client.load("update", b"code,name\nbob@xx,Bobby\nzed@xx  ,Zed\n", externalIdFieldName="code")
    assert job["state"] == "JobComplete" and job.get("errorMessage") is None, job
    assert [row[0] for row in client.results(job["id"], "successfulResults")[1:]] == ["bob@xx"]
    assert [row[:2] for row in client.results(job["id"], "failedResults")[1:]] == [["zed@xx  ", "not found"]]


@pytest.mark.parametrize("operation", ["upsert", "update"])
def test_a_decimal_id_is_matched_as_the_warehouse_prints_it(bulk_tenant, warehouse, operation):
    """A NUMERIC(10,2) id written 4 is 4.00 in the warehouse: an upsert listed the row it created as not created, and
    an update listed an id matching no row as updated (found by the bulk SQL review)."""
    client = bulk_tenant()
    client.use_table(warehouse, "amounts", "id numeric(10,2) NOT NULL, label varchar(20)", "(1, 'a'), (2.5, 'b')")
    sent = [["id", "label"], ["1", "A"], ["2.50", "B"], ["4", "D"]]
    job = client.load(operation, csv_bytes(sent), externalIdFieldName="id")
    assert job["state"] == "JobComplete", job
    successful, failed, _ = check_accounting(client, job, sent)
    if operation == "upsert":
        assert {row[0]: row[1] for row in successful} == {"1": "false", "2.50": "false", "4": "true"}
    else:
        assert sorted(row[0] for row in successful) == ["1", "2.50"]
        assert [row[:2] for row in failed] == [["4", "not found"]]


def test_an_unconstrained_numeric_id_is_matched_as_written(bulk_tenant, warehouse):
    """Its values keep the scale they were written with (the emulator's PostgreSQL; Redshift's NUMERIC is
    NUMERIC(18, 0)): 7.5 was looked up as 8 and listed as updated (found by the first diff review)."""
    client = bulk_tenant()
    client.use_table(warehouse, "plain", "id numeric NOT NULL, label varchar(20)", "(1, 'a'), (2.5, 'b')")
    sent = [["id", "label"], ["2.5", "B"], ["7.5", "X"]]
    job = client.load("update", csv_bytes(sent), externalIdFieldName="id")
    assert job["state"] == "JobComplete", job
    successful, failed, _ = check_accounting(client, job, sent)
    assert ([r[0] for r in successful], [r[:2] for r in failed]) == (["2.5"], [["7.5", "not found"]])


def test_an_update_needs_no_more_than_update_on_the_columns_it_changes(bulk_tenant, warehouse):
    """A shared table's owner grants UPDATE on the columns tenants may change: a LOCK in the update's batch asked
    for UPDATE, DELETE or TRUNCATE on the whole table and failed the job (found by the first diff review)."""
    client = bulk_tenant(EXISTING, grant="SELECT, UPDATE (name, city, score)")
    sent = [["email", "city"], ["ann@x", "Bergen"]]
    job = client.load("update", csv_bytes(sent), externalIdFieldName="email")
    assert job["state"] == "JobComplete", job["errorMessage"]
    assert client.rows(warehouse)[0] == ("ann@x", "Ann", "Bergen", 10, None)


@pytest.mark.parametrize("door", ["api", "s3"])
def test_result_files_repeat_the_header_as_the_file_wrote_it(door, bulk_tenant, warehouse):
    """Bulk 2.0 repeats the fields as uploaded: a script reading row["Email"] from its results found "email"."""
    client = bulk_tenant(EXISTING)
    sent = [["Email", "Name", "CITY", "score"], ["ann@x", "Ann B", "Oslo", "12"], ["bad@x", "Bad", "Nil", "x"]]
    job = run(client, door, "upsert", csv_bytes(sent), externalIdFieldName="EMAIL")
    assert job["state"] == "JobComplete", job
    successful, failed, _ = check_accounting(client, job, sent)  # each file's header is sent[0]
    assert [r[:3] for r in successful] == [["ann@x", "false", "ann@x"]]
    assert [r[0] for r in failed] == ["bad@x"]


@pytest.mark.parametrize("bom", [b"", "\ufeff".encode()], ids=["plain", "bom"])
def test_an_aborted_jobs_unprocessed_records_keep_the_header_as_sent(bulk_tenant, bom):
    """Quoted names after a BOM too: read as CSV before the BOM was taken off, '"Email"' kept its quotes."""
    client = bulk_tenant()
    sent = [["Email", "Name", "City", "Score"], ["ann@x", "Ann", "Oslo", "1"]]
    job = client.create("insert")
    client.upload(job["id"], bom + b'"Email","Name",City,Score\n' + csv_bytes(sent[1:]))
    client.close(job["id"], "Aborted")
    client.wait(job["id"])
    assert client.results(job["id"], "unprocessedrecords") == sent
    assert client.results(job["id"], "unprocessedRecords") == sent  # as Bulk 2.0 clients spell it


@pytest.mark.parametrize("door", ["api", "s3"])
def test_delete_removes_matching_rows_only(door, bulk_tenant, warehouse):
    client = bulk_tenant(EXISTING)
    sent = [["email"], ["bob@x"], ["gone@x"], ["cid@x"]]
    job = run(client, door, "delete", csv_bytes(sent), externalIdFieldName="email")
    assert job["state"] == "JobComplete", job
    successful, failed, _ = check_accounting(client, job, sent)
    assert sorted(r[0] for r in successful) == ["bob@x", "cid@x"]
    assert [r[:2] for r in failed] == [["gone@x", "not found"]]
    assert client.rows(warehouse) == [("ann@x", "Ann", "Oslo", 10, None)]


def test_a_delete_reads_only_the_ids_of_a_file_with_every_column(bulk_tenant, warehouse):
    """A file exported from the table, with a value in another column that the column's type refuses: the row was
    failed and stayed in the table (found by the bulk SQL review)."""
    client = bulk_tenant(EXISTING)
    sent = [HEADER, ["ann@x", "Ann", "Oslo", "10"], ["bob@x", "Bob", "Rome", "n/a"]]
    job = client.load("delete", csv_bytes(sent), externalIdFieldName="email")
    assert job["state"] == "JobComplete", job
    successful, failed, _ = check_accounting(client, job, sent)
    assert (sorted(r[0] for r in successful), failed) == (["ann@x", "bob@x"], [])
    assert client.rows(warehouse) == [EXISTING[2]]


def test_a_statement_that_fails_mid_way_leaves_the_table_as_it_was(bulk_tenant, warehouse, job_events):
    """The upsert's UPDATE breaks the table's CHECK on its last row, after rows before it were written: the whole job
    rolls back."""
    client = bulk_tenant(EXISTING)
    sent = [HEADER, ["ann@x", "Ann X", "Oslo", "99"], ["new@x", "Neo", "Zion", "1"], ["cid@x", "Cid", "Lima", "-5"]]
    job = client.load("upsert", csv_bytes(sent), externalIdFieldName="email")
    assert job["state"] == "Failed", job
    assert "check constraint" in job["errorMessage"]
    assert client.rows(warehouse) == [(*row,) for row in EXISTING]
    assert client.results(job["id"], "successfulResults")[1:] == []
    assert client.results(job["id"], "failedResults")[1:] == []
    assert client.results(job["id"], "unprocessedrecords") == sent
    event = job_events(job["id"], "Bulk Job Failed")
    assert event["detail"]["state"] == "Failed"
    assert event["resources"] == [job["id"]]


def test_two_upserts_of_the_same_new_id_at_once_create_it_once(bulk_tenant, warehouse, redshift_emulator):
    """Two jobs on one table take turns: each found the new id missing and inserted it, so the table held it twice
    (found by the bulk SQL review). A transaction holding the table in SHARE mode (readers pass, writers wait) keeps
    both jobs waiting until they are both there, then lets them go together."""
    client = bulk_tenant(EXISTING[:1])
    sent = [HEADER, ["ann@x", "Ann", "Bergen", "11"], ["new@x", "Neo", "Zion", "1"]]
    jobs = [client.create("upsert", externalIdFieldName="email")["id"] for _ in range(2)]
    for job_id in jobs:
        client.upload(job_id, csv_bytes(sent))
    with (
        psycopg.connect(redshift_emulator.admin_database_url) as admin,
        psycopg.connect(redshift_emulator.admin_database_url, autocommit=True) as watcher,
    ):
        admin.execute(f"LOCK TABLE {client.table} IN SHARE MODE")
        for job_id in jobs:
            client.close(job_id)

        def both_waiting() -> bool:
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE c.relname = %s AND NOT l.granted",
                (client.table,),
            ).fetchone()[0]
            return waiting == 2

        wait_until(both_waiting, 60, "both upserts waiting for the table")
        admin.commit()
    ended = [client.wait(job_id, timeout=60) for job_id in jobs]
    assert [job["state"] for job in ended] == ["JobComplete", "JobComplete"], ended
    assert client.rows(warehouse) == [("ann@x", "Ann", "Bergen", 11, None), ("new@x", "Neo", "Zion", 1, None)]
    created = sorted(
        row[1] for job_id in jobs for row in client.results(job_id, "successfulResults")[1:] if row[2] == "new@x"
    )
    assert created == ["false", "true"]  # one job created it, the other updated it


def test_an_update_beside_a_delete_of_its_id_says_not_found(bulk_tenant, warehouse, redshift_emulator):
    """The delete comes first, the update's check finds the row, and its UPDATE changes nothing once the delete has
    taken it: it listed the id as updated (found by the second diff review). A transaction holding the table in
    SHARE mode keeps both waiting until both are there (the delete first), then lets them go together."""
    client = bulk_tenant(EXISTING)
    deleting = client.create("delete", externalIdFieldName="email")["id"]
    client.upload(deleting, csv_bytes([["email"], ["ann@x"]]))
    updating = client.create("update", externalIdFieldName="email")["id"]
    client.upload(updating, csv_bytes([["email", "city"], ["ann@x", "Bergen"]]))
    with (
        psycopg.connect(redshift_emulator.admin_database_url) as admin,
        psycopg.connect(redshift_emulator.admin_database_url, autocommit=True) as watcher,
    ):
        admin.execute(f"LOCK TABLE {client.table} IN SHARE MODE")

        def waiting(count: int) -> bool:
            return (
                watcher.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                    " WHERE c.relname = %s AND NOT l.granted",
                    (client.table,),
                ).fetchone()[0]
                == count
            )

        client.close(deleting)
        wait_until(lambda: waiting(1), 60, "the delete waiting for the table")
        client.close(updating)
        wait_until(lambda: waiting(2), 60, "the update waiting for the table")
        admin.commit()
    deleted, updated = client.wait(deleting, timeout=60), client.wait(updating, timeout=60)
    assert (deleted["state"], updated["state"]) == ("JobComplete", "JobComplete"), (deleted, updated)
    assert [row[:2] for row in client.results(updating, "failedResults")[1:]] == [["ann@x", "not found"]]
    assert client.results(updating, "successfulResults")[1:] == []
    assert [row[0] for row in client.rows(warehouse)] == ["bob@x", "cid@x"]


@pytest.mark.parametrize("operation", ["update", "upsert", "delete"])
def test_a_table_may_have_any_name_the_generated_sql_uses(bulk_tenant, warehouse, operation):
    """A table named ``s`` failed every update, upsert and delete: "table name "s" specified more than once" (the
    staging table's alias; found by the bulk SQL review)."""
    client = bulk_tenant()
    schema, user = f"named_{client.tenant_id}".lower(), client.api.db_user
    warehouse.run(
        f"CREATE SCHEMA {schema}",
        f"CREATE TABLE {schema}.s (email varchar(32) NOT NULL, name varchar(20))",
        f"INSERT INTO {schema}.s VALUES ('ann@x', 'Ann')",
        f'GRANT USAGE ON SCHEMA {schema} TO "{user}"',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.s TO "{user}"',
    )
    client.table = f"{schema}.s"
    job = client.load(operation, csv_bytes([["email", "name"], ["ann@x", "Anna"]]), externalIdFieldName="email")
    assert job["state"] == "JobComplete", job["errorMessage"]
    assert client.rows(warehouse) == ([] if operation == "delete" else [("ann@x", "Anna")])


def test_the_same_drop_event_delivered_twice_loads_once(bulk_tenant, warehouse, spectra_stack, local_aws):
    client = bulk_tenant()
    key = client.drop(csv_bytes([HEADER, ["ann@x", "Ann", "Oslo", "1"], ["bob@x", "Bob", "Rome", "2"]]))
    job = client.dropped_job(key)
    assert job["state"] == "JobComplete"
    # S3 delivers at least once: replay the notification exactly as S3 sent it.
    drop_function = spectra_stack.function("S3DropFunction")
    [notification] = [body for body in _notifications(drop_function) if _keys(body) == [key]]
    before = drop_function.invocation_count
    sqs = local_aws.client("sqs")
    sqs.send_message(QueueUrl=spectra_stack.physical_id("IngestQueue"), MessageBody=notification)
    wait_until(
        lambda: drop_function.invocation_count > before and all(i.duration_ms for i in drop_function.invocations()),
        30,
        "the replayed notification to be handled",
    )
    listing = client.api.request("GET", "/v1/bulk/jobs?limit=100").json()["records"]
    assert [j["id"] for j in listing if j["objectKey"] == key] == [job["id"]]
    assert client.rows(warehouse) == [("ann@x", "Ann", "Oslo", 1, None), ("bob@x", "Bob", "Rome", 2, None)]


def _notifications(function, *, handled: bool = False) -> list[str]:
    """The S3 notifications (SQS message bodies) the drop function was given, as S3 sent them; ``handled``: only
    those of invocations that have returned (an invocation is logged as it starts)."""
    return [
        record["body"]
        for i in function.invocations()
        if not handled or i.duration_ms
        for record in (i.event or {}).get("Records", [])
    ]


def _keys(body: str) -> list[str]:
    from urllib.parse import unquote_plus

    return [unquote_plus(r["s3"]["object"]["key"]) for r in json.loads(body).get("Records", [])]


def test_the_same_file_dropped_again_is_a_new_job(bulk_tenant, warehouse):
    """The ingest bucket keeps no versions, so the file put again has the same ETag: S3's sequencer tells the two
    writes apart, and the second is loaded too (say, after the tenant fixed what made the first one fail)."""
    client = bulk_tenant()
    data = csv_bytes([HEADER, ["ann@x", "Ann", "Oslo", "1"]])
    key = client.drop(data, name="again.csv")
    first = client.dropped_job(key)
    client.drop(data, name="again.csv")

    def both():
        listing = client.api.request("GET", "/v1/bulk/jobs?limit=100").json()["records"]
        jobs = [j for j in listing if j["objectKey"] == key]
        return jobs if len(jobs) == 2 and all(j["state"] == "JobComplete" for j in jobs) else None

    jobs = wait_until(both, 60, "a second job for the same file dropped again")
    assert first["id"] in {j["id"] for j in jobs}
    assert client.rows(warehouse) == [("ann@x", "Ann", "Oslo", 1, None)] * 2


def test_a_file_replaced_while_its_job_waits_is_not_loaded_in_place_of_the_newer_one(bulk_tenant, warehouse):
    """The ingest bucket keeps no versions: a file put again at the same key while the first one's job waits (here at
    the tenant's running cap of one) replaces it. The newer file is loaded once, by its own job; the first job fails
    saying its file was replaced, and lists nothing (its rows no longer exist anywhere)."""
    client = bulk_tenant(max_running_statements=1)
    slow = client.api.submit("select pg_sleep(30)")["job_id"]
    client.api.wait(slow, statuses=("SUBMITTED",))
    key = client.drop(csv_bytes([HEADER, ["old@x", "Old", "Oslo", "1"]]), "daily.csv")

    def jobs(count):
        def probe():
            listing = client.api.request("GET", "/v1/bulk/jobs?limit=100").json()["records"]
            found = [j for j in listing if j["objectKey"] == key]
            return found if len(found) == count else None

        return probe

    [first] = wait_until(jobs(1), 30, "the first file's job")
    client.drop(csv_bytes([HEADER, ["new@x", "New", "Rome", "2"]]), "daily.csv")
    [second] = [j for j in wait_until(jobs(2), 30, "the second file's job") if j["id"] != first["id"]]
    assert first["state"] == "UploadComplete"  # still waiting when its file was replaced
    assert client.api.request("DELETE", f"/v1/jobs/{slow}").status_code in (200, 202)
    replaced, loaded = client.wait(first["id"]), client.wait(second["id"])
    assert (replaced["state"], replaced["error"]["code"]) == ("Failed", "file_replaced"), replaced
    assert "replaced by a newer upload" in replaced["errorMessage"]
    assert client.api.request("GET", f"/v1/bulk/jobs/{first['id']}/unprocessedrecords").status_code == 404
    assert (loaded["state"], loaded["numberRecordsProcessed"]) == ("JobComplete", 1)
    assert client.rows(warehouse) == [("new@x", "New", "Rome", 2, None)]


def test_a_multipart_upload_is_one_job(bulk_tenant, warehouse, spectra_stack):
    """moto notifies a multipart upload twice (Put, then CompleteMultipartUpload), for one write: one job."""
    client = bulk_tenant()
    key = f"{client.tenant_id}/{client.table}/multipart.csv"
    upload = client.s3.create_multipart_upload(Bucket=client.ingest_bucket, Key=key)
    part = client.s3.upload_part(
        Bucket=client.ingest_bucket,
        Key=key,
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=csv_bytes([HEADER, ["bob@x", "Bob", "Rome", "2"]]),
    )
    client.s3.complete_multipart_upload(
        Bucket=client.ingest_bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    job = client.dropped_job(key)
    drop_function = spectra_stack.function("S3DropFunction")
    # both handled, so that a second job, had the second notice made one, would be listed below
    handled = lambda: [b for b in _notifications(drop_function, handled=True) if _keys(b) == [key]]  # noqa: E731
    wait_until(lambda: len(handled()) >= 2, 30, "both notices handled")
    listing = client.api.request("GET", "/v1/bulk/jobs?limit=100").json()["records"]
    assert [j["id"] for j in listing if j["objectKey"] == key] == [job["id"]]
    assert client.rows(warehouse) == [("bob@x", "Bob", "Rome", 2, None)]


def test_options_come_from_object_metadata_too(bulk_tenant, warehouse):
    client = bulk_tenant(EXISTING)
    data = csv_bytes([["email", "city"], ["ann@x", "Paris"]], delimiter=";")
    key = client.drop(data, operation="update", externalidfieldname="email", columndelimiter="SEMICOLON")
    job = client.dropped_job(key)
    assert (job["state"], job["operation"], job["columnDelimiter"]) == ("JobComplete", "update", "SEMICOLON"), job
    assert client.rows(warehouse)[0] == ("ann@x", "Ann", "Paris", 10, None)


def test_a_create_retried_with_its_idempotency_key_is_the_same_job(bulk_tenant, warehouse):
    """A client whose answer to POST /v1/bulk/jobs was lost retries with its key: 200 with the job it made (its
    batches with it), not a second Open job; the key with another body is a 409."""
    client = bulk_tenant()
    body = {"object": client.table, "operation": "insert"}
    headers = {"Idempotency-Key": "load-" + client.tenant_id}
    first = client.api.request("POST", "/v1/bulk/jobs", json=body, headers=headers)
    client.upload(first.json()["id"], csv_bytes([HEADER, ["dee@x", "Dee", "Kyiv", "40"]]))
    repeat = client.api.request("POST", "/v1/bulk/jobs", json=body, headers=headers)
    assert (first.status_code, repeat.status_code) == (201, 200), repeat.text
    assert repeat.json()["id"] == first.json()["id"] and repeat.headers["Location"] == first.headers["Location"]
    other = client.api.request(
        "POST", "/v1/bulk/jobs", json={**body, "operation": "upsert", "externalIdFieldName": "email"}, headers=headers
    )
    assert other.status_code == 409 and other.json()["error"]["details"]["job_id"] == first.json()["id"]
    listed = client.api.request("GET", "/v1/bulk/jobs").json()["records"]
    assert [job["id"] for job in listed] == [first.json()["id"]]


def test_a_batch_put_again_with_its_idempotency_key_is_loaded_once(bulk_tenant, warehouse):
    """A client that never got its 201 (API Gateway's 504 while the function went on storing, a reset connection)
    PUTs the batch again with the same key: 201 again, and the table gets each row once; an upload URL asked again
    with its key is for the same batch, counted once; the key with other bytes is a 409 in the one error shape."""
    client = bulk_tenant()
    job = client.create("insert")
    data = csv_bytes([HEADER, ["ann@x", "Ann", "Oslo", "1"], ["bob@x", "Bob", "Rome", "2"]])
    put = {"Content-Type": "text/csv", "Idempotency-Key": "batch-1"}
    path = f"/v1/bulk/jobs/{job['id']}/batches"
    first = client.api.request("PUT", path, data=data, headers=put)
    repeat = client.api.request("PUT", path, data=data, headers=put)
    assert (first.status_code, repeat.status_code) == (201, 201), repeat.text
    other = client.api.request("PUT", path, data=data + b"cid@x,Cid,Lima,3\n", headers=put)
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict", other.text
    assert other.json()["error"]["details"] == {"idempotency_key": "batch-1", "job_id": job["id"]}
    urls = [
        client.api.request("POST", f"/v1/bulk/jobs/{job['id']}/uploads", json={}, headers={"Idempotency-Key": "u-1"})
        for _ in range(2)
    ]
    assert [u.status_code for u in urls] == [200, 200] and urls[0].json()["key"] == urls[1].json()["key"]
    client.close(job["id"])
    after = client.api.request("PUT", path, data=data, headers=put)  # the answer to the first PUT was lost for good
    assert after.status_code == 201, after.text
    done = client.wait(job["id"])
    assert (done["state"], done["numberRecordsProcessed"], done["numberRecordsFailed"]) == ("JobComplete", 2, 0)
    assert client.rows(warehouse) == [("ann@x", "Ann", "Oslo", 1, None), ("bob@x", "Bob", "Rome", 2, None)]
