"""Result delivery through the API: auto, inline, s3 and export (UNLOAD through the emulator), row_limit, expiry."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import datetime, timedelta

import pyarrow.parquet as pq
import pytest
import requests

from events import JobStatus
from spectra.jobs import utcnow
from spectra.ports import get_ports
from tests.e2e.test_api_contract import error_of

pytestmark = pytest.mark.e2e

NUMBERS = "select g as n, 'row ' || g as label from generate_series(1, {rows}) as g order by g"


@pytest.fixture
def s3_keys(local_aws):
    """The keys under a job's prefix in the results bucket, as S3 itself lists them."""
    s3 = local_aws.client("s3")

    def keys(client, job_id: str) -> list[str]:
        bucket = get_ports().settings.results_bucket
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{client.tenant_id}/{job_id}/")
        return sorted(item["Key"].rsplit("/", 1)[1] for item in listed.get("Contents", []))

    return keys


def run(client, sql: str, **options) -> tuple[dict, dict | None]:
    job = client.wait(client.submit(sql, **options)["job_id"], timeout=60)
    if job["status"] != "COMPLETED":
        return job, None
    response = client.request("GET", f"/v1/jobs/{job['job_id']}/results")
    assert response.status_code == 200, response.text
    return job, response.json()


def download(url: str) -> bytes:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def json_lines_of(results: dict) -> list[dict]:
    return [json.loads(line) for f in results["files"] for line in gzip.decompress(download(f["url"])).splitlines()]


def test_auto_answers_a_small_result_inline_and_writes_nothing_to_s3(new_tenant, s3_keys):
    client = new_tenant()
    job, results = run(client, NUMBERS.format(rows=800))
    assert (results["delivery"], results["row_count"], results["truncated"]) == ("inline", 800, False)
    assert results["rows"][:2] == [[1, "row 1"], [2, "row 2"]] and len(results["rows"]) == 800
    assert (results["files"], results["manifest_url"]) == ([], None)
    assert s3_keys(client, job["job_id"]) == []


def test_auto_writes_a_large_result_to_s3_with_its_manifest(new_tenant, s3_keys):
    client = new_tenant()
    job, results = run(client, NUMBERS.format(rows=2500))
    assert (results["delivery"], results["row_count"], results["rows"]) == ("s3", 2500, None)
    assert s3_keys(client, job["job_id"]) == ["manifest.json", "part-00000.jsonl.gz"]
    manifest = json.loads(download(results["manifest_url"]))
    assert (manifest["delivery"], manifest["row_count"], manifest["format"]) == ("s3", 2500, "json")
    assert [f["rows"] for f in manifest["files"]] == [f["rows"] for f in results["files"]] == [2500]
    assert json_lines_of(results) == [{"n": i, "label": f"row {i}"} for i in range(1, 2501)]


def test_inline_answers_in_the_response_or_fails_with_the_reason(new_tenant, s3_keys):
    client = new_tenant()
    job, results = run(client, NUMBERS.format(rows=5), delivery="inline")
    assert (results["delivery"], results["rows"]) == ("inline", [[i, f"row {i}"] for i in range(1, 6)])
    assert s3_keys(client, job["job_id"]) == []

    too_big, _ = run(client, NUMBERS.format(rows=5000), delivery="inline")
    assert too_big["status"] == "FAILED"
    assert too_big["error"]["code"] == "result_too_large"
    assert "inline holds at most 1000 rows" in too_big["error"]["message"]
    assert s3_keys(client, too_big["job_id"]) == []


def test_inline_with_a_row_limit_truncates_instead(new_tenant, s3_keys):
    client = new_tenant()
    job, results = run(client, NUMBERS.format(rows=5000), delivery="inline", row_limit=3)
    assert results["rows"] == [[1, "row 1"], [2, "row 2"], [3, "row 3"]]
    assert (results["row_count"], results["truncated"], results["total_row_count"]) == (3, True, 5000)
    assert job["row_count"] == 3
    assert s3_keys(client, job["job_id"]) == []


def test_the_completed_event_says_a_row_limit_cut_the_result(new_tenant, job_events):
    client = new_tenant()
    job, _ = run(client, NUMBERS.format(rows=40), row_limit=25)
    whole, _ = run(client, NUMBERS.format(rows=40))
    cut = job_events(job["job_id"], "Job Completed")["detail"]
    assert (cut["row_count"], cut["truncated"], cut["total_row_count"]) == (25, True, 40)
    uncut = job_events(whole["job_id"], "Job Completed")["detail"]
    assert (uncut["row_count"], uncut["truncated"], uncut["total_row_count"]) == (40, False, 40)


def test_s3_always_writes_files_even_for_one_row(new_tenant, s3_keys):
    client = new_tenant()
    job, results = run(client, "select 1 as one", delivery="s3")
    assert (results["delivery"], results["rows"], results["row_count"]) == ("s3", None, 1)
    assert s3_keys(client, job["job_id"]) == ["manifest.json", "part-00000.jsonl.gz"]
    assert json_lines_of(results) == [{"one": 1}]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_a_row_limit_cuts_files_too(new_tenant, fmt):
    client = new_tenant()
    _, results = run(client, NUMBERS.format(rows=3000), format=fmt, row_limit=1500)
    assert (results["row_count"], results["truncated"], results["total_row_count"]) == (1500, True, 3000)
    manifest = json.loads(download(results["manifest_url"]))
    assert (manifest["row_count"], manifest["truncated"], manifest["total_row_count"]) == (1500, True, 3000)
    [part] = results["files"]
    data = download(part["url"])
    if fmt == "parquet":
        numbers = pq.read_table(io.BytesIO(data)).column("n").to_pylist()
    elif fmt == "csv":
        numbers = [int(row["n"]) for row in csv.DictReader(io.StringIO(gzip.decompress(data).decode()))]
    else:
        numbers = [json.loads(line)["n"] for line in gzip.decompress(data).splitlines()]
    assert numbers == list(range(1, 1501))


@pytest.fixture
def orders(new_tenant, warehouse):
    client = new_tenant()
    table = f"orders_{client.tenant_id}"
    warehouse.run(
        f"CREATE TABLE {table} (id int, item varchar(64), amount numeric(12,2), note varchar(64))",
        f"INSERT INTO {table} SELECT g, 'item ' || g, g * 1.25, CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN ''"
        f" ELSE 'a, \"quoted\"' || chr(13) || 'line' END FROM generate_series(1, 3000) g",
        f'GRANT SELECT ON {table} TO "{client.db_user}"',
    )
    return client, table


def expected_order(i: int) -> tuple:
    note = None if i % 3 == 0 else "" if i % 3 == 1 else 'a, "quoted"\rline'
    return (i, f"item {i}", f"{i * 1.25:.2f}", note)


def test_export_unloads_csv_as_the_tenant_into_the_jobs_prefix(orders, s3_keys):
    client, table = orders
    job, results = run(
        client, f"select id, item, amount, note from {table} order by id", format="csv", delivery="export"
    )
    assert job["status"] == "COMPLETED", job
    assert (results["delivery"], results["row_count"], results["rows"]) == ("export", 3000, None)
    assert [c["name"] for c in results["columns"]] == ["id", "item", "amount", "note"]
    # an export's days count from the job's making, before UNLOAD began writing the parts the bucket expires
    retained = datetime.fromisoformat(results["expires_at"]) - datetime.fromisoformat(job["created_at"])
    assert retained > timedelta(0) and retained % timedelta(days=1) == timedelta(0)
    assert set(s3_keys(client, job["job_id"])) >= {"manifest.json", "part-manifest"}
    manifest = json.loads(download(results["manifest_url"]))
    assert (manifest["delivery"], manifest["row_count"]) == ("export", 3000)
    assert [f["key"] for f in manifest["files"]] == [f"{client.tenant_id}/{job['job_id']}/part-000.gz"]

    rows = []
    for part in results["files"]:
        text = gzip.decompress(download(part["url"])).decode()
        header, *lines = list(csv.reader(io.StringIO(text, newline="")))
        assert header == ["id", "item", "amount", "note"]
        rows.extend(lines)
    # csv cannot tell NULL from "" once parsed: NULL is an empty field, "" a quoted one, as the raw text shows
    assert [(int(r[0]), r[1], r[2], r[3] or None) for r in rows] == [
        (*expected_order(i)[:3], expected_order(i)[3] or None) for i in range(1, 3001)
    ]
    assert "\n3,item 3,3.75,\n" in text and '\n1,item 1,1.25,""\n' in text


def test_an_export_of_a_query_ending_in_limit_unloads_the_rows_it_picks(orders):
    """Redshift refuses a LIMIT in UNLOAD's outer SELECT (the emulator now does too): such a query goes nested."""
    client, table = orders
    job, results = run(
        client, f"select id, item from {table} order by id desc limit 5 offset 2", format="csv", delivery="export"
    )
    assert job["status"] == "COMPLETED", job
    rows = []
    for part in results["files"]:
        header, *lines = list(csv.reader(io.StringIO(gzip.decompress(download(part["url"])).decode(), newline="")))
        assert header == ["id", "item"]
        rows.extend(lines)
    assert sorted(int(r[0]) for r in rows) == [2994, 2995, 2996, 2997, 2998]


def test_export_unloads_parquet_read_back_equal_to_the_table(orders):
    client, table = orders
    job, results = run(
        client, f"select id, item, amount, note from {table} order by id", format="parquet", delivery="export"
    )
    assert job["status"] == "COMPLETED", job
    tables = [pq.read_table(io.BytesIO(download(part["url"]))) for part in results["files"]]
    rows = [tuple(row.values()) for t in tables for row in t.to_pylist()]
    assert [(i, item, str(amount), note) for i, item, amount, note in rows] == [
        expected_order(i) for i in range(1, 3001)
    ]


def test_an_export_that_fails_half_way_fails_the_job_and_leaves_no_manifest(new_tenant, s3_keys):
    client = new_tenant()
    sql = "select g, repeat('x', 200) as pad, 1 / (g - 20000) as boom from generate_series(1, 30000) g"
    job, _ = run(client, sql, format="csv", delivery="export")
    assert job["status"] == "FAILED", job
    assert job["error"]["code"] == "statement_failed"
    assert "division by zero" in job["error"]["message"]
    assert s3_keys(client, job["job_id"]) == []  # no part file, no UNLOAD manifest, no manifest.json
    conflict = client.request("GET", f"/v1/jobs/{job['job_id']}/results")
    assert conflict.status_code == 409


@pytest.mark.parametrize("delivery", ["inline", "s3"])
def test_an_expired_result_answers_410(new_tenant, delivery):
    client = new_tenant()
    job, results = run(client, "select 1 as one", delivery=delivery)
    assert results["expires_at"]
    ports = get_ports()
    stored = ports.jobs.get(job["job_id"])
    expired = stored.result.model_copy(update={"expires_at": utcnow() - timedelta(seconds=1)})
    assert ports.jobs.update(job["job_id"], [JobStatus.COMPLETED], result=expired) is not None

    response = client.request("GET", f"/v1/jobs/{job['job_id']}/results")
    assert response.status_code == 410, response.text
    error = response.json()["error"]
    assert error["code"] == "gone" and "expired" in error["message"]
    assert client.job(job["job_id"])["status"] == "COMPLETED"  # the job itself is still there to see


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delivery": "email"}, "delivery"),
        ({"row_limit": 0}, "row_limit"),
        ({"row_limit": -5}, "row_limit"),
        ({"row_limit": "ten"}, "row_limit"),
        ({"format": "parquet", "delivery": "inline"}, "delivery"),
        ({"format": "csv", "delivery": "inline"}, "delivery"),
        ({"format": "jsonl", "delivery": "inline"}, "delivery"),
        ({"format": "json", "delivery": "export"}, "delivery"),
        ({"format": "csv", "delivery": "export", "row_limit": 10}, "row_limit"),
        ({"format": "csv", "delivery": "export", "parameters": [{"name": "x", "value": "1"}]}, "parameters"),
    ],
)
def test_bad_delivery_options_are_400_naming_the_field(new_tenant, body, field):
    client = new_tenant()
    response = client.request("POST", "/v1/queries", json={"sql": "select 1 as x", **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert [d["loc"][-1] for d in error["details"]] == [field], error


def test_an_export_names_its_columns_apart_and_refuses_parquet_it_cannot_rename(new_tenant):
    client = new_tenant()
    _, results = run(client, "select 1 as a, 2 as a_2, 3 as a", format="parquet", delivery="export")
    assert [c["name"] for c in results["columns"]] == ["a", "a_2", "a_3"]
    [part] = results["files"]
    table = pq.read_table(io.BytesIO(download(part["url"])))  # readable: no two fields share a name
    assert table.to_pylist() == [{"a": 1, "a_2": 2, "a_3": 3}]

    starred = "select * from (select 1 as a) x cross join (select 2 as a) y"
    failed, _ = run(client, starred, format="parquet", delivery="export")
    assert failed["status"] == "FAILED"
    assert (failed["error"]["code"], "named a;" in failed["error"]["message"]) == ("duplicate_columns", True)
    _, as_csv = run(client, starred, format="csv", delivery="export")  # a CSV header may repeat a name
    assert [c["name"] for c in as_csv["columns"]] == ["a", "a_2"]
    text = gzip.decompress(download(as_csv["files"][0]["url"])).decode()
    assert text == "a,a\n1,2\n"


def test_an_export_keeps_the_names_the_warehouse_gives_window_functions(new_tenant):
    """Found by the names review: the export named these columns n, ?column?, ?column?_2 (an s3 delivery, as the
    warehouse, n, row_number, rank): the window functions were taken for two ?column? and renamed apart."""
    client = new_tenant()
    sql = "select n, row_number() over (order by n), rank() over (order by n) from (select 1 as n) t"
    _, export = run(client, sql, format="parquet", delivery="export")
    assert [c["name"] for c in export["columns"]] == ["n", "row_number", "rank"]


@pytest.mark.parametrize(
    ("sql", "names"),
    [
        ("select (select count(*) from (select 1) x), count(*) from (select 1) y", ["count", "count_2"]),
        ("select (n), n from (select 1 as n) t", ["n", "n_2"]),
    ],
    ids=["scalar-subquery", "parenthesised"],
)
def test_a_parquet_export_whose_names_the_warehouse_repeats_is_renamed(new_tenant, sql, names):
    """Found by the names review: the warehouse names both columns alike (count, count; n, n), the export's
    renaming took the first for ?column?, and the job failed duplicate_columns."""
    client = new_tenant()
    job, export = run(client, sql, format="parquet", delivery="export")
    assert job["status"] == "COMPLETED", job.get("error")
    assert [c["name"] for c in export["columns"]] == names


@pytest.mark.parametrize("ending", [";", " -- a trailing comment", "; -- both"])
@pytest.mark.parametrize("names", ["a, 2 as b", "a, 2 as a"], ids=["distinct", "repeated"])
def test_an_export_of_sql_ending_in_a_semicolon_or_a_comment_runs(new_tenant, names, ending):
    """The query sits inside UNLOAD's quotes (and, with repeated names, inside a renaming subquery): a trailing ';'
    would end the statement there and a '--' comment would swallow what follows it."""
    client = new_tenant()
    job, results = run(client, f"select 1 as {names}{ending}", format="csv", delivery="export")
    assert job["status"] == "COMPLETED", job
    assert gzip.decompress(download(results["files"][0]["url"])).decode().splitlines()[1] == "1,2"


def test_a_bc_timestamp_keeps_its_neighbours_iso_and_its_parquet_parts_one_schema(new_tenant):
    """The warehouse's own text of a year before 1 (found by the results review): its neighbours keep their ISO
    spelling, the value its date (PostgreSQL's calendar, read back by the warehouse itself), every Parquet part
    one schema."""
    client = new_tenant()
    sql = (
        "select x::timestamp as t, x::timestamptz as tz, x::date as d, (x::date - date '1970-01-01') as days"
        " from (values (1, '2026-01-02 03:04:05'), (2, '0044-03-15 00:00:00 BC')) v(k, x) order by k"
    )
    _, results = run(client, sql)
    rows = results["rows"]
    assert rows[0][:3] == ["2026-01-02T03:04:05", "2026-01-02T03:04:05+00:00", "2026-01-02"]
    assert rows[1][:3] == ["-0043-03-15T00:00:00", "-0043-03-15T00:00:00+00:00", "-0043-03-15"]
    # the warehouse counts that day as the proleptic Gregorian calendar does: 0001-01-01 less 44 years (11 of them
    # leap: 0, -4, ..., -40) plus 14 March days into -43, not a leap year
    assert rows[1][3] == (datetime(1, 1, 1) - datetime(1970, 1, 1)).days - (44 * 365 + 11) + (31 + 28 + 14)
    padded = (
        "select g as n, repeat('x', 10000) as pad, case when g = 120 then '0044-03-15 00:00:00 BC'::timestamp"
        " else '2026-01-02 03:04:05'::timestamp end as t from generate_series(1, 120) g order by g"
    )
    _, results = run(client, padded, format="parquet", delivery="s3")
    tables = [pq.read_table(io.BytesIO(download(f["url"]))) for f in results["files"]]
    assert {str(t.schema.field("t").type) for t in tables} == {"timestamp[us]"}
    assert sum(t.num_rows for t in tables) == 120


def test_booleans_are_spelled_alike_in_s3_and_export_csv(new_tenant):
    client = new_tenant()
    sql = "select g as n, g % 2 = 0 as even, null::boolean as unknown from generate_series(1, 2) g order by g"
    spelled = {}
    for delivery in ("s3", "export"):
        _, results = run(client, sql, format="csv", delivery=delivery)
        text = b"".join(gzip.decompress(download(f["url"])) for f in results["files"]).decode()
        spelled[delivery] = list(csv.reader(io.StringIO(text)))[1:]
    assert spelled["s3"] == spelled["export"] == [["1", "f", ""], ["2", "t", ""]]


def test_an_inline_result_is_at_most_inline_max_bytes_as_the_client_receives_it(new_tenant):
    """Non-ASCII text was sent as \\u escapes (6 bytes for an é): 4 rows of 30,000 é measured under the limit
    reached the client as 720 KB (found by the results review)."""
    client = new_tenant()
    job = client.wait(client.submit("select repeat('é', 30000) as s from generate_series(1, 4)")["job_id"])
    response = client.request("GET", f"/v1/jobs/{job['job_id']}/results")
    assert response.json()["delivery"] == "inline"
    assert len(response.content) <= get_ports().settings.inline_max_bytes
    assert response.json()["rows"] == [["é" * 30000]] * 4


def test_an_inline_answer_escapes_the_unicode_line_breaks_as_the_result_files_do(new_tenant):
    """The README: JSON escapes U+0085, U+2028 and U+2029. Inline rows came out raw (the answer was re-encoded with
    ensure_ascii off), so one answer split on Python's str.splitlines into several lines (found walking Results)."""
    client = new_tenant()
    sql = "select E'a\\u0085b\\u2028c\\u2029d' as s"
    for response in (
        client.request("GET", f"/v1/jobs/{client.wait(client.submit(sql)['job_id'])['job_id']}/results"),
        client.request("POST", "/v1/queries", json={"sql": sql, "wait_timeout": 20}),
    ):
        text = response.content.decode()
        assert "\\u0085" in text and "\\u2028" in text and "\\u2029" in text, text
        assert len(text.splitlines()) == 1, text
        rows = response.json()["rows"] if "rows" in response.json() else response.json()["results"]["rows"]
        assert rows == [["a\x85b\u2028c\u2029d"]]


def test_a_select_without_columns_is_refused(new_tenant):
    response = new_tenant().request("POST", "/v1/queries", json={"sql": "select from generate_series(1, 3)"})
    error = error_of(response, 400)
    assert error["code"] == "sql_rejected" and "at least one column" in error["message"], error
