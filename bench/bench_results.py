"""Result fan-out: a statement's CSV pages → CSV / JSON Lines / Parquet in S3, beside bare paging in the same run.

Run: ``python -m bench.bench_results [--rows N ...]`` (or ``make bench``). The completion consumer's path for a
large result is GetStatementResultV2 pages → pyarrow → multipart upload. For each size, the same statement's result
is read three ways per format:

- baseline: page through GetStatementResultV2 and drop the pages (what the Data API alone costs);
- ``ResultSink.write`` in each format, to moto S3, as the completion consumer does it.

Peak RSS growth is sampled during each write; it should stay flat as the result grows fourfold (the design's
"memory stays flat whatever the size"). Expect a fixed cost of some tens of MB on the first large write: pyarrow's
CSV reader threads and allocator arenas, which are reused, not grown, by later pages.
Results go to ``bench/results/results.json``.
"""

from __future__ import annotations

import argparse
import time

import boto3

from bench.bench_redshift_data import PeakRss
from bench.report import save_results
from events import ResultFormat
from local.aws import LOCAL_CREDENTIALS, start_moto
from local.redshift_data import EmulatorConfig, start_emulator
from spectra.results import ResultSink
from spectra.warehouse import DatabaseIdentity, StatementRunner

SQL = (
    "select g as id, 'customer ' || g as name, (g % 1000) * 1.25 as amount, g % 2 = 0 as active, "
    "timestamp '2026-01-01' + g * interval '1 second' as seen_at from generate_series(1, {rows}) as g"
)


def run_statement(runner: StatementRunner, rows: int) -> str:
    statement_id = runner.execute(
        SQL.format(rows=rows),
        identity=DatabaseIdentity(db_user="awsuser"),
        name="bench",
        client_token=str(time.time_ns()),
    )
    while (info := runner.describe(statement_id)).status not in {"FINISHED", "FAILED", "ABORTED"}:
        time.sleep(0.01)
    if info.status != "FINISHED":
        raise RuntimeError(info.error)
    return statement_id


def measure(rows: int, runner: StatementRunner, sink: ResultSink) -> list[dict]:
    statement_id = run_statement(runner, rows)
    out = []
    with PeakRss() as rss:
        began = time.perf_counter()
        _, pages = runner.csv_result(statement_id)
        size = sum(len(page) for page in pages)
        seconds = time.perf_counter() - began
    out.append(
        {
            "rows": rows,
            "what": "baseline: page GetStatementResultV2",
            "seconds": seconds,
            "mb": size / 1e6,
            "peak_rss_growth_mb": rss.growth_mb,
        }
    )
    for fmt in (ResultFormat.CSV, ResultFormat.JSONL, ResultFormat.PARQUET):
        with PeakRss() as rss:
            began = time.perf_counter()
            columns, pages = runner.csv_result(statement_id)
            result = sink.write(
                tenant_id="bench", job_id=f"{fmt.value}-{rows}", fmt=fmt, columns=columns, csv_pages=pages
            )
            seconds = time.perf_counter() - began
        assert result.row_count == rows, (fmt, result.row_count)
        out.append(
            {
                "rows": rows,
                "what": f"ResultSink → {fmt.value}",
                "seconds": seconds,
                "mb": result.bytes / 1e6,
                "peak_rss_growth_mb": rss.growth_mb,
            }
        )
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[500_000, 2_000_000])
    args = parser.parse_args(argv)
    aws = start_moto()
    aws.export()
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=aws.endpoint_url, region=aws.region))
    try:
        client = boto3.client(
            "redshift-data", endpoint_url=emulator.endpoint_url, region_name=aws.region, **LOCAL_CREDENTIALS
        )
        runner = StatementRunner(client, database="dev", cluster_id="bench")
        s3 = aws.client("s3")
        s3.create_bucket(Bucket="bench-results")
        sink = ResultSink(s3, "bench-results")
        report = [line for rows in args.rows for line in measure(rows, runner, sink)]
    finally:
        emulator.stop()
        aws.stop()
    print(f"\n{'rows':>10}  {'path':<40}{'seconds':>9}{'rows/s':>12}{'MB out':>9}{'peak RSS +MB':>14}")
    for line in report:
        print(
            f"{line['rows']:>10,}  {line['what']:<40}{line['seconds']:>9.2f}{line['rows'] / line['seconds']:>12,.0f}"
            f"{line['mb']:>9.1f}{line['peak_rss_growth_mb']:>14.1f}"
        )
    save_results("results", report)
    return report


if __name__ == "__main__":
    main()
