"""Result conversion: a statement's CSV pages → JSON / JSON Lines / CSV / Parquet, beside pyarrow alone and beside a
row-by-row loop on the same pages, in the same run; then a large result end to end, for its peak memory.

Run: ``python -m bench.bench_results [--rows N] [--large-rows N]`` (or ``make bench``).

1. Conversion (``--rows``, 500,000 by default). The statement's pages are fetched once (GetStatementResultV2 on the
   emulator) and kept in memory; each contender turns the same pages into the same artifact, written to a sink that
   drops the bytes (so S3 is not measured):

   - ``ResultSink``: what completion runs. ``json``: the inline rows (one JSON array per row, gzipped (level 1) and
     base64, as the job record keeps them; the limits raised so every row is held); ``jsonl``, ``csv``,
     ``parquet``: the part files (gzip level 6 for the text formats, snappy inside Parquet);
   - pyarrow alone (CSV and Parquet): ``pyarrow.csv.read_csv`` of each page with the same column types, then
     ``pyarrow.csv.write_csv`` into the same gzip stream, or one ``ParquetWriter``: the floor the sink adds to;
   - row by row: ``csv.reader`` over each page, each value converted in Python (int, float, Decimal as text, bool,
     ``datetime.fromisoformat(...).isoformat()``), then ``json.dumps`` per row (an array for json, an object for
     jsonl), ``csv.writer`` for csv, ``pyarrow.Table.from_pylist`` for Parquet; same compression.

   Targets (issue 8): json and jsonl ≥ 2x row by row; csv and parquet ≥ 0.8 of pyarrow alone.

2. Peak memory (``--large-rows``, 5,000,000 by default): GetStatementResultV2 → ``ResultSink`` → S3 for each file
   format, pages fetched as they are converted, as completion does it. Each step runs in a fresh Python process, as
   a function instance would, and reports that process's whole peak RSS (``VmHWM``: the interpreter, boto3,
   pyarrow and its allocator included). moto and the emulator run in other processes, so S3's objects and the
   spooled result are not counted. Target: under 300 MB.

Results go to ``bench/results/results.json``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import gzip
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable

import boto3

from bench.bench_bulk import moto_in_its_own_process
from bench.report import save_results
from events import Delivery, ResultFormat
from local.aws import LOCAL_CREDENTIALS
from local.redshift_data import EmulatorConfig, start_emulator
from spectra.result_pages import arrow_type
from spectra.results import ResultSink
from spectra.warehouse import Column, DatabaseIdentity, StatementRunner

SQL = (
    "select g as id, 'customer ' || g as name, (g % 1000) * 1.25 as amount, g % 2 = 0 as active, "
    "timestamp '2026-01-01' + g * interval '1 second' as seen_at, g * 0.5::float8 as score "
    "from generate_series(1, {rows}) as g"
)
TARGETS = {
    "json": ("row by row", 2.0),
    "jsonl": ("row by row", 2.0),
    "csv": ("pyarrow", 0.8),
    "parquet": ("pyarrow", 0.8),
}


class DiscardS3:
    """The S3 calls the sink makes (one PutObject, or a multipart upload past 8 MB), with the bytes dropped."""

    def put_object(self, **_: object) -> dict:
        return {"ETag": '"0"'}

    def create_multipart_upload(self, **_: object) -> dict:
        return {"UploadId": "bench"}

    def upload_part(self, *, PartNumber: int, **_: object) -> dict:
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, **_: object) -> dict:
        return {}

    def abort_multipart_upload(self, **_: object) -> dict:
        return {}


class Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def run_statement(runner: StatementRunner, rows: int) -> str:
    statement_id = runner.execute(
        SQL.format(rows=rows),
        identity=DatabaseIdentity(db_user="awsuser"),
        name="bench",
        client_token=str(time.time_ns()),
    )
    while (info := runner.describe(statement_id)).status not in {"FINISHED", "FAILED", "ABORTED"}:
        time.sleep(0.05)
    if info.status != "FINISHED":
        raise RuntimeError(info.error)
    return statement_id


# -- the contenders -------------------------------------------------------------------------------------------------


def spectra_sink(fmt: ResultFormat, columns: list[Column], pages: list[str], rows: int) -> None:
    sink = ResultSink(DiscardS3(), "bench", inline_max_rows=rows, inline_max_bytes=1 << 40)
    delivery = Delivery.INLINE if fmt is ResultFormat.JSON else Delivery.S3
    result = sink.write(tenant_id="b", job_id="j", fmt=fmt, columns=columns, csv_pages=pages, delivery=delivery)
    assert result.row_count == rows, (fmt, result.row_count)


def pyarrow_alone(fmt: ResultFormat, columns: list[Column], pages: list[str], rows: int) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in columns])
    read = pacsv.ReadOptions(column_names=schema.names, block_size=1 << 22)
    convert = pacsv.ConvertOptions(column_types=schema, true_values=["t"], false_values=["f"], null_values=[""])
    out = gzip.GzipFile(fileobj=Discard(), mode="wb", compresslevel=6) if fmt is ResultFormat.CSV else Discard()
    writer = pq.ParquetWriter(out, schema, compression="snappy") if fmt is ResultFormat.PARQUET else None
    count = 0
    for page in pages:
        table = pacsv.read_csv(io.BytesIO(page.encode()), read_options=read, convert_options=convert)
        count += table.num_rows
        if writer is not None:
            writer.write_table(table)
        else:
            pacsv.write_csv(table, out, write_options=pacsv.WriteOptions(include_header=count == table.num_rows))
    if writer is not None:
        writer.close()
    out.close()
    assert count == rows


def row_by_row(fmt: ResultFormat, columns: list[Column], pages: list[str], rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [c.name for c in columns]
    converters = [_python_value(c) for c in columns]
    raw = Discard()
    out = raw if fmt is ResultFormat.PARQUET else gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6)
    text = io.TextIOWrapper(out, encoding="utf-8", newline="") if fmt is ResultFormat.CSV else None
    writer = csv.writer(text) if text else None
    if writer:
        writer.writerow(names)
    parquet = None
    json_rows: list[str] = []
    count = 0
    for page in pages:
        batch = []
        for record in csv.reader(io.StringIO(page, newline="")):
            values = [convert(value) for convert, value in zip(converters, record, strict=True)]
            count += 1
            if fmt is ResultFormat.JSON:
                json_rows.append(json.dumps(values))
            elif fmt is ResultFormat.JSONL:
                out.write((json.dumps(dict(zip(names, values, strict=True))) + "\n").encode())
            elif writer:
                writer.writerow(values)
            else:
                batch.append(dict(zip(names, values, strict=True)))
        if batch:
            table = pa.Table.from_pylist(batch)
            parquet = parquet or pq.ParquetWriter(out, table.schema, compression="snappy")
            parquet.write_table(table)
    if fmt is ResultFormat.JSON:  # the same artifact as the sink's: the array, gzipped, base64
        base64.b64encode(gzip.compress(("[" + ",".join(json_rows) + "]").encode(), 1))
    if text:
        text.flush()
    if parquet:
        parquet.close()
    out.close()
    assert count == rows


def _python_value(column: Column) -> Callable[[str], object]:
    kind = column.type_name
    if kind in ("int2", "int4", "int8"):
        return lambda v: int(v) if v else None
    if kind in ("float4", "float8"):
        return lambda v: float(v) if v else None
    if kind == "bool":
        return lambda v: (v == "t") if v else None
    if kind.startswith("timestamp"):
        return lambda v: dt.datetime.fromisoformat(v).isoformat() if v else None
    return lambda v: v if v else None  # text, and numeric kept exact as text


CONTENDERS = {"ResultSink": spectra_sink, "pyarrow alone": pyarrow_alone, "row by row": row_by_row}


def conversion(runner: StatementRunner, rows: int) -> list[dict]:
    columns, lazy = runner.csv_result(run_statement(runner, rows))
    pages = list(lazy)
    out = []
    for fmt in (ResultFormat.JSON, ResultFormat.JSONL, ResultFormat.CSV, ResultFormat.PARQUET):
        for name, contender in CONTENDERS.items():
            if name == "pyarrow alone" and fmt in (ResultFormat.JSON, ResultFormat.JSONL):
                continue  # pyarrow writes no JSON
            seconds = min(_timed(contender, fmt, columns, pages, rows) for _ in range(2))  # the quieter of two runs
            out.append({"step": "conversion", "format": fmt.value, "what": name, "rows": rows, "seconds": seconds})
    return out


def _timed(contender, *args) -> float:
    began = time.perf_counter()
    contender(*args)
    return time.perf_counter() - began


def large_result(runner: StatementRunner, emulator_url: str, rows: int) -> list[dict]:
    """Each step in a fresh process of its own (as a function instance would be), which reports its peak RSS."""
    statement_id = run_statement(runner, rows)
    out = []
    for fmt in ("-", "jsonl", "csv", "parquet"):
        child = subprocess.run(
            [sys.executable, "-m", "bench.result_child", emulator_url, statement_id, fmt],
            capture_output=True,
            text=True,
            check=True,
            timeout=1800,
        )
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        assert measured["rows"] == rows, measured
        out.append({"step": "large", "format": fmt, **measured})
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--large-rows", type=int, default=5_000_000)
    args = parser.parse_args(argv)
    aws, moto_process = moto_in_its_own_process()
    aws.export()
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=aws.endpoint_url, region=aws.region))
    try:
        client = boto3.client(
            "redshift-data", endpoint_url=emulator.endpoint_url, region_name=aws.region, **LOCAL_CREDENTIALS
        )
        runner = StatementRunner(client, database="dev", cluster_id="bench")
        s3 = aws.client("s3")
        s3.create_bucket(Bucket="bench-results")
        report = conversion(runner, args.rows)
        report += large_result(runner, emulator.endpoint_url, args.large_rows)
    finally:
        emulator.stop()
        moto_process.terminate()
        moto_process.wait(30)
    print_report(report)
    save_results("results", report)
    return report


def print_report(report: list[dict]) -> None:
    rate = {(r["format"], r["what"]): r["rows"] / r["seconds"] for r in report if r["step"] == "conversion"}
    print(f"\nconversion of the same pages ({report[0]['rows']:,} rows), rows/s")
    print(f"{'format':<9}{'ResultSink':>12}{'pyarrow alone':>15}{'row by row':>12}   ratio to the target's baseline")
    for fmt, (baseline, target) in TARGETS.items():
        ours, arrow, rows = rate[(fmt, "ResultSink")], rate.get((fmt, "pyarrow alone")), rate[(fmt, "row by row")]
        ratio = ours / (arrow if baseline == "pyarrow" else rows)
        verdict = "ok" if ratio >= target else "BELOW TARGET"
        arrow_text = f"{arrow:>15,.0f}" if arrow else f"{'-':>15}"
        print(
            f"{fmt:<9}{ours:>12,.0f}{arrow_text}{rows:>12,.0f}   {ratio:.2f}x {baseline} (target {target}x: {verdict})"
        )
    print(f"\n{'rows':>10}  {'format':<8}{'path':<28}{'seconds':>9}{'rows/s':>12}{'process peak RSS MB':>21}")
    for line in (r for r in report if r["step"] == "large"):
        print(
            f"{line['rows']:>10,}  {line['format']:<8}{line['what']:<28}{line['seconds']:>9.1f}"
            f"{line['rows'] / line['seconds']:>12,.0f}{line['peak_rss_mb']:>21.0f}"
        )


if __name__ == "__main__":
    main()
