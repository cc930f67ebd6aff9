"""Results equal the table: awkward values, queried in every format and delivery, read back as a client would and
compared value by value with what PostgreSQL itself returns for the same query.

The client side uses only standard readers: ``json`` for inline rows and JSON Lines, pyarrow's CSV reader (which,
unlike Python's ``csv``, tells an empty unquoted field, NULL, from ``""``, the empty string) and pyarrow's Parquet
reader. Each value is then read by its column type the way the README documents it (special floats as "NaN",
"Infinity", "-Infinity" in JSON and CSV, decimals as exact text, times in ISO 8601).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import math
import struct
from decimal import Decimal

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests

pytestmark = pytest.mark.e2e

TYPES = ["int4", "float8", "float4", "int8", "numeric", "date", "timestamp", "timestamptz", "text", "bool", "time"]
QUERY = (
    'SELECT id, f8, f4, i8, n, d, ts, tz, t, b, tm, substr(t, 1, 8) AS "select", b AS "from", id AS a, id * 2 AS a_2,'
    " id * 3 AS a"
    " FROM {table} ORDER BY id"
)
QUERY_NAMES = ["id", "f8", "f4", "i8", "n", "d", "ts", "tz", "t", "b", "tm", "select", "from", "a", "a_2", "a"]
UNIQUE_NAMES = [*QUERY_NAMES[:-1], "a_3"]  # the third "a" may not take a_2: the query has one
KINDS = [*TYPES, "text", "bool", "int4", "int4", "int4"]

ROWS = [
    # id, f8, f4, i8, n (numeric(38,10)), d, ts, tz, t, b; tm (time) from TIMES
    "(1, 'NaN', 'NaN', 9223372036854775807, 9999999999999999999999999999.9999999999, '0001-01-01',"
    " '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '😀👍🏽 emoji', true)",
    "(2, 'Infinity', 'Infinity', -9223372036854775808, -9999999999999999999999999999.9999999999, '9999-12-31',"
    " '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00', 'שלום עולם، مرحبا بالعالم', false)",
    "(3, '-Infinity', '-Infinity', 9007199254740993, -0.0000000001, '2024-02-29', '2026-03-01 12:00:00.5',"
    " '2026-03-01 12:00:00+05:45', repeat('0123456789abcdef', 3840), NULL)",  # a 60 KB string
    "(4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(5, 0.1, 0.1, 0, 0.5, '1970-01-01', '1970-01-01 00:00:00', '2026-03-01 12:00:00.123456-09:30', '', true)",
    "(6, 1e308, 3.4e38, 1, 1, '2000-01-01', '2000-01-01 00:00:00', '1999-12-31 23:59:59+14:00',"
    " 'a' || chr(13) || 'b', false)",  # a carriage return with no line feed after it
    "(7, 5e-324, 1e-45, -1, 0, '2000-01-02', '2000-01-02 00:00:00', '2000-01-02 00:00:00+00', chr(13), true)",
    "(8, -0.5, -0.5, 2, 2, '2000-01-03', '2000-01-03 00:00:00', '2000-01-03 00:00:00+00',"
    " 'say \"hi\", it''s \"' || chr(34), true)",
    "(9, 2.5, 2.5, 3, 3, '2000-01-04', '2000-01-04 00:00:00', '2000-01-04 00:00:00+00',"
    " chr(1) || chr(2) || chr(27) || chr(31) || chr(127) || chr(9) || chr(10) || 'ctrl', true)",
    "(10, 1, 1, 4, 4, '2000-01-05', '2000-01-05 00:00:00', '2000-01-05 00:00:00+00', 'NaN', true)",
    "(11, 1, 1, 5, 5, '2000-01-06', '2000-01-06 00:00:00', '2000-01-06 00:00:00+00', 'null', true)",
    "(12, 1, 1, 6, 6, '2000-01-07', '2000-01-07 00:00:00', '2000-01-07 00:00:00+00',"
    " '\\N \\ back' || chr(92) || 'slash ,a,\"\"', true)",
]
#: tm by id; NULL for the others
TIMES = {1: "00:00:00", 2: "23:59:59.999999", 3: "12:34:56.5", 5: "00:00:00.000001", 6: "12:00:00"}
COMBINATIONS = [
    ("json", "auto"),
    ("json", "inline"),
    ("json", "s3"),
    ("jsonl", "auto"),
    ("csv", "s3"),
    ("csv", "export"),
    ("parquet", "s3"),
    ("parquet", "export"),
]


@pytest.fixture
def odd_table(new_tenant, warehouse, redshift_emulator):
    client = new_tenant()
    table = f"odd_{client.tenant_id}"
    warehouse.run(
        f"CREATE TABLE {table} (id int, f8 double precision, f4 real, i8 bigint, n numeric(38,10), d date,"
        " ts timestamp, tz timestamptz, t text, b boolean, tm time)",
        f"INSERT INTO {table} VALUES {', '.join(ROWS)}",
        *(f"UPDATE {table} SET tm = '{value}' WHERE id = {id_}" for id_, value in TIMES.items()),
        f'GRANT SELECT ON {table} TO "{client.db_user}"',
    )
    with psycopg.connect(redshift_emulator.admin_database_url, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        expected = conn.execute(QUERY.format(table=table)).fetchall()
    assert len(expected) == len(ROWS) and len(expected[2][8]) == 61_440
    return client, table, expected


def test_every_format_and_delivery_returns_the_table_value_by_value(odd_table):
    client, table, expected = odd_table
    sql = QUERY.format(table=table)
    submitted = {
        (fmt, delivery): client.submit(sql, format=fmt, delivery=delivery)["job_id"] for fmt, delivery in COMBINATIONS
    }
    for (fmt, delivery), job_id in submitted.items():
        job = client.wait(job_id, timeout=60)
        assert job["status"] == "COMPLETED", (fmt, delivery, job.get("error"))
        results = client.request("GET", f"/v1/jobs/{job_id}/results").json()
        assert [c["name"] for c in results["columns"]] == UNIQUE_NAMES, (fmt, delivery)
        assert results["row_count"] == len(expected)
        names, rows = read_back(fmt, delivery, results)
        assert names == UNIQUE_NAMES, (fmt, delivery)  # in the files too, the UNLOAD's included
        assert len(rows) == len(expected), (fmt, delivery)
        for row, want in zip(rows, expected, strict=True):
            for name, kind, got, value in zip(UNIQUE_NAMES, KINDS, row, want, strict=True):
                assert same(kind, value, got), (fmt, delivery, f"row {want[0]}", name, value, got)
    # the same text whichever way the CSV was made: by the service from the Data API's pages, or by the warehouse's
    # UNLOAD (dates and timestamps were spelled pyarrow's way, 2026-03-01 12:00:00.000000Z; the query review)
    s3_csv, exported = (csv_fields(client, submitted[("csv", delivery)]) for delivery in ("s3", "export"))
    assert s3_csv == exported


# -- the client's side ----------------------------------------------------------------------------------------------


def csv_fields(client, job_id: str) -> list[list[str]]:
    """The job's CSV files' records, each field's text as Python's csv module reads it (quoting aside)."""
    results = client.request("GET", f"/v1/jobs/{job_id}/results").json()
    records = []
    for part in results["files"]:
        text = gzip.decompress(requests.get(part["url"], timeout=30).content).decode()
        records += list(csv.reader(io.StringIO(text, newline="")))[1:]
    return records


def read_back(fmt: str, delivery: str, results: dict) -> tuple[list[str], list[list]]:
    """Column names and typed rows, as a client reads the result it was given."""
    if results["rows"] is not None:
        assert delivery in ("auto", "inline") and results["files"] == []
        return [c["name"] for c in results["columns"]], [
            [from_text(kind, v) for kind, v in zip(KINDS, row, strict=True)] for row in results["rows"]
        ]
    assert delivery != "inline"
    names, rows = [], []
    for part in results["files"]:
        data = requests.get(part["url"], timeout=30).content
        if fmt == "parquet":
            table = pq.read_table(io.BytesIO(data))
            names = table.schema.names
            rows += [list(row) for row in zip(*(column.to_pylist() for column in table.columns), strict=True)]
        elif fmt == "csv":
            text = gzip.decompress(data)
            names = next(csv.reader(io.StringIO(text.decode(), newline="")))  # the header line
            table = pacsv.read_csv(io.BytesIO(text), read_options=_SKIP_HEADER, convert_options=_AS_TEXT)
            rows += [[from_text(k, v) for k, v in zip(KINDS, row.values(), strict=True)] for row in table.to_pylist()]
        else:
            for line in gzip.decompress(data).decode().split("\n"):
                if line:
                    obj = json.loads(line)
                    names = list(obj)
                    rows.append([from_text(kind, v) for kind, v in zip(KINDS, obj.values(), strict=True)])
    return names, rows


_COLUMNS = [f"c{i}" for i in range(len(KINDS))]
_SKIP_HEADER = pacsv.ReadOptions(column_names=_COLUMNS, skip_rows=1, block_size=1 << 22)
_AS_TEXT = pacsv.ConvertOptions(
    column_types={name: pa.string() for name in _COLUMNS},
    strings_can_be_null=True,
    quoted_strings_can_be_null=False,
    null_values=[""],
)
_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def from_text(kind: str, value):
    """A JSON or CSV value read by its column type, as the README documents each format."""
    if value is None or isinstance(value, bool) or kind == "text":
        return value
    if kind in ("int4", "int8"):
        return int(value)
    if kind in ("float4", "float8"):
        return _SPECIAL[value] if value in _SPECIAL else float(value)
    if kind == "numeric":
        return Decimal(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind in ("timestamp", "timestamptz"):
        return dt.datetime.fromisoformat(value)
    if kind == "time":
        return dt.time.fromisoformat(value)
    if kind == "bool":
        return {"t": True, "true": True, "f": False, "false": False}[value]
    raise AssertionError(kind)


def same(kind: str, expected, got) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    if kind in ("float4", "float8"):
        if math.isnan(expected):
            return math.isnan(got)
        if kind == "float4":  # a real is compared as a real: 0.1 and 0.10000000149011612 are the same real
            return _real(expected) == _real(got)
        return expected == got
    if kind == "timestamptz":
        return got.tzinfo is not None and expected == got
    return type(expected) is type(got) and expected == got


def _real(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


@pytest.mark.parametrize(("fmt", "delivery"), [("json", "inline"), ("csv", "s3"), ("parquet", "s3")])
def test_a_first_value_starting_with_a_byte_order_mark_keeps_it(new_tenant, fmt, delivery):
    """U+FEFF starting a result's first value (a CSV saved by Excel and loaded by COPY keeps one) was dropped, and a
    value of U+FEFF alone came back NULL: the pipeline's CSV reader took it for its input's BOM (the fidelity
    review)."""
    client = new_tenant()
    sql = "SELECT t, n FROM (SELECT chr(65279) AS t, 1 AS n UNION ALL SELECT chr(65279) || 'abc', 2) AS v ORDER BY n"
    job = client.wait(client.submit(sql, format=fmt, delivery=delivery)["job_id"], timeout=60)
    assert job["status"] == "COMPLETED", job
    results = client.request("GET", f"/v1/jobs/{job['job_id']}/results").json()
    if fmt == "json":
        values = [row[0] for row in results["rows"]]
    else:
        [part] = results["files"]
        data = requests.get(part["url"], timeout=30).content
        if fmt == "csv":
            values = [row[0] for row in list(csv.reader(io.StringIO(gzip.decompress(data).decode(), newline="")))[1:]]
        else:
            values = pq.read_table(io.BytesIO(data)).column("t").to_pylist()
    assert values == ["\ufeff", "\ufeffabc"]
