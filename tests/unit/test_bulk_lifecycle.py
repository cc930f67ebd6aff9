"""A bulk job's start and end (spectra.bulk.lifecycle) on in-memory ports: the executor checks the files before any
statement and runs the load as the tenant; completion counts every record from the batch's sub-statements, writes
the result files (before the job ends when they are small, through the results queue when not), publishes once."""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import string
from datetime import timedelta

import pytest

from events import BulkJobQueuedMessage, BulkResultsRequested, StatementState, StatementStatusChange
from producers.api.bulk_models import BulkJobInfo
from spectra import share
from spectra.bulk import downloads, outcomes, service
from spectra.bulk.csvfiles import HEADER_NAMES_MAX_BYTES
from spectra.bulk.drops import DroppedObject, accept_drop
from spectra.bulk.lifecycle import (
    RESULTS_WRITERS_LOST_MAX,
    complete_bulk_statement,
    give_up_results,
    start_bulk_job,
    write_owed_results,
)
from spectra.bulk.models import BulkCounts, BulkOperation, BulkState, ColumnDelimiter, ExportFile
from spectra.bulk.outcomes import as_printed
from spectra.bulk.pages import read_page
from spectra.bulk.sql import Manifest, load_statements
from spectra.errors import Conflict, JobNotFinished, ResultsUnavailable, Throttled
from spectra.jobs import utcnow
from spectra.tenants import Caller
from spectra.warehouse import DatabaseIdentity
from tests.unit.bulk_helpers import bulk_job
from tests.unit.fakes import INGEST_BUCKET, RESULTS_BUCKET, make_ports, make_settings, result_file

pytestmark = pytest.mark.unit

HEADER = b"id,name,city\n"


@pytest.fixture
def ports():
    return bulk_ports_with()


def bulk_ports_with(**settings):
    ports = make_ports(settings=make_settings(**settings))
    ports.tenants.create_tenant("acme", db_user="tenant_acme")
    ports.warehouse.add_table("public", "accounts", ["id", "name", "city"], required=["id", "name"])
    return ports


def queued(ports, operation: BulkOperation = BulkOperation.INSERT, *bodies: bytes, **fields) -> BulkJobQueuedMessage:
    """An UploadComplete job with ``bodies`` as its uploaded batches (``.gz`` names for gzip ones)."""
    job = bulk_job(operation, state=BulkState.UPLOAD_COMPLETE, queued_at=utcnow(), **fields)
    job = job.model_copy(update={"tenant_generation": ports.tenants.get("acme").generation})
    sources = []
    for n, body in enumerate(bodies or [HEADER + b"1,Ann,Oslo\n"]):
        name = f"batch-{n:05d}.csv" + (".gz" if body[:2] == b"\x1f\x8b" else "")
        sources.append(ports.bulk.files.put(f"acme/{job.job_id}/uploads/{name}", body))
    ports.bulk.jobs.create(job.model_copy(update={"files": sources}))
    return BulkJobQueuedMessage(job_id=job.job_id, tenant_id="acme")


def stored(ports, job_id: str):
    return ports.bulk.jobs.get(job_id)


def result_rows(ports, job_id: str, kind: str) -> list[list[str]]:
    body = result_file(ports, job_id, kind)
    return list(csv.reader(io.StringIO(body.decode("utf-8", "surrogateescape"), newline="")))


def warehouse_calls(ports) -> list[str]:
    return [method for method, _ in ports.warehouse.calls]


# -- start ----------------------------------------------------------------------------------------------------------


def test_an_insert_starts_one_batch_as_the_tenant_with_its_plan_recorded_first(ports):
    message = queued(ports, BulkOperation.INSERT, HEADER + b"1,Ann,Oslo\n", HEADER + b"2,Bob,Rome\n")
    job = start_bulk_job(ports, message)
    assert job.state is BulkState.IN_PROGRESS and job.started_at is not None
    assert warehouse_calls(ports) == ["describe_table", "execute_batch"]
    batch = ports.warehouse.statements[job.statement_id]
    assert (batch.name, batch.client_token) == (job.job_id, job.job_id)
    assert batch.identity == DatabaseIdentity(db_user="tenant_acme")
    manifest_url = f"s3://{RESULTS_BUCKET}/acme/{job.job_id}/load/plain.manifest"
    expected, plan = load_statements(
        job,
        ["id", "name", "city"],
        [Manifest(manifest_url, gzip=False)],
        role="default",
        max_errors=100_000,
        table_columns=["id", "name", "city"],
    )
    assert ports.warehouse.batch_sqls(job.statement_id) == expected
    assert expected[0].startswith(f'COPY "public"."accounts" FROM \'{manifest_url}\'')  # the table's own columns
    assert job.plan.planned_at is not None  # when it was written, just before the statement started
    assert job.plan == plan.model_copy(update={"planned_at": job.plan.planned_at})  # names as written: kept once
    assert stored(ports, job.job_id) == job
    manifest = json.loads(ports.bulk.files.client.body(RESULTS_BUCKET, f"acme/{job.job_id}/load/plain.manifest"))
    assert manifest == {"entries": [{"url": f.url, "mandatory": True} for f in job.files]}  # exactly its files


def test_plain_and_gzip_batches_get_a_manifest_each(ports):
    batches = [HEADER + b"1,A,B\n", gzip.compress(HEADER + b"2,C,D\n")]
    job = start_bulk_job(ports, queued(ports, BulkOperation.INSERT, *batches))
    sqls = ports.warehouse.batch_sqls(job.statement_id)
    assert "plain.manifest" in sqls[0] and not sqls[0].endswith("GZIP")
    assert "gzip.manifest" in sqls[3] and sqls[3].endswith("GZIP")
    assert sqls[2] == sqls[5] == "SELECT pg_last_copy_count()" and job.plan.loaded == [2, 5]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "empty_file"),
        (b"\xef\xbb\xbf", "empty_file"),  # a BOM alone
        (HEADER, "no_rows"),
        (b"id,name,shoe_size\n1,a,44\n", "unknown_columns"),
        (b"id,city\n1,Oslo\n", "missing_columns"),
        (b"id;name;city\n1;a;b\n", "invalid_header"),
    ],
)
def test_a_bad_file_fails_the_job_before_any_statement(ports, body, code):
    message = queued(ports, BulkOperation.INSERT, body)
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code, job.statement_id) == (BulkState.FAILED, code, None)
    assert "execute_batch" not in warehouse_calls(ports)
    assert not [k for k in ports.bulk.files.client.keys(RESULTS_BUCKET) if "/load/" in k]  # no manifest either
    assert job.results_ready and job.event_published
    assert ports.events.types() == ["Bulk Job Failed"]
    assert ports.bulk.jobs.pending_since(job.job_id) is None  # nothing left owed


@pytest.mark.parametrize("padding", [" " * 420_000, "\u3000" * 140_000], ids=["spaces", "ideographic-spaces"])
def test_a_header_too_large_for_the_job_record_fails_the_job_naming_the_limit(ports, padding):
    """The job keeps its header's names in its DynamoDB item (the load plan: folded, and as written for the result
    files), which holds 400 KB. A header line of column names padded with whitespace (or, on Redshift, 1,600 columns
    of 127-character names) made the plan's write a ValidationException: the executor crashed on every delivery, the
    message went to the DLQ, and the job held a running slot for an hour until it failed ``not_started``."""
    header = f"id{padding},name,city\n".encode()
    message = queued(ports, BulkOperation.INSERT, header + b"1,Ann,Oslo\n")
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code, job.statement_id) == (BulkState.FAILED, "invalid_header", None)
    assert f"at most {HEADER_NAMES_MAX_BYTES}" in job.error.message
    assert "execute_batch" not in warehouse_calls(ports)
    assert ports.slots.holders("acme") == {}  # its slot is given back
    assert ports.events.types() == ["Bulk Job Failed"]


def test_a_header_just_within_the_limit_is_loaded(ports):
    """Kept folded and as written (it differs): 10 bytes folded, the rest as written, 400 KB of item not passed."""
    header = b"id" + b" " * (HEADER_NAMES_MAX_BYTES - 2 * len("idnamecity")) + b",name,city\n"
    job = start_bulk_job(ports, queued(ports, BulkOperation.INSERT, header + b"1,Ann,Oslo\n"))
    assert job.state is BulkState.IN_PROGRESS and job.plan.columns == ["id", "name", "city"]


def test_a_table_of_1600_long_column_names_is_loaded(ports):
    """Redshift's most columns with its longest names, written as they are folded: kept once (the plan's ``header``
    empty, the result files' header then its columns), within the job's record."""
    names = [f"c{n:04d}_" + "x" * 121 for n in range(1_600)]
    ports.warehouse.add_table("public", "wide", names)
    body = (",".join(names) + "\n" + ",".join("1" for _ in names) + "\n").encode()
    job = start_bulk_job(ports, queued(ports, BulkOperation.INSERT, body, object="wide"))
    assert job.state is BulkState.IN_PROGRESS and job.plan.columns == names and job.plan.header == []
    # the file's columns are the table's, in order: its COPY names none of them, within the Data API's 100 KB
    assert max(len(sql.encode()) for sql in ports.warehouse.batch_sqls(job.statement_id)) < 2_000


def _wide_table(ports, columns: int, length: int, **table) -> list[str]:
    names = [f"c{n:04d}_" + "x" * (length - 6) for n in range(columns)]
    ports.warehouse.add_table("public", "wide", names, **table)
    return names


def test_an_insert_of_the_tables_columns_in_another_order_lists_them_in_its_copy(ports):
    names = _wide_table(ports, 3, 10)
    body = (",".join(reversed(names)) + "\n1,2,3\n").encode()
    job = start_bulk_job(ports, queued(ports, BulkOperation.INSERT, body, object="wide"))
    copy = ports.warehouse.batch_sqls(job.statement_id)[0]
    assert f'"wide" ("{names[2]}", "{names[1]}", "{names[0]}") FROM' in copy


def test_an_insert_into_a_table_with_an_identity_column_lists_its_columns_and_loads_the_files_ids(ports):
    """COPY without a column list leaves an IDENTITY column out (Redshift's COPY reference): a file naming every
    column, the identity one included, keeps its list, and since a list naming an IDENTITY column is refused without
    EXPLICIT_IDS, the COPY loads the file's ids (a table's export loaded again). A file leaving it out does not."""
    ports.warehouse.add_table("public", "wide", ["id", "name"])
    ports.warehouse.tables[("public", "wide")][0]["columnDefault"] = "\"identity\"(100500, 0, '1,1'::text)"
    job = start_bulk_job(ports, queued(ports, BulkOperation.INSERT, b"id,name\n1,Ann\n", object="wide"))
    copy = ports.warehouse.batch_sqls(job.statement_id)[0]
    assert '"wide" ("id", "name") FROM' in copy and copy.endswith(" EXPLICIT_IDS")
    job = start_bulk_job(ports, queued(ports, BulkOperation.INSERT, b"name\nBob\n", object="wide"))
    copy = ports.warehouse.batch_sqls(job.statement_id)[0]
    assert '"wide" ("name") FROM' in copy and "EXPLICIT_IDS" not in copy


@pytest.mark.parametrize(
    ("default", "identity"),
    [
        ("\"identity\"(100500, 0, '1,1'::text)", True),
        ("\"default_identity\"(100500, 1, '1,1'::text)", True),
        ("'identity provider'::character varying", False),
        ("nextval('seq_identity'::regclass)", False),
        (None, False),
    ],
)
def test_only_redshifts_identity_defaults_make_an_identity_column(ports, default, identity):
    """A literal default holding the word (a column 'source' defaulting to 'identity provider') is no IDENTITY
    column: taken for one, a file naming it got EXPLICIT_IDS, which Redshift refuses when the real IDENTITY column is
    left out, and the whole job failed."""
    ports.warehouse.add_table("public", "wide", ["id", "source"])
    ports.warehouse.tables[("public", "wide")][1]["columnDefault"] = default
    job = start_bulk_job(ports, queued(ports, BulkOperation.INSERT, b"id,source\n1,sso\n", object="wide"))
    copy = ports.warehouse.batch_sqls(job.statement_id)[0]
    assert ("EXPLICIT_IDS" in copy) is identity
    assert ('"wide" ("id", "source") FROM' in copy) is identity  # the table's own columns: listed only beside one


@pytest.mark.parametrize(
    ("operation", "columns", "length"),
    [(BulkOperation.UPSERT, 800, 60), (BulkOperation.UPDATE, 800, 60), (BulkOperation.INSERT, 1_600, 127)],
)
def test_a_load_whose_statement_would_pass_the_data_apis_size_fails_naming_its_columns_before_anything_runs(
    ports, operation, columns, length
):
    """An update's UPDATE names each column twice: 800 columns of 60-character names take more than 100 KB, which the
    Data API refuses after every batch was uploaded, with an error about SQL the tenant never wrote. The
    job fails too_many_columns first, and nothing runs. (The insert's file lists the table's columns in reverse,
    so its COPY names them.)"""
    names = _wide_table(ports, columns, length)
    header = list(reversed(names)) if operation is BulkOperation.INSERT else names
    body = (",".join(header) + "\n" + ",".join("1" for _ in names) + "\n").encode()
    message = queued(ports, operation, body, object="wide", external_id_field=names[0])
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "too_many_columns")
    assert f"{operation.value} of {columns} columns" in job.error.message and "load fewer columns" in job.error.message
    assert "execute_batch" not in warehouse_calls(ports)


def test_a_blank_line_of_a_one_column_file_is_listed_blank_not_as_a_quoted_empty_field(ports):
    """The bulk results review: csv.writer writes a row of one empty field as "", which COPY reads as the empty
    string where the blank line sent was NULL: unprocessedrecords was not the file as sent."""
    message = queued(ports, BulkOperation.INSERT, b"id\n7\n\n8\n")  # name and city left out: refused
    start_bulk_job(ports, message)
    assert stored(ports, message.job_id).state is BulkState.FAILED
    body = result_file(ports, message.job_id, "unprocessed")
    assert body == b"id\n7\n\n8\n"
    # a header of one empty name stays "": written blank, the file's first line was blank (the third diff review)
    nameless = queued(ports, BulkOperation.INSERT, b'""\n1\n\n2\n')
    start_bulk_job(ports, nameless)
    body = result_file(ports, nameless.job_id, "unprocessed")
    assert body == b'""\n1\n\n2\n'


def test_a_quoted_field_of_blanks_is_listed_quoted(ports):
    """Written back bare, ``"  "`` (text, refused by a number column) read as NULL when the record was sent again from
    the result files (the bulk semantics review)."""
    body = b'id,note\n"  ",x\n  ,"\t"\n" \t" ,"a b"\n'
    message = queued(ports, BulkOperation.INSERT, body)  # name and city left out: refused, every record listed
    start_bulk_job(ports, message)
    assert stored(ports, message.job_id).state is BulkState.FAILED
    listed = result_file(ports, message.job_id, "unprocessed")
    assert listed == b'id,note\n"  ",x\n  ,"\t"\n" \t",a b\n'


def test_batches_of_38000_columns_refused_have_their_records_listed(ports):
    """Every distinct name of one to three characters (37,989 of them, 113 KB: within what a job keeps) in each of
    five batches: the job fails ``unknown_columns``, and the executor lists its records in unprocessedrecords before
    it answers. The listed header was built with a list's ``in``, some 11 s a batch (over a quarter of an hour for
    100 batches, past even the bulk results function's 15 minutes), so the executor timed out with the other jobs of
    its batch; a set now, about a second (not a timed test: speed is for bench/)."""
    first, rest = string.ascii_lowercase + "_", string.ascii_lowercase + string.digits + "_"
    names = [*first, *(a + b for a in first for b in rest), *(a + b + c for a in first for b in rest for c in rest)]
    body = (",".join(names) + "\n" + "," * (len(names) - 1) + "\n").encode()
    message = queued(ports, BulkOperation.INSERT, *[body] * 5)
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code, job.results_ready) == (BulkState.FAILED, "unknown_columns", True)
    listed = result_rows(ports, message.job_id, "unprocessed")
    assert listed[0] == names and len(listed) == 1 + 5


def test_a_large_file_refused_before_any_statement_has_its_result_files_written_apart(ports, monkeypatch):
    """Failing a file that never loaded writes every record to unprocessed.csv in the function that refused it (the
    executor here: 30 s, 512 MB). 16 MiB of two-byte lines is eight million records, some 13 CPU-seconds on this
    machine where the executor has about 9 on Lambda (found by the drops review): past 2 MiB the bulk results
    function writes them, as for a large load."""
    monkeypatch.setattr("spectra.bulk.lifecycle.UNSTARTED_INLINE_MAX_BYTES", 1000)
    message = queued(ports, BulkOperation.INSERT, b"id,name,shoe_size\n" + b"1,a,44\n" * 200)  # 1,418 bytes
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code, job.results_ready) == (BulkState.FAILED, "unknown_columns", False)
    assert ports.bulk.results_queue.messages == [BulkResultsRequested(job_id=job.job_id, tenant_id="acme")]
    assert write_owed_results(ports, ports.bulk.results_queue.messages[0]).results_ready
    assert len(result_rows(ports, job.job_id, "unprocessed")) == 201  # the header and every record


def test_a_batch_with_a_header_only_is_loaded_beside_the_others(ports):
    """A script that sends every chunk it cut may send an empty last one: that batch loads no rows, and the job's
    other rows still load (the whole job failed no_rows)."""
    job = start_bulk_job(ports, queued(ports, BulkOperation.INSERT, HEADER + b"1,A,B\n", HEADER))
    assert job is not None and job.error is None
    assert "execute_batch" in warehouse_calls(ports)


def test_a_job_whose_batches_all_lack_rows_fails_no_rows(ports):
    message = queued(ports, BulkOperation.INSERT, HEADER, HEADER + b"\n")
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "no_rows")
    assert job.error.message == "none of the job's 2 files has rows, only a header line each"
    assert "execute_batch" not in warehouse_calls(ports)


def test_a_one_batch_job_without_rows_names_the_batch_as_its_other_errors_do(ports):
    """Its stored name alone was said, which the client never saw (a JSON job's batch was named as a .csv)."""
    message = queued(ports, BulkOperation.INSERT, HEADER + b"\n")
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.error.code, job.error.message) == (
        "no_rows",
        "batch 1 of 1 (batch-00000.csv) has a header line but no rows",
    )


def test_a_file_deleted_before_the_start_fails_the_job_instead_of_retrying_forever(ports):
    message = queued(ports)
    source = stored(ports, message.job_id).files[0]
    del ports.bulk.files.client.objects[(source.bucket, source.key)]
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "file_not_found")
    assert job.error.message.endswith(f"({source.key.rsplit('/', 1)[-1]}) was deleted before the job read it")
    assert job.results_ready and job.event_published  # settled: not left for the reconciler to retry


def test_files_with_different_headers_fail_the_job(ports):
    message = queued(ports, BulkOperation.INSERT, HEADER + b"1,a,b\n", b"id,name\n2,b\n")
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert job.error.code == "invalid_header" and "differs from the first file" in job.error.message
    assert job.error.message.startswith("batch 2 of 2 (batch-00001.csv)'s header")  # the stored name: not the client's


@pytest.mark.parametrize("second", ["id,name\n2,b\n".encode("utf-16"), gzip.compress(b"")], ids=["utf-16", "empty-gz"])
def test_a_batch_the_job_refuses_is_named_by_its_place_among_the_batches(ports, second):
    """A batch's stored name is the service's own, which the client never saw: the job's error says which batch."""
    message = queued(ports, BulkOperation.INSERT, HEADER + b"1,a,b\n", second, HEADER + b"3,c,d\n")
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert job.state is BulkState.FAILED
    assert job.error.message.startswith("batch 2 of 3 (batch-00001.csv"), job.error.message


def test_a_dropped_file_the_job_refuses_is_named_as_the_tenant_named_it(ports):
    key, body = "acme/accounts/Jan.csv", b"id,name\n".decode().encode("utf-16")
    etag = ports.bulk.files.client.put_object(Bucket=INGEST_BUCKET, Key=key, Body=body)["ETag"]
    job = accept_drop(ports, DroppedObject(INGEST_BUCKET, key, len(body), etag))
    start_bulk_job(ports, ports.queue.messages[-1])
    assert stored(ports, job.job_id).error.message.startswith("Jan.csv: ")


def test_unprocessed_records_of_batches_with_different_headers_are_listed_in_their_own_columns(ports):
    """Listed under the first batch's header as they were sent, a later batch's records were in the wrong columns (a
    city under name), and a tenant sending the file again loaded them so. A ragged record cannot be placed: as sent."""
    message = queued(
        ports,
        BulkOperation.INSERT,
        HEADER + b"1,Ann,Oslo\n",
        b"City, ID ,Name\nBergen,2,Bob\nTromso,4\n",
        b"zip,id,name,city\n0150,3,Cy,Oslo\n",
        b"name,id\nDee,5\n",
    )
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_header")
    assert result_rows(ports, job.job_id, "unprocessed") == [
        ["id", "name", "city", "zip"],
        ["1", "Ann", "Oslo", ""],
        ["2", "Bob", "Bergen", ""],
        ["Tromso", "4"],
        ["3", "Cy", "Oslo", "0150"],
        ["5", "Dee", "", ""],
    ]


def test_a_batch_whose_header_pads_a_quoted_name_is_placed_by_name(ports):
    """The header check reads `` "city" `` as city, as COPY does (f6d8a30); the result files read it as written, so
    the batch's records were listed as sent under the first batch's columns, Bob under id (the diff review)."""
    message = queued(ports, BulkOperation.INSERT, HEADER + b"1,Ann,Oslo\n", b'name,id, "city" \nBob,2,Bergen\n')
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert job.error.code == "invalid_header"
    listed = result_rows(ports, job.job_id, "unprocessed")
    assert listed == [["id", "name", "city"], ["1", "Ann", "Oslo"], ["2", "Bob", "Bergen"]]


def test_unprocessed_records_of_json_batches_with_other_keys_are_listed_in_their_own_columns(ports):
    """A JSON job's batches whose records have other keys (an optional field) fail the job as CSV headers that
    differ do; listed under the first batch's columns as rewritten, the second batch's city was under email and its
    email under name (found by the JSON review). Their keys are column names, checked at upload: placed by name."""
    from spectra.bulk.jsonfiles import as_csv

    first = as_csv(b'[{"id": "1", "name": "Ann"}]', gzip=False, max_bytes=1 << 20)
    second = as_csv(b'{"id": "2", "city": "Bergen"}', gzip=False, max_bytes=1 << 20)
    message = queued(ports, BulkOperation.INSERT, first, second, content_type="JSON")
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "invalid_header")
    listed = result_rows(ports, job.job_id, "unprocessed")
    assert listed == [["id", "name", "city"], ["1", "Ann", ""], ["2", "", "Bergen"]]


@pytest.mark.parametrize(
    "second",
    [b"id,nmae,city\n2,Bob,Bergen\n", b"id;name;city\n2;Bob;Bergen\n"],
    ids=["misspelt-name", "other-delimiter"],
)
def test_unprocessed_records_of_batches_with_other_columns_are_listed_as_sent(ports, second):
    """A misspelt name or another delimiter is not another order of the same columns: placed by name, the batch's
    values were split off into a column of their own, and the file no longer loaded once its header was fixed."""
    message = queued(ports, BulkOperation.INSERT, HEADER + b"1,Ann,Oslo\n", second)
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert job.error.code == "invalid_header"
    rows = result_rows(ports, job.job_id, "unprocessed")
    assert rows[:2] == [["id", "name", "city"], ["1", "Ann", "Oslo"]]
    assert rows[2] in (["2", "Bob", "Bergen"], ["2;Bob;Bergen"])


def test_a_table_the_tenant_cannot_see_fails_the_job(ports):
    message = queued(ports, BulkOperation.INSERT, object="payroll")
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "table_not_found")
    assert "public.payroll" in job.error.message


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda t: t.set_active("acme", False), "tenant_inactive"),
        (lambda t: (t.delete_tenant("acme"), t.create_tenant("acme", db_user="tenant_acme_2")), "tenant_inactive"),
        (
            lambda t: t.tenants.update(acme=t.tenants["acme"].model_copy(update={"db_user": "awsuser"})),
            "identity_refused",
        ),
    ],
    ids=["inactive", "re-created", "admin-user"],
)
def test_an_identity_refused_in_code_fails_the_job_before_the_warehouse_is_asked(ports, change, code):
    message = queued(ports)
    change(ports.tenants)
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, code)
    # its event names the generation that made it: the notifier tells it to none of a re-created tenant's hooks
    assert ports.events.events[-1].detail.tenant_generation == job.tenant_generation is not None
    assert ports.warehouse.calls == []


def test_a_job_queued_before_its_tenant_was_deactivated_and_made_active_again_fails_tenant_inactive(ports):
    """How an operator stops a leaked key's work (README, "Tenancy and security"): a load the key had queued waited in
    its tenant's line through the deactivation, and ran once the tenant was active again (the lifecycle review)."""
    message = queued(ports, BulkOperation.DELETE)
    ports.bulk.jobs.update(message.job_id, [BulkState.UPLOAD_COMPLETE], queued_at=utcnow() - timedelta(minutes=2))
    ports.tenants.set_active("acme", False)
    ports.tenants.set_active("acme", True)
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "tenant_inactive")
    assert "made active again" in job.error.message
    assert ports.warehouse.calls == []
    since = queued(ports)  # queued after the reactivation: loaded
    start_bulk_job(ports, since)
    assert stored(ports, since.job_id).state is BulkState.IN_PROGRESS


@pytest.mark.parametrize("method", ["describe_table", "execute_batch"])
def test_throttling_is_retried_and_the_retry_starts_the_same_statement(ports, method):
    message = queued(ports)
    ports.warehouse.throttle_next(method)
    with pytest.raises(Throttled):
        start_bulk_job(ports, message)
    waiting = stored(ports, message.job_id)
    assert (waiting.state, waiting.statement_id) == (BulkState.IN_PROGRESS, None)
    job = start_bulk_job(ports, message)
    assert job.statement_id is not None
    assert start_bulk_job(ports, message) is None  # a third delivery: nothing more to start
    assert warehouse_calls(ports).count("execute_batch") == 1


def test_each_throttled_attempt_moves_the_job_back_in_the_pending_index(ports):
    """As for query jobs: SQS's redeliveries of a throttled start come first, without copies from the reconciler,
    which counted from the first attempt (found by review: a copy 300 s after it, within the message's retries)."""
    message = queued(ports)
    ports.warehouse.throttle_next("execute_batch", times=2)
    with pytest.raises(Throttled):
        start_bulk_job(ports, message)
    between = utcnow()
    with pytest.raises(Throttled):
        start_bulk_job(ports, message)  # SQS's redelivery
    assert ports.bulk.jobs.pending_since(message.job_id) > between


def test_throttling_on_the_final_attempt_fails_the_job_with_the_reason(ports):
    message = queued(ports)
    ports.warehouse.throttle_next("execute_batch")
    assert start_bulk_job(ports, message, final_attempt=True) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "warehouse_unavailable")
    assert "Rate exceeded" in job.error.message


def test_a_full_warehouse_on_the_final_attempt_leaves_the_job_waiting_for_a_message_of_its_own(ports):
    """As for query jobs: ActiveStatementsExceededException is a full account, not trouble; the load waits on (the
    throttling review: it failed 'warehouse_unavailable'), its message sent again after a pause."""
    message = queued(ports)
    ports.warehouse.throttle_next("execute_batch", aws_error="ActiveStatementsExceededException")
    sent = len(ports.queue.messages)
    assert start_bulk_job(ports, message, final_attempt=True) is None
    assert stored(ports, message.job_id).state is BulkState.IN_PROGRESS
    assert ports.queue.messages[sent:] == [message] and ports.queue.delays[-1] > 0
    assert start_bulk_job(ports, ports.queue.messages[-1]).statement_id is not None


@pytest.mark.parametrize(
    ("operation", "method", "code", "status"),
    [
        ("batch_execute_statement", "execute_batch", "BatchExecuteStatementException", 500),
        ("describe_table", "describe_table", "QueryTimeoutException", 400),
    ],
)
def test_passing_data_api_trouble_is_retried_not_a_failed_job(ports, operation, method, code, status):
    """An environmental error of BatchExecuteStatement (500, as ExecuteStatementException, which query jobs retried)
    and a DescribeTable timing out are modelled answers of the Data API (botocore's model), which the emulator never
    gives: as a real client raises them through the port, they failed the load ``statement_rejected``."""
    from tests.unit.test_warehouse_answers import raised_by

    message = queued(ports)
    ports.warehouse._script(method, raised_by(operation, code, status))
    with pytest.raises(Throttled):
        start_bulk_job(ports, message)
    assert stored(ports, message.job_id).state is BulkState.IN_PROGRESS
    assert start_bulk_job(ports, message).statement_id is not None  # SQS's redelivery starts it


@pytest.mark.parametrize("final_attempt", [False, True], ids=["retried", "last-delivery"])
def test_a_failed_check_whose_statement_lookup_is_throttled_is_handled_as_throttling(ports, monkeypatch, final_attempt):
    """A failed check asks the Data API for a statement another copy started under the job's name before it fails the
    job; that lookup throttled escaped the executor from inside the check's ``except`` (found by the diff review):
    not moved back in the pending index, so the reconciler added a copy of the message while SQS's retries came, and
    on the queue's last delivery the job was neither failed nor loaded (the message dead-lettered, the tenant's slot
    held until the reconciler re-queued it). It is throttling now: retried, or on the last try failed with the check's
    own reason."""
    message = queued(ports, BulkOperation.INSERT, b"id,name,shoe_size\n1,a,44\n")  # unknown_columns
    seen: list = []

    def find_throttled(job_id):
        seen.append(ports.bulk.jobs.pending_since(job_id))  # where the job stood in the index when it asked
        raise Throttled("Redshift Data API: ThrottlingException: Rate exceeded")

    monkeypatch.setattr(ports.warehouse, "find", find_throttled)
    if not final_attempt:
        with pytest.raises(Throttled):
            start_bulk_job(ports, message)
        assert stored(ports, message.job_id).state is BulkState.IN_PROGRESS
        assert ports.bulk.jobs.pending_since(message.job_id) > seen[-1]  # to the back: no copy added meanwhile
        return
    assert start_bulk_job(ports, message, final_attempt=True) is None
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code) == (BulkState.FAILED, "unknown_columns")
    assert ports.slots.holders("acme") == {}


def test_a_statement_the_warehouse_refuses_fails_the_job(ports):
    message = queued(ports)
    ports.warehouse.reject_next("syntax error at or near COPY", method="execute_batch")
    start_bulk_job(ports, message)
    job = stored(ports, message.job_id)
    assert (job.state, job.error.code, job.error.message) == (
        BulkState.FAILED,
        "statement_rejected",
        "syntax error at or near COPY",
    )


def _plan_written_before_any_executor_could_still_run(ports, job_id: str) -> None:
    """The job's plan as a redelivery finds it: SQS's visibility timeout (180 s) is past STARTING_AT_MOST."""
    from spectra.bulk.lifecycle import STARTING_AT_MOST

    then = utcnow() - STARTING_AT_MOST - timedelta(seconds=1)
    ports.bulk.jobs._items[job_id]["plan"]["planned_at"] = then.isoformat()


def test_an_abort_requested_before_the_statement_started_ends_the_job_aborted(ports):
    from spectra.errors import StartUnderWay

    message = queued(ports)
    ports.warehouse.throttle_next("execute_batch")
    with pytest.raises(Throttled):
        start_bulk_job(ports, message)
    ports.bulk.jobs.update(message.job_id, [BulkState.IN_PROGRESS], abort_requested_at=utcnow())
    with pytest.raises(StartUnderWay):  # at once, it cannot tell that attempt from one still starting the load
        start_bulk_job(ports, message)
    _plan_written_before_any_executor_could_still_run(ports, message.job_id)
    assert start_bulk_job(ports, message) is None
    assert stored(ports, message.job_id).state is BulkState.ABORTED
    assert "execute_batch" not in warehouse_calls(ports)


@pytest.fixture
def died_before_recording(ports):
    """A job whose executor died between BatchExecuteStatement and recording the statement, then was aborted (PATCH
    Aborted found no statement to cancel): its message, and the statement that runs on."""
    message = queued(ports)
    ports.bulk.jobs.die_recording_statement()
    with pytest.raises(RuntimeError):
        start_bulk_job(ports, message)
    ports.bulk.jobs.update(message.job_id, [BulkState.IN_PROGRESS], abort_requested_at=utcnow())
    [statement_id] = [s for s in ports.warehouse.statements if ":" not in s]
    _plan_written_before_any_executor_could_still_run(ports, message.job_id)  # the message comes back after that
    return message, statement_id


def test_an_abort_after_an_attempt_died_mid_start_cancels_the_statement_it_started(ports, died_before_recording):
    message, statement_id = died_before_recording
    assert start_bulk_job(ports, message) is None  # the message comes back
    assert stored(ports, message.job_id).statement_id == statement_id  # found by the job's name, and recorded
    assert ("cancel", statement_id) in ports.warehouse.calls
    done = complete_bulk_statement(ports, ports.warehouse.status_change(statement_id))
    assert done.state is BulkState.ABORTED
    assert warehouse_calls(ports).count("execute_batch") == 1


def test_a_load_that_committed_before_the_abort_came_ends_complete_not_aborted(ports, died_before_recording):
    message, statement_id = died_before_recording
    change = ports.warehouse.finish_batch(statement_id, {0: 1, 1: []})  # it ran on and committed
    assert start_bulk_job(ports, message) is None
    assert stored(ports, message.job_id).statement_id == statement_id
    done = complete_bulk_statement(ports, change)
    assert done.state is BulkState.JOB_COMPLETE and done.counts.processed == 1 and done.counts.failed == 0


def test_a_load_started_on_a_host_whose_clock_runs_ahead_never_ends_before_it_started(ports):
    """started_at is the executor's clock, completed_at the completion consumer's: with the executor 3 s ahead, a
    quick load was answered with a negative totalProcessingTime (and ended before it started)."""
    job = start_bulk_job(ports, queued(ports))
    ahead = utcnow() + timedelta(seconds=3)
    ports.bulk.jobs.update(job.job_id, [BulkState.IN_PROGRESS], started_at=ahead)  # as the executor's host stamped it
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 1, 1: []}))
    assert done.state is BulkState.JOB_COMPLETE and done.completed_at >= done.started_at == ahead
    info = BulkJobInfo.of(done)
    assert info.totalProcessingTime >= 0 and info.apiActiveProcessingTime >= 0


def test_an_unknown_or_ended_job_is_not_started(ports):
    assert start_bulk_job(ports, BulkJobQueuedMessage(job_id="b_nope", tenant_id="acme")) is None
    message = queued(ports)
    ports.bulk.jobs.transition(message.job_id, BulkState.ABORTED)
    assert start_bulk_job(ports, message) is None
    assert ports.warehouse.calls == []


# -- completion of a load -------------------------------------------------------------------------------------------

MIXED = HEADER + b"1,Ann,Oslo\n2,Bob,Rome\nx,Bad,Oslo\n3,Cy,Pisa\n"


def started(ports, operation: BulkOperation = BulkOperation.INSERT, *bodies: bytes, **fields):
    job = start_bulk_job(ports, queued(ports, operation, *bodies, **fields))
    assert job is not None and job.statement_id
    return job


def test_a_bulk_jobs_end_is_one_info_line_whichever_way_it_ends(ports, caplog):
    """README (Operations): a job's trip is readable from its log lines at the default level. A bulk job's showed it
    started and fanned out, and nothing of how it ended: its end is one INFO line, as a query job's "job completed"."""
    with caplog.at_level(logging.INFO, logger="spectra.bulk.lifecycle"):
        loaded = started(ports)
        complete_bulk_statement(ports, ports.warehouse.finish_batch(loaded.statement_id, {0: 1, 1: []}))
        complete_bulk_statement(ports, ports.warehouse.finish_batch(loaded.statement_id, {0: 1, 1: []}))  # a copy
        assert start_bulk_job(ports, queued(ports, BulkOperation.INSERT, b"id,city\n1,Oslo\n")) is None  # refused
    ended = [(r.getMessage(), r.levelname, getattr(r, "error_code", None)) for r in caplog.records]
    ended = [line for line in ended if line[0].startswith("bulk job ")]
    assert ended == [("bulk job JobComplete", "INFO", None), ("bulk job Failed", "INFO", "missing_columns")]


def test_the_completion_consumer_says_it_handled_a_bulk_jobs_status_event(ports, monkeypatch):
    """Its "status event handled" line, one of a job's trip (README, Operations), was written for query jobs only."""
    import consumers.completion.app as completion

    monkeypatch.setattr(completion, "get_ports", lambda: ports)
    lines: list[logging.LogRecord] = []
    collector = logging.Handler(logging.INFO)
    collector.emit = lines.append
    function_logger = logging.getLogger(completion.logger.name)
    function_logger.addHandler(collector)
    try:
        job = started(ports)
        completion.complete(ports.warehouse.finish_batch(job.statement_id, {0: 1, 1: []}))
    finally:
        function_logger.removeHandler(collector)
    handled = [r for r in lines if r.getMessage() == "status event handled"]
    assert [getattr(r, "job_status", None) for r in handled] == ["JobComplete"]


def test_a_value_holding_a_cr_is_written_quoted_and_reads_back_as_one_row(ports):
    job = started(ports, BulkOperation.INSERT, HEADER + b'1,"a\rb",Oslo\n')
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 1, 1: []}))
    assert result_rows(ports, job.job_id, "successful")[1:] == [["", "true", "1", "a\rb", "Oslo"]]


def test_an_insert_naming_an_external_id_lists_a_row_with_a_blank_one_as_loaded(ports):
    """An insert's externalIdFieldName only names sf__Id: the missing-id refusal is the staged operations' rule."""
    job = started(ports, BulkOperation.INSERT, HEADER + b"1,Ann,\n", external_id_field="city")
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 1, 1: []}))
    assert (done.counts.processed, done.counts.failed) == (1, 0)
    assert result_rows(ports, job.job_id, "failed")[1:] == []
    assert result_rows(ports, job.job_id, "successful")[1:] == [["", "true", "1", "Ann", ""]]


def test_a_quoted_cr_starts_no_line_so_the_rejected_line_is_the_right_record(ports):
    job = started(ports, BulkOperation.INSERT, HEADER + b'1,"a\rb",Oslo\n2,Bob,Rome\nx,Bad,Oslo\n')
    url = job.files[0].url  # the warehouse counts lines by LF: x,Bad,Oslo is line 4
    complete_bulk_statement(
        ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: [[url, "4", "id", "Invalid digit"]]})
    )
    assert [r[2] for r in result_rows(ports, job.job_id, "failed")[1:]] == ["x"]
    assert [r[2] for r in result_rows(ports, job.job_id, "successful")[1:]] == ["1", "2"]


def test_blank_lines_are_records_the_warehouse_judges(ports):
    """COPY rejects a blank line of a table with several columns: it is a failed record, so the files add up."""
    job = started(ports, BulkOperation.INSERT, HEADER + b"1,Ann,Oslo\n\n2,Bob,Rome\n")
    url = job.files[0].url
    done = complete_bulk_statement(
        ports,
        ports.warehouse.finish_batch(
            job.statement_id, {0: 2, 1: [[url, "3", "name", 'missing data for column "name"']]}
        ),
    )
    assert (done.counts.processed, done.counts.failed) == (3, 1)
    assert result_rows(ports, job.job_id, "failed")[1:] == [["", 'name: missing data for column "name"', ""]]
    assert len(result_rows(ports, job.job_id, "successful")[1:]) == 2


def test_rejected_lines_of_a_file_whose_url_passes_256_characters_are_still_matched(ports):
    """stl_load_errors keeps 256 characters of a file's name; a dropped file's URL may be longer."""
    key = "acme/accounts/" + "n" * 240 + ".csv"
    body = HEADER + b"1,Ann,Oslo\nx,Bad,Oslo\n"
    etag = ports.bulk.files.client.put_object(Bucket=INGEST_BUCKET, Key=key, Body=body)["ETag"]
    job = accept_drop(ports, DroppedObject(INGEST_BUCKET, key, len(body), etag))
    running = start_bulk_job(ports, ports.queue.messages[-1])
    url = running.files[0].url
    assert len(url) > 256
    rejected = [[url[:256], "3", "id", "Invalid digit"]]
    complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: rejected}))
    assert [r[2] for r in result_rows(ports, job.job_id, "failed")[1:]] == ["x"]
    assert [r[2] for r in result_rows(ports, job.job_id, "successful")[1:]] == ["1"]


@pytest.mark.parametrize("cut", ["bytes", "characters"])
def test_rejected_lines_of_a_file_named_in_multibyte_characters_are_matched_however_the_name_was_cut(ports, cut):
    """Redshift's CHAR(256) keeps 256 bytes of the name, maybe ending inside a character (the Data API then answers
    the broken end as U+FFFD); the emulator keeps 256 characters. Matched on characters, a name of 120 'ü' cut at
    256 bytes matched nothing on Redshift: its bad rows were listed as successful."""
    key = "acme/accounts/" + "ü" * 120 + "日本" * 20 + ".csv"
    body = HEADER + b"1,Ann,Oslo\nx,Bad,Oslo\n"
    etag = ports.bulk.files.client.put_object(Bucket=INGEST_BUCKET, Key=key, Body=body)["ETag"]
    job = accept_drop(ports, DroppedObject(INGEST_BUCKET, key, len(body), etag))
    running = start_bulk_job(ports, ports.queue.messages[-1])
    url = running.files[0].url
    kept = url.encode()[:256].decode("utf-8", "replace") if cut == "bytes" else url[:256]
    assert kept.endswith("\ufffd") == (cut == "bytes")  # 256 bytes end inside a character
    rejected = [[kept, "3", "id", "Invalid digit"]]
    complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: rejected}))
    assert [r[2] for r in result_rows(ports, job.job_id, "failed")[1:]] == ["x"]
    assert [r[2] for r in result_rows(ports, job.job_id, "successful")[1:]] == ["1"]


def test_the_rows_a_copy_loaded_are_asked_of_the_warehouse_not_read_from_its_result_rows(ports):
    """The Data API has answered ResultRows 0 for a COPY (aws/aws-sdk#333, #356): read from it, an insert counted
    nothing loaded and an upsert's failures went negative. pg_last_copy_count() says what the COPY loaded."""
    job = started(ports, BulkOperation.INSERT, MIXED)
    url = job.files[0].url
    answers = {0: 0, 1: [[url, "4", "id", "Invalid digit"]], job.plan.loaded[0]: [["3"]]}
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, answers))
    assert done.counts == BulkCounts(processed=4, failed=1, created=3)


def test_a_plan_recorded_before_copy_counts_were_asked_reads_result_rows(ports):
    """Every COPY's ResultRows, a plain batch's and a gzip one's (with one batch, counting the first COPY alone
    passed too: found by the test-quality review)."""
    job = started(ports, BulkOperation.INSERT, MIXED, gzip.compress(HEADER + b"4,Dee,Kyiv\n5,Eve,Lima\n"))
    job = ports.bulk.jobs.update(job.job_id, [BulkState.IN_PROGRESS], plan=job.plan.model_copy(update={"loaded": []}))
    assert job.plan.copies == [(0, 1), (3, 4)]
    url = job.files[0].url
    answers = {0: 3, 1: [[url, "4", "id", "Invalid digit"]], 2: [["0"]], 3: 2, 4: [], 5: [["0"]]}
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, answers))
    assert done.counts == BulkCounts(processed=6, failed=1, created=5)


def test_an_insert_counts_loaded_and_rejected_rows_and_lists_each_record_once(ports):
    job = started(ports, BulkOperation.INSERT, MIXED)
    url = job.files[0].url
    change = ports.warehouse.finish_batch(job.statement_id, {0: 3, 1: [[url, "4", "id", "Invalid digit"]]})
    done = complete_bulk_statement(ports, change)
    assert done.state is BulkState.JOB_COMPLETE
    assert done.counts == BulkCounts(processed=4, failed=1, created=3)
    assert result_rows(ports, job.job_id, "successful") == [
        ["sf__Id", "sf__Created", "id", "name", "city"],
        ["", "true", "1", "Ann", "Oslo"],
        ["", "true", "2", "Bob", "Rome"],
        ["", "true", "3", "Cy", "Pisa"],
    ]
    assert result_rows(ports, job.job_id, "failed") == [
        ["sf__Id", "sf__Error", "id", "name", "city"],
        ["", "id: Invalid digit", "x", "Bad", "Oslo"],
    ]
    assert result_rows(ports, job.job_id, "unprocessed") == [["id", "name", "city"]]
    [event] = ports.events.events
    assert event.detail_type == "Bulk Job Completed"
    assert (event.detail.number_records_processed, event.detail.number_records_failed) == (4, 1)
    final = stored(ports, job.job_id)
    assert final.results_ready and final.event_published
    assert ports.bulk.jobs.pending_since(job.job_id) is None
    assert ports.bulk.results_queue.messages == []


def test_a_small_jobs_result_files_exist_before_it_is_complete(ports, monkeypatch):
    job = started(ports, BulkOperation.INSERT, MIXED)
    seen = {}
    store, transition = ports.bulk.jobs, ports.bulk.jobs.transition

    def watching(job_id, to, **kwargs):
        seen[to] = sorted(k for k in ports.bulk.files.client.keys(RESULTS_BUCKET) if "/results/" in k)
        return transition(job_id, to, **kwargs)

    monkeypatch.setattr(store, "transition", watching)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 4, 1: []}))
    attempt = stored(ports, job.job_id).results_attempt  # recorded by that very write
    assert attempt and seen[BulkState.JOB_COMPLETE] == [
        f"acme/{job.job_id}/results/{attempt}/{kind}.csv" for kind in ("failed", "successful", "unprocessed")
    ]


def test_a_large_job_ends_first_and_its_result_files_follow_through_the_results_queue():
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job = started(ports, BulkOperation.INSERT, MIXED)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 4, 1: []}))
    ended = stored(ports, job.job_id)
    assert (ended.state, ended.results_ready, ended.event_published) == (BulkState.JOB_COMPLETE, False, True)
    assert not [k for k in ports.bulk.files.client.keys(RESULTS_BUCKET) if "/results/" in k]
    assert ports.bulk.jobs.pending_since(job.job_id) is not None  # its files are still owed
    [request] = ports.bulk.results_queue.messages
    assert request == BulkResultsRequested(job_id=job.job_id, tenant_id="acme")

    written = write_owed_results(ports, request)
    assert written.results_ready is True
    assert [r[2] for r in result_rows(ports, job.job_id, "successful")[1:]] == ["1", "2", "x", "3"]
    assert ports.bulk.jobs.pending_since(job.job_id) is None
    assert write_owed_results(ports, request) is None  # a repeated request writes nothing


def test_a_large_job_shows_in_progress_until_its_result_files_can_be_fetched():
    """Bulk 2.0 clients (jsforce's loadAndWaitForResults, simple-salesforce) poll until JobComplete, then fetch the
    result files at once: a large job showed JobComplete while they were being written, and the fetch got 409."""
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job, request = owing_results(ports)
    tenant = Caller.of(ports.tenants.get("acme"))
    assert job.state is BulkState.JOB_COMPLETE  # stored as the load ended, and announced so
    assert [e.detail.state for e in ports.events.events] == ["JobComplete"]

    def shown() -> str:
        return BulkJobInfo.of(service.get_job(ports, tenant, job.job_id)).state.value

    def listed(state: BulkState) -> list[str]:
        page = service.list_jobs(ports, tenant, state=state, operation=None, limit=10, next_token=None)
        return [j.job_id for j in page.jobs]

    assert shown() == "InProgress"
    assert (listed(BulkState.IN_PROGRESS), listed(BulkState.JOB_COMPLETE)) == ([job.job_id], [])
    with pytest.raises(JobNotFinished):
        downloads.job_results(ports, tenant, job.job_id, "successfulResults")

    write_owed_results(ports, request)
    assert shown() == "JobComplete"
    assert (listed(BulkState.IN_PROGRESS), listed(BulkState.JOB_COMPLETE)) == ([], [job.job_id])
    assert downloads.job_results(ports, tenant, job.job_id, "successfulResults").body


def test_an_abort_while_the_result_files_are_written_says_why_the_job_shows_in_progress():
    """GET shows the job InProgress but its load committed: the abort does nothing and answers 409, as any abort of
    an ended job (an answer of the job as shown would read as an abort accepted), saying why GET shows InProgress."""
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job, _ = owing_results(ports)
    tenant = Caller.of(ports.tenants.get("acme"))
    with pytest.raises(Conflict, match=r"its load committed.*result files are being written") as refused:
        service.change_state(ports, tenant, job.job_id, "Aborted")
    assert refused.value.details == {"state": "JobComplete"}
    assert stored(ports, job.job_id).state is BulkState.JOB_COMPLETE  # nothing was undone


def test_a_large_job_whose_result_files_were_given_up_shows_job_complete():
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job, _ = owing_results(ports)
    give_up_results(ports, job, "too large")
    tenant = Caller.of(ports.tenants.get("acme"))
    assert BulkJobInfo.of(service.get_job(ports, tenant, job.job_id)).state is BulkState.JOB_COMPLETE
    page = service.list_jobs(ports, tenant, state=BulkState.JOB_COMPLETE, operation=None, limit=10, next_token=None)
    assert [j.job_id for j in page.jobs] == [job.job_id]
    with pytest.raises(ResultsUnavailable):  # 410, not 409: nothing to wait for
        downloads.job_results(ports, tenant, job.job_id, "successfulResults")


def test_result_files_are_not_given_up_under_a_writer_that_took_them_since_the_job_was_read():
    """The reconciler's give-up at 20 hours (or a request's, once writers were lost) decides from the job as it read
    it; a writer that took the files in between wrote them, and the job kept results_unavailable: 410 for files
    that existed."""
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job, request = owing_results(ports)  # as the reconciler read it: no writer
    a_run_holds_the_lease(ports, job, for_seconds=600)  # a writer takes the files meanwhile
    assert give_up_results(ports, job, "not done within 20 hours") is None
    ports.bulk.jobs.release_results(stored(ports, job.job_id))  # the writer fails, as if stopped: a retry writes them
    assert write_owed_results(ports, request) is not None
    tenant = Caller.of(ports.tenants.get("acme"))
    assert stored(ports, job.job_id).results_unavailable is None
    assert downloads.job_results(ports, tenant, job.job_id, "successfulResults").body


def owing_results(ports):
    """A large job that ended, its result files owed to the results queue, and the request for them."""
    job = started(ports, BulkOperation.INSERT, MIXED)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 4, 1: []}))
    [request] = ports.bulk.results_queue.messages
    return stored(ports, job.job_id), request


def a_run_holds_the_lease(ports, job, *, for_seconds: int):
    """A run took the job's result files; ``for_seconds`` < 0: it was stopped that long ago, its lease expired."""
    return ports.bulk.jobs.lease_results(job, until=int(utcnow().timestamp()) + for_seconds)


def test_a_request_while_another_run_writes_the_result_files_writes_nothing():
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job, request = owing_results(ports)
    a_run_holds_the_lease(ports, job, for_seconds=600)
    assert write_owed_results(ports, request) is None
    assert not stored(ports, job.job_id).results_ready
    assert not [k for k in ports.bulk.files.client.keys(RESULTS_BUCKET) if "/results/" in k]


def test_a_stopped_runs_lease_is_taken_over_and_counted():
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job, request = owing_results(ports)
    a_run_holds_the_lease(ports, job, for_seconds=-1)
    written = write_owed_results(ports, request)
    assert written.results_ready and written.results_writers_lost == 1
    assert [r[2] for r in result_rows(ports, job.job_id, "successful")[1:]] == ["1", "2", "x", "3"]


def test_a_run_whose_lease_was_taken_over_while_it_wrote_leaves_the_served_files_to_the_run_that_took_it(
    monkeypatch,
):
    """Note 35's list: a run slower than its lease (stopped, or past it) went on to mark its own files served after
    the run that took the lease over had marked its own: whole copies both, but the routes' files changed under a
    client reading them. The slow run's mark is refused by the lease it no longer holds."""
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job, request = owing_results(ports)
    write_results = outcomes.write_results
    runs, took_over = [], []

    def slower_than_its_lease(ports, leased):
        runs.append(leased.results_attempt)
        written = write_results(ports, leased)
        if len(runs) == 1:  # meanwhile its lease ran out, and another run took the files over and wrote them
            a_run_holds_the_lease(ports, stored(ports, leased.job_id), for_seconds=-1)
            took_over.append(write_owed_results(ports, request))
        return written

    monkeypatch.setattr(outcomes, "write_results", slower_than_its_lease)
    assert write_owed_results(ports, request) is None
    [other] = took_over
    assert other.results_ready and stored(ports, job.job_id).results_attempt == other.results_attempt == runs[1]


def test_a_run_that_fails_gives_the_lease_back_for_the_next_receive(monkeypatch):
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job, request = owing_results(ports)

    def throttled(ports, job):
        raise Throttled("S3 slowed down")

    with monkeypatch.context() as patched:
        patched.setattr(outcomes, "write_results", throttled)
        with pytest.raises(Throttled):
            write_owed_results(ports, request)
    assert stored(ports, job.job_id).results_writer_until is None
    written = write_owed_results(ports, request)  # at once, not after a lease's 16 minutes
    assert written.results_ready and written.results_writers_lost == 0


def test_result_files_too_large_to_write_in_a_run_are_given_up_after_the_runs_stopped():
    """Every run of a job too large for the function's 15 minutes is stopped: once three were, the next request
    ends it (410 on the result routes), where requests, redeliveries and reconciler asks kept starting runs for 20
    hours."""
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job, request = owing_results(ports)
    for lost in range(RESULTS_WRITERS_LOST_MAX):
        job = a_run_holds_the_lease(ports, job, for_seconds=-1)
        assert job.results_writers_lost == lost
    given_up = write_owed_results(ports, request)
    assert given_up.results_ready and given_up.results_unavailable
    assert f"{RESULTS_WRITERS_LOST_MAX} runs were stopped before they were done" in given_up.results_unavailable
    assert given_up.error.code == "results_unavailable"
    assert not [k for k in ports.bulk.files.client.keys(RESULTS_BUCKET) if "/results/" in k]


def gone_before_its_results(ports, job) -> None:
    """The job's batch cannot be read once its load committed (deleted, or expired with a job that waited long)."""
    del ports.bulk.files.client.objects[(RESULTS_BUCKET, job.files[0].key)]


def test_result_files_that_fall_short_of_the_warehouses_counts_say_so_on_the_job(ports):
    """The load committed, so the job is JobComplete with the warehouse's counts; its result files list none of the
    records they should (the batch could not be read through), so processed = succeeded + failed does not hold for
    the files, and the job and its event say so rather than a log line only."""
    job = started(ports, BulkOperation.INSERT, MIXED)
    gone_before_its_results(ports, job)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 3, 1: []}))
    ended = stored(ports, job.job_id)
    assert (ended.state, ended.counts) == (BulkState.JOB_COMPLETE, BulkCounts(processed=3, failed=0, created=3))
    assert ended.error.code == "results_mismatch"
    assert "processed 3 records, 0 of them failed" in ended.error.message
    assert "list 0 successful and 0 failed records" in ended.error.message
    [event] = ports.events.events
    assert event.detail_type == "Bulk Job Completed" and event.detail.error == ended.error


def test_a_large_jobs_result_files_that_fall_short_say_so_on_the_job_once_written():
    ports = bulk_ports_with(bulk_inline_results_max_bytes=len(MIXED) - 1)
    job = started(ports, BulkOperation.INSERT, MIXED)
    complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 4, 1: []}))
    assert stored(ports, job.job_id).error is None  # ended before its files were written (and its event sent)
    gone_before_its_results(ports, job)
    [request] = ports.bulk.results_queue.messages
    written = write_owed_results(ports, request)
    assert written.results_ready and written.state is BulkState.JOB_COMPLETE
    assert written.error.code == "results_mismatch" and "processed 4 records" in written.error.message


def test_result_files_that_list_every_record_leave_the_job_without_an_error(ports):
    job = started(ports, BulkOperation.INSERT, MIXED)
    url = job.files[0].url
    done = complete_bulk_statement(
        ports, ports.warehouse.finish_batch(job.statement_id, {0: 3, 1: [[url, "4", "id", "x"]]})
    )
    assert done.state is BulkState.JOB_COMPLETE and done.error is None


def test_rejected_lines_are_matched_to_their_own_file(ports):
    job = started(ports, BulkOperation.INSERT, HEADER + b"1,A,B\nx,B,C\n", HEADER + b"y,C,D\n2,D,E\n")
    first, second = (f.url for f in job.files)
    rejected = [[first, "3", "id", "Invalid digit"], [second, "2", "id", "Invalid digit"]]
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: rejected}))
    assert done.counts == BulkCounts(processed=4, failed=2, created=2)
    assert [r[2] for r in result_rows(ports, job.job_id, "successful")[1:]] == ["1", "2"]
    assert [r[2] for r in result_rows(ports, job.job_id, "failed")[1:]] == ["x", "y"]


def test_on_redshift_serverless_a_load_rejects_no_row_it_could_not_list():
    """Serverless keeps a COPY's rejected rows in sys_load_error_detail, not stl_load_errors: under MAXERROR 100000
    a bad row was dropped unlisted and its record written to successfulResults (the emulator fidelity review).
    There the COPY takes MAXERROR 0 (a file with a bad row fails whole, nothing loaded) and reads no STL view."""
    secret = "arn:aws:secretsmanager:us-east-1:000000000000:secret:spectra/tenants/acme-AbCdEf"
    ports = make_ports(settings=make_settings(redshift_cluster_id=None, redshift_workgroup="spectra"))
    ports.tenants.create_tenant("acme", secret_arn=secret)
    ports.warehouse.add_table("public", "accounts", ["id", "name", "city"], required=["id", "name"])
    job = started(ports, BulkOperation.INSERT, MIXED)
    sqls = ports.warehouse.batch_sqls(job.statement_id)
    assert "MAXERROR 0" in sqls[0] and not any("stl_load_errors" in sql for sql in sqls)
    provisioned = bulk_ports_with()  # a provisioned cluster lists them
    sqls = provisioned.warehouse.batch_sqls(started(provisioned, BulkOperation.INSERT, MIXED).statement_id)
    assert "MAXERROR 100000" in sqls[0] and "stl_load_errors" in sqls[1]


def test_a_load_whose_files_the_completion_has_no_time_to_write_hands_them_to_the_results_function(ports):
    """The bulk results review: 16 MiB of one-byte records took 61 s to write on this machine, inside the 90 s
    completion; cut by its timeout, the run counted nothing, and the job held its slot until the Data API forgot
    the statement. A run with too little time left for its input hands the files on, as for a large load."""
    from spectra import deadline

    body = HEADER + b"1,Ann,Oslo\n" * 2_000  # 22 KB: 0.2 s at the worst rate
    job = started(ports, BulkOperation.INSERT, body)
    change = ports.warehouse.finish_batch(job.statement_id, {0: 2_000, 1: []})
    with deadline.lasting(deadline.MARGIN_SECONDS + 0.1):  # a tenth of a second left
        done = complete_bulk_statement(ports, change)
    assert (done.state, done.results_ready) == (BulkState.JOB_COMPLETE, False)
    assert ports.bulk.results_queue.messages == [BulkResultsRequested(job_id=job.job_id, tenant_id="acme")]
    assert write_owed_results(ports, ports.bulk.results_queue.messages[0]).results_ready
    assert len(result_rows(ports, job.job_id, "successful")) == 1 + 2_000
    again = started(ports, BulkOperation.INSERT, body)
    change = ports.warehouse.finish_batch(again.statement_id, {0: 2_000, 1: []})
    with deadline.lasting(deadline.MARGIN_SECONDS + 60):  # time enough: written as it ends
        assert complete_bulk_statement(ports, change).results_ready


def test_files_that_list_a_rejected_record_as_loaded_are_a_results_mismatch(ports):
    """The warehouse rejected one of 4 records, but its stl_load_errors row names a file the result writer does not
    match (a CHAR(256) cut, say): the files list 4 successful and 0 failed. Their sum equals processed, so only the
    failed counts tell that the files call a rejected record loaded."""
    job = started(ports, BulkOperation.INSERT, MIXED)
    elsewhere = "s3://elsewhere/not-this-file.csv"
    done = complete_bulk_statement(
        ports, ports.warehouse.finish_batch(job.statement_id, {0: 3, 1: [[elsewhere, "4", "id", "Invalid digit"]]})
    )
    assert (done.counts.processed, done.counts.failed) == (4, 1)
    assert len(result_rows(ports, job.job_id, "successful")) - 1 == 4  # the files' (wrong) story
    assert done.error is not None and done.error.code == "results_mismatch"


def test_a_record_past_the_readers_limit_is_listed_failed_with_the_reason_and_counted(ports, monkeypatch):
    """A record longer than the reader holds (MAX_RECORD_CHARS, 16 MiB: past any warehouse row) has no fields to
    match: the warehouse counted it rejected, and should its stl_load_errors row not name it where the reader
    finds it, the failed file lists it with the reason, and every record is still in one file (the reader's own
    test checked the record came back empty, not where it landed: found by the test-quality review)."""
    from spectra.bulk import csvfiles

    monkeypatch.setattr(csvfiles, "MAX_RECORD_CHARS", 64)
    monkeypatch.setattr(outcomes, "MAX_RECORD_CHARS", 64)
    job = started(ports, BulkOperation.INSERT, HEADER + b'1,Ann,Oslo\n2,"' + b"long " * 30 + b'",Rome\n3,Cy,Pisa\n')
    elsewhere = [["s3://elsewhere/not-this-file.csv", "3", "name", "Delimiter not found"]]  # as in the test above
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, {0: 2, 1: elsewhere}))
    assert done.counts == BulkCounts(processed=3, failed=1, created=2) and done.error is None
    assert [r[2] for r in result_rows(ports, job.job_id, "successful")[1:]] == ["1", "3"]
    assert result_rows(ports, job.job_id, "failed")[1:] == [["", "a record longer than 64 characters"]]


UPSERT_FILE = b"id,name\n1,Ann\n2,Bob\n4,Dup\n4,Dup2\n,NoId\n5,Eve\n"


def unload_outcomes(ports, job, rows: list[list[str]]) -> int:
    """What the load's last statement, an UNLOAD to the job's prefix, leaves in S3: the outcome rows in CSV parts
    with a header line (split in two parts here), and a verbose manifest naming them. Returns the UNLOAD's row count."""
    prefix = f"acme/{job.job_id}/load/outcome_"
    assert job.plan.outcome_url == f"s3://{RESULTS_BUCKET}/{prefix}"
    assert ports.warehouse.batch_sqls(job.statement_id)[job.plan.outcome_index].startswith(
        "UNLOAD ('SELECT id::varchar(65535), reason FROM bulk_failed"
    )
    entries = []
    for n, part in enumerate((rows[: len(rows) // 2], rows[len(rows) // 2 :])):
        body = io.StringIO()
        csv.writer(body, lineterminator="\n").writerows([["id", "reason"], *part])
        key = f"{prefix}00{n}"
        ports.bulk.files.put(key, body.getvalue().encode())
        entries.append({"url": f"s3://{RESULTS_BUCKET}/{key}", "meta": {"record_count": len(part) + 1}})  # + header
    ports.bulk.files.put(f"{prefix}manifest", json.dumps({"entries": entries}).encode())
    return len(rows)


@pytest.mark.parametrize(
    ("existing", "outcome", "created"),
    [
        # 1 existed: 1 updated and 2 created, so the outcome SELECT lists the (fewer) updated ids
        (["1"], [["4", "duplicate external id"], ["1", "updated"]], {"1": "false", "2": "true", "5": "true"}),
        # 1, 2 existed: 2 updated and 1 created, so it lists the created ones
        (["1", "2"], [["4", "duplicate external id"], ["5", "created"]], {"1": "false", "2": "false", "5": "true"}),
    ],
)
def test_an_upsert_reads_created_and_refused_ids_from_the_outcome_select(ports, existing, outcome, created):
    job = started(ports, BulkOperation.UPSERT, UPSERT_FILE, object="accounts")
    plan = job.plan
    answers = {
        plan.copies[0][0]: 6,
        plan.copies[0][1]: [],
        plan.updated_index: [[str(len(existing))]],
        plan.applied_index: [["3"]],
    }
    answers[plan.outcome_index] = unload_outcomes(ports, job, outcome)
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, answers))
    assert done.counts == BulkCounts(processed=6, failed=3, created=3 - len(existing))
    successful = result_rows(ports, job.job_id, "successful")
    assert successful[0] == ["sf__Id", "sf__Created", "id", "name"]
    assert {row[0]: row[1] for row in successful[1:]} == created
    failed = result_rows(ports, job.job_id, "failed")[1:]
    assert failed == [
        ["4", "duplicate external id", "4", "Dup"],
        ["4", "duplicate external id", "4", "Dup2"],
        ["", "missing external id", "", "NoId"],
    ]


def test_outcomes_are_looked_up_batch_by_batch_with_the_same_answers(ports, monkeypatch):
    """Records are matched to their outcomes a batch at a time, a few ids per query: batches of 2 records and
    queries of 1 id give the same files as one batch."""
    monkeypatch.setattr(outcomes, "RECORD_BATCH", 2)
    monkeypatch.setattr(outcomes, "LOOKUP_IDS", 1)
    test_an_upsert_reads_created_and_refused_ids_from_the_outcome_select(
        ports, ["1"], [["4", "duplicate external id"], ["1", "updated"]], {"1": "false", "2": "true", "5": "true"}
    )


def finish_update(ports, job, *, applied: int, outcomes: list[list[str]]):
    """The update's batch ends: both rows staged, ``applied`` of them applied, ``outcomes`` UNLOADed per id."""
    answers = {job.plan.copies[0][0]: 2, job.plan.copies[0][1]: [], job.plan.applied_index: [[str(applied)]]}
    answers[job.plan.outcome_index] = unload_outcomes(ports, job, outcomes)
    return complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, answers))


@pytest.mark.parametrize("applied_id", ["1", "id"], ids=["number", "the-text-id"])
def test_an_update_lists_ids_matching_no_row_as_failed(ports, applied_id):
    """A record whose external id is the text ``id`` is listed successful too: the UNLOAD parts' header line
    (id,reason) is no outcome, or it was failed with the error "reason" (found by mutation testing
    spectra/bulk/outcomes.py)."""
    job = started(ports, BulkOperation.UPDATE, HEADER + f"{applied_id},Ann,Oslo\n9,Nobody,Rome\n".encode())
    done = finish_update(ports, job, applied=1, outcomes=[["9", "not found"]])
    assert done.counts == BulkCounts(processed=2, failed=1, created=0)
    assert result_rows(ports, job.job_id, "successful")[1:] == [[applied_id, "false", applied_id, "Ann", "Oslo"]]
    assert result_rows(ports, job.job_id, "failed")[1:] == [["9", "not found", "9", "Nobody", "Rome"]]


def test_integer_ids_are_matched_as_the_warehouse_prints_them(ports):
    """The outcome SELECT prints ids from their values (7 for "007" or " 7"): the file's ids are read the same way,
    so a row the warehouse refused is listed failed, not successful."""
    ports.warehouse.add_table("public", "accounts", ["id", "name", "city"], types={"id": "int4"})
    job = started(ports, BulkOperation.UPDATE, HEADER + b" 1,Ann,Oslo\n007,Bond,Rome\n")
    assert job.plan.external_id_type == "int4"
    done = finish_update(ports, job, applied=1, outcomes=[["7", "not found"]])
    assert done.counts == BulkCounts(processed=2, failed=1, created=0)
    assert result_rows(ports, job.job_id, "successful")[1:] == [[" 1", "false", " 1", "Ann", "Oslo"]]
    assert result_rows(ports, job.job_id, "failed")[1:] == [["007", "not found", "007", "Bond", "Rome"]]


@pytest.mark.parametrize(
    ("sent", "printed"),
    [("4", "4.00"), ("4.005", "4.01"), ("-4.005", "-4.01"), ("-0", "0.00"), (" 1e2 ", "100.00"), ("x", "x")],
)
def test_decimal_ids_are_matched_as_the_warehouse_prints_them(sent, printed):
    """With the column's scale, rounded half away from zero as COPY's ROUNDEC rounds (found by the bulk SQL review:
    a NUMERIC(10,2) id written 4 was not matched with the 4.00 the warehouse listed)."""
    assert as_printed(sent, "numeric", 10, 2) == printed
    assert as_printed(sent, "numeric", 10, None) == sent  # no scale known: as written


def test_a_plan_recorded_before_outcomes_were_unloaded_reads_them_from_the_select(ports):
    """A job started by the previous version (its plan has no outcome_url) ends with its outcome SELECT's rows."""
    job = started(ports, BulkOperation.UPDATE, HEADER + b"1,Ann,Oslo\n9,Nobody,Rome\n")
    plan = job.plan.model_copy(update={"outcome_url": None})
    job = ports.bulk.jobs.update(job.job_id, [BulkState.IN_PROGRESS], plan=plan)
    answers = {
        plan.copies[0][0]: 2,
        plan.copies[0][1]: [],
        plan.applied_index: [["1"]],
        plan.outcome_index: [["9", "not found"]],
    }
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, answers))
    assert done.counts == BulkCounts(processed=2, failed=1, created=0)
    assert result_rows(ports, job.job_id, "failed")[1:] == [["9", "not found", "9", "Nobody", "Rome"]]


def test_a_load_the_tenants_statement_timeout_cancelled_fails_as_statement_timeout(ports):
    """As a query job does (spectra.share.failure_code): the bulk job used to say only ``statement_failed``."""
    job = started(ports, BulkOperation.UPSERT, UPSERT_FILE)
    change = ports.warehouse.fail_batch(job.statement_id, "canceling statement due to statement timeout", at=2)
    done = complete_bulk_statement(ports, change)
    assert (done.state, done.error.code) == (BulkState.FAILED, "statement_timeout")
    assert "statement timeout" in done.error.message


def test_a_failed_batch_fails_the_job_and_every_record_is_unprocessed(ports):
    job = started(ports, BulkOperation.UPSERT, UPSERT_FILE)
    change = ports.warehouse.fail_batch(job.statement_id, "duplicate key value violates unique constraint", at=7)
    done = complete_bulk_statement(ports, change)
    assert (done.state, done.error.code) == (BulkState.FAILED, "statement_failed")
    assert "unique constraint" in done.error.message and done.counts is None
    assert result_rows(ports, job.job_id, "successful") == [["sf__Id", "sf__Created", "id", "name"]]
    assert result_rows(ports, job.job_id, "failed") == [["sf__Id", "sf__Error", "id", "name"]]
    assert result_rows(ports, job.job_id, "unprocessed")[1:] == [
        ["1", "Ann"],
        ["2", "Bob"],
        ["4", "Dup"],
        ["4", "Dup2"],
        ["", "NoId"],
        ["5", "Eve"],
    ]
    assert ports.events.types() == ["Bulk Job Failed"]


def test_an_aborted_statement_is_aborted_only_when_the_tenant_asked(ports):
    job = started(ports)
    done = complete_bulk_statement(ports, ports.warehouse.abort(job.statement_id))
    assert (done.state, done.error.code) == (BulkState.FAILED, "statement_aborted")

    asked = started(ports)
    ports.bulk.jobs.update(asked.job_id, [BulkState.IN_PROGRESS], abort_requested_at=utcnow())
    done = complete_bulk_statement(ports, ports.warehouse.abort(asked.statement_id))
    assert (done.state, done.error) == (BulkState.ABORTED, None)
    assert ports.events.types() == ["Bulk Job Failed", "Bulk Job Aborted"]


def test_a_duplicate_completion_event_changes_nothing(ports):
    job = started(ports, BulkOperation.INSERT, MIXED)
    change = ports.warehouse.finish_batch(job.statement_id, {0: 4, 1: []})
    first = complete_bulk_statement(ports, change)
    after_first = stored(ports, job.job_id)
    s3_requests = len(ports.bulk.files.client.requests)
    again = complete_bulk_statement(ports, change)
    assert again.state is BulkState.JOB_COMPLETE and first.counts == again.counts
    assert stored(ports, job.job_id) == after_first
    assert ports.events.types() == ["Bulk Job Completed"]
    assert ports.bulk.results_queue.messages == []
    assert [r for r in ports.bulk.files.client.requests[s3_requests:] if r[0] == "PutObject"] == []


def test_events_of_other_statements_are_ignored(ports):
    job = started(ports)
    stranger = StatementStatusChange(statementId="other-id", statementName=job.job_id, state=StatementState.FINISHED)
    assert complete_bulk_statement(ports, stranger) is None
    nobody = StatementStatusChange(statementId="x", statementName="b_nobody", state=StatementState.FINISHED)
    assert complete_bulk_statement(ports, nobody) is None
    assert stored(ports, job.job_id).state is BulkState.IN_PROGRESS


def test_a_fast_statement_completing_before_its_id_is_recorded_still_completes(ports, monkeypatch):
    message = queued(ports, BulkOperation.INSERT, MIXED)
    real_execute = ports.warehouse.execute_batch
    completed = {}

    def execute_and_finish_at_once(sqls, **kwargs):
        statement_id = real_execute(sqls, **kwargs)
        change = ports.warehouse.finish_batch(statement_id, {0: 4, 1: []})
        completed["job"] = complete_bulk_statement(ports, change)  # the event overtakes the executor's write
        return statement_id

    monkeypatch.setattr(ports.warehouse, "execute_batch", execute_and_finish_at_once)
    assert start_bulk_job(ports, message) is None
    job = stored(ports, message.job_id)
    assert completed["job"].state is BulkState.JOB_COMPLETE
    assert (job.state, job.counts.processed, job.statement_id) == (
        BulkState.JOB_COMPLETE,
        4,
        completed["job"].statement_id,
    )
    assert [m for m, _ in ports.warehouse.calls].count("cancel") == 0


def test_an_upsert_that_creates_as_many_rows_as_it_updates_flags_each_right(ports):
    """1 row updated, 1 created: the outcome SELECT's tie rule (updated * 2 >= applied: it lists the created ids)
    and the result writer must read the listed set alike, or every sf__Created flag is inverted."""
    job = started(ports, BulkOperation.UPSERT, b"id,name\n1,Ann\n5,Eve\n", object="accounts")
    plan = job.plan
    answers = {plan.copies[0][0]: 2, plan.copies[0][1]: [], plan.updated_index: [["1"]], plan.applied_index: [["2"]]}
    answers[plan.outcome_index] = unload_outcomes(ports, job, [["5", "created"]])
    done = complete_bulk_statement(ports, ports.warehouse.finish_batch(job.statement_id, answers))
    assert done.counts == BulkCounts(processed=2, failed=0, created=1)
    successful = result_rows(ports, job.job_id, "successful")[1:]
    assert {row[0]: row[1] for row in successful} == {"1": "false", "5": "true"}


# -- query jobs -----------------------------------------------------------------------------------------------------


def test_a_query_job_unloads_as_the_tenant_and_completes_from_the_manifest(ports):
    query = "select id, name from accounts where name <> 'x'"
    message = queued(ports, BulkOperation.QUERY, object="", query=query)
    job = start_bulk_job(ports, message)
    statement = ports.warehouse.statements[job.statement_id]
    prefix = f"acme/{job.job_id}/export/"
    assert statement.sql.startswith(
        f"UNLOAD ('select id, name from accounts where name <> ''x''') TO 's3://{RESULTS_BUCKET}/{prefix}part_'"
    )
    assert statement.identity == DatabaseIdentity(db_user="tenant_acme")
    assert statement.client_token == job.job_id

    parts = [(f"{prefix}part_0000_part_00", b"id,name\n1,Ann\n2,Bob\n"), (f"{prefix}part_0001_part_00", b"id,name\n")]
    for key, body in parts:
        ports.bulk.files.put(key, body)
    manifest = {
        "entries": [
            {"url": f"s3://{RESULTS_BUCKET}/{key}", "meta": {"content_length": len(body), "record_count": rows}}
            for (key, body), rows in zip(parts, (3, 1), strict=True)  # Redshift counts each part's header line
        ],
        "schema": {"elements": [{"name": "id"}, {"name": "name"}]},
    }
    ports.bulk.files.put(f"{prefix}part_manifest", json.dumps(manifest).encode())
    done = complete_bulk_statement(ports, ports.warehouse.finish(job.statement_id, rows=2))
    assert done.state is BulkState.JOB_COMPLETE and done.counts == BulkCounts(processed=2)
    assert done.export_files == [
        ExportFile(key=key, rows=rows, bytes=len(body)) for (key, body), rows in zip(parts, (2, 0), strict=True)
    ]
    assert done.export_columns == ["id", "name"]
    assert done.results_ready is True and ports.bulk.results_queue.messages == []
    assert ports.bulk.jobs.pending_since(job.job_id) is None


def _unloaded(ports, job_id: str, body: bytes) -> bytes:
    """What the job's UNLOAD wrote: ``body`` (id and name) as its one part, and its manifest."""
    part = f"acme/{job_id}/export/part_0000_part_00"
    ports.bulk.files.put(part, body)
    entry = {"url": f"s3://{RESULTS_BUCKET}/{part}", "meta": {"content_length": len(body)}}
    manifest = {"entries": [entry], "schema": {"elements": [{"name": "id"}, {"name": "name"}]}}
    ports.bulk.files.put(f"acme/{job_id}/export/part_manifest", json.dumps(manifest).encode())
    return body


def test_a_query_job_completed_before_its_executor_recorded_the_statement_keeps_its_delimiter(ports):
    """An executor that died after ExecuteStatement (or a statement whose event came first) never wrote how the
    UNLOAD was delimited; the event completed the job without it, and its pages had a comma header over TAB records
    (found by the exports review)."""
    query = "select id, name from accounts"
    message = queued(ports, BulkOperation.QUERY, object="", query=query, column_delimiter=ColumnDelimiter.TAB)
    body = _unloaded(ports, message.job_id, b"id\tname\n1\tAnn\n")
    recording = ports.bulk.jobs.update

    def dies_recording(job_id, expected, **changes):
        if "statement_id" in changes:
            raise TimeoutError("the executor's function timed out")
        return recording(job_id, expected, **changes)

    ports.bulk.jobs.update = dies_recording
    with pytest.raises(TimeoutError):
        start_bulk_job(ports, message)
    ports.bulk.jobs.update = recording
    statement_id = ports.warehouse.find(message.job_id)
    done = complete_bulk_statement(ports, ports.warehouse.finish(statement_id, rows=1))
    assert done.state is BulkState.JOB_COMPLETE and done.export_delimiter is ColumnDelimiter.TAB
    page = read_page(ports.bulk.files, ports.page_tokens, done, locator=None, max_records=10, max_bytes=1 << 20)
    assert page.body == body


def test_a_query_job_whose_executor_recorded_no_delimiter_keeps_the_commas_it_unloaded(ports):
    """An UNLOAD started before delimiters were recorded wrote commas whatever the job asked; its completion must not
    stamp the job's TAB over them (a TAB header over comma records: the diff review of the change above)."""
    query = "select id, name from accounts"
    message = queued(ports, BulkOperation.QUERY, object="", query=query, column_delimiter=ColumnDelimiter.TAB)
    job = start_bulk_job(ports, message)
    ports.bulk.jobs.update(job.job_id, [BulkState.IN_PROGRESS], export_delimiter=None)  # as such an executor left it
    body = _unloaded(ports, job.job_id, b"id,name\n1,Ann\n")
    done = complete_bulk_statement(ports, ports.warehouse.finish(job.statement_id, rows=1))
    assert done.export_delimiter is None
    page = read_page(ports.bulk.files, ports.page_tokens, done, locator=None, max_records=10, max_bytes=1 << 20)
    assert page.body == body


# -- the tenant's running cap -----------------------------------------------------------------------------------------


def test_bulk_jobs_share_the_tenants_running_cap_with_query_jobs():
    """Over the cap a bulk job waits UploadComplete on the tenant's waiting list (never failed); the slot a finished
    job frees wakes it with a bulk message, and a finished bulk load gives its own slot back."""
    ports = bulk_ports_with(tenant_max_running_statements=1)
    first, second = queued(ports), queued(ports)
    running = start_bulk_job(ports, first)
    assert running is not None and running.statement_id
    assert start_bulk_job(ports, second) is None
    assert stored(ports, second.job_id).state is BulkState.UPLOAD_COMPLETE
    assert set(ports.slots.holders("acme")) == {first.job_id}
    assert list(ports.slots.waiting("acme")) == [second.job_id]

    complete_bulk_statement(ports, ports.warehouse.finish_batch(running.statement_id, {0: 1, 1: []}))
    assert stored(ports, first.job_id).state is BulkState.JOB_COMPLETE
    [wake_up] = [m for m in ports.queue.messages if isinstance(m, BulkJobQueuedMessage)]
    assert wake_up.job_id == second.job_id
    assert start_bulk_job(ports, wake_up).statement_id
    assert set(ports.slots.holders("acme")) == {second.job_id}


def test_a_bulk_job_that_took_a_slot_and_never_started_loses_it_after_a_lease(ports):
    """The executor took the slot and died before the load started (the job is still UploadComplete): like a QUEUED
    query job's, its slot is stale after a lease and freed for the jobs waiting (a lost message would leak it)."""
    message = queued(ports, BulkOperation.INSERT, HEADER + b"1,Ann,Oslo\n")
    assert stored(ports, message.job_id).state is BulkState.UPLOAD_COMPLETE
    assert ports.slots.acquire("acme", message.job_id, limit=1, now=1000.0)
    lease = ports.settings.slot_lease_seconds
    assert share.reclaim_slots(ports, "acme", now=1000.0 + lease + 1) == 1
    assert message.job_id not in ports.slots.holders("acme")


def test_bulk_jobs_wait_in_the_order_they_became_upload_complete():
    """A bulk job's place in line is its UploadComplete time, not when its message happened to come: a job that was
    ready first is woken first, whichever message the executor saw first."""
    ports = bulk_ports_with(tenant_max_running_statements=1)
    running, earlier, later = queued(ports), queued(ports), queued(ports)
    assert start_bulk_job(ports, running) is not None
    assert stored(ports, earlier.job_id).queued_at < stored(ports, later.job_id).queued_at
    assert start_bulk_job(ports, later) is None  # its message came first
    assert start_bulk_job(ports, earlier) is None
    waiting = ports.slots.waiting("acme")
    assert sorted(waiting, key=waiting.__getitem__) == [earlier.job_id, later.job_id]
    assert waiting[earlier.job_id] == stored(ports, earlier.job_id).queued_at.timestamp()


class _HeaderSendingDataApi:
    """GetStatementResultV2 as a service whose CSVRecords start with the column names would answer (undocumented
    either way; the emulator sends no header line), and DescribeTable as one that also matches by pattern."""

    def __init__(self, columns: list[str], rows: list[str]) -> None:
        self._columns, self._rows = columns, rows

    def get_statement_result_v2(self, **request):
        return {
            "Records": [{"CSVRecords": "".join(f"{line}\n" for line in [",".join(self._columns), *self._rows])}],
            "ColumnMetadata": [{"name": c, "label": c, "typeName": "int8"} for c in self._columns],
            "TotalNumRows": len(self._rows),
        }

    def describe_table(self, **request):
        def column(table: str, name: str) -> dict:
            return {"name": name, "typeName": "int4", "tableName": table, "schemaName": "sales"}

        return {"ColumnList": [column("order_items", "id"), column("order1items", "other")]}


def test_the_bulk_path_reads_a_csv_result_past_a_header_line():
    """The query path allows for a header line (spectra/delivery.py); the bulk path took it for data: a load's count
    failed int('pg_last_copy_count'), and a rejected row's line number int('line_number') (Data API review)."""
    from types import SimpleNamespace

    from spectra.bulk import lifecycle, outcomes
    from spectra.warehouse import StatementRunner

    def ports(columns, rows):
        return SimpleNamespace(
            warehouse=StatementRunner(_HeaderSendingDataApi(columns, rows), database="dev", cluster_id="c")
        )

    assert lifecycle._count(ports(["pg_last_copy_count"], ["5"]), "s:3") == 5
    rejected = ports(["btrim", "line_number", "btrim", "btrim"], ["f.csv,2,amount,bad number"])
    assert list(outcomes.result_rows(rejected, "s:2")) == [["f.csv", "2", "amount", "bad number"]]


def test_describe_table_answers_the_named_tables_columns_only():
    """DescribeTable speaks of "matching tables", and `_` may be a pattern's wildcard: another table's columns would
    have joined the target's (Data API review)."""
    from spectra.warehouse import DatabaseIdentity, StatementRunner

    runner = StatementRunner(_HeaderSendingDataApi([], []), database="dev", cluster_id="c")
    columns = runner.describe_table("sales", "order_items", identity=DatabaseIdentity(db_user="tenant_acme"))
    assert [c["name"] for c in columns] == ["id"]
