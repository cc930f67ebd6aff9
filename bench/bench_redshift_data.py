"""Redshift Data API emulator benchmarks: latency of a statement, session reuse, result throughput, memory.

Run: ``python -m bench.bench_redshift_data [--rows N] [--repeat N]`` (``make bench`` runs it through bench/__main__).
Everything goes through boto3's ``redshift-data`` client, as the project's code does:

- ``SELECT 1`` round trip: ExecuteStatement → poll DescribeStatement until FINISHED → GetStatementResult;
- a statement on a fresh connection vs. one in a reused session (SessionId: no connection set-up);
- a 1M-row result paged through GetStatementResultV2 (CSV) and GetStatementResult (typed JSON): time to FINISHED
  (the emulator spools the rows), paging throughput in rows/s, and the process's peak RSS growth while doing it
  (client and emulator share this process, so the number bounds both).

Rows are ``{"benchmark", "metric", "value", "unit"}``; ``run(emulator, aws)`` returns them so other benchmarks can
add rows of their own. Results print as a table and go to ``bench/results/redshift_data.json``.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import boto3
import psutil

from bench.report import machine, save_results
from local.aws import LOCAL_CREDENTIALS, LocalAws, start_moto
from local.redshift_data import Emulator, EmulatorConfig, start_emulator

TARGET = {"ClusterIdentifier": "bench", "Database": "dev"}
TERMINAL = {"FINISHED", "FAILED", "ABORTED"}


def client_for(emulator: Emulator):
    return boto3.client(
        "redshift-data", endpoint_url=emulator.endpoint_url, region_name="us-east-1", **LOCAL_CREDENTIALS
    )


def wait(client, statement_id: str, timeout: float = 600) -> dict:
    deadline, delay = time.monotonic() + timeout, 0.001
    while True:
        described = client.describe_statement(Id=statement_id)
        if described["Status"] in TERMINAL:
            if described["Status"] != "FINISHED":
                raise RuntimeError(f"{statement_id} ended {described['Status']}: {described.get('Error')}")
            return described
        if time.monotonic() > deadline:
            raise TimeoutError(statement_id)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def row(benchmark: str, metric: str, value: float, unit: str) -> dict[str, Any]:
    return {"benchmark": benchmark, "metric": metric, "value": round(value, 3), "unit": unit}


class PeakRss:
    """Samples this process's RSS every 20 ms; ``growth_mb`` is the peak above the value at start."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 1e6


def bench_round_trip(client, repeat: int) -> list[dict]:
    timings = []
    for _ in range(repeat):
        began = time.perf_counter()
        statement_id = client.execute_statement(Sql="SELECT 1", **TARGET)["Id"]
        wait(client, statement_id)
        client.get_statement_result(Id=statement_id)
        timings.append((time.perf_counter() - began) * 1000)
    return [
        row("SELECT 1 round trip", "median", statistics.median(timings), "ms"),
        row("SELECT 1 round trip", "p99", percentile(timings, 0.99), "ms"),
    ]


def bench_session_reuse(client, repeat: int) -> list[dict]:
    fresh, reused = [], []
    first = client.execute_statement(Sql="SELECT 1", SessionKeepAliveSeconds=300, **TARGET)
    wait(client, first["Id"])
    for _ in range(repeat):
        began = time.perf_counter()
        wait(client, client.execute_statement(Sql="SELECT 1", **TARGET)["Id"])
        fresh.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        wait(client, client.execute_statement(Sql="SELECT 1", SessionId=first["SessionId"])["Id"])
        reused.append((time.perf_counter() - began) * 1000)
    return [
        row("statement to FINISHED", "new connection (median)", statistics.median(fresh), "ms"),
        row("statement to FINISHED", "reused session (median)", statistics.median(reused), "ms"),
    ]


def bench_large_result(client, rows: int, result_format: str) -> list[dict]:
    call = client.get_statement_result_v2 if result_format == "CSV" else client.get_statement_result
    name = f"{rows:,} rows via {call.__name__}"
    sql = f"SELECT g AS id, 'customer ' || g AS name, g * 1.5 AS amount FROM generate_series(1, {rows}) g"
    with PeakRss() as rss:
        began = time.perf_counter()
        statement_id = client.execute_statement(Sql=sql, ResultFormat=result_format, **TARGET)["Id"]
        described = wait(client, statement_id)
        spooled = time.perf_counter() - began
        began, fetched, pages, token = time.perf_counter(), 0, 0, None
        while True:
            page = call(Id=statement_id, **({"NextToken": token} if token else {}))
            pages += 1
            if result_format == "CSV":
                fetched += sum(r["CSVRecords"].count("\n") for r in page["Records"])
            else:
                fetched += len(page["Records"])
            token = page.get("NextToken")
            if not token:
                break
        paging = time.perf_counter() - began
    if fetched != rows or described["ResultRows"] != rows:
        raise RuntimeError(f"{name}: fetched {fetched} rows, DescribeStatement says {described['ResultRows']}")
    return [
        row(name, "execute to FINISHED", spooled, "s"),
        row(name, "paging throughput", rows / paging, "rows/s"),
        row(name, "pages", pages, "pages"),
        row(name, "result size", described["ResultSize"] / 1e6, "MB"),
        row(name, "peak RSS growth", rss.growth_mb, "MB"),
    ]


def run(emulator: Emulator, aws: LocalAws | None = None, *, rows: int = 1_000_000, repeat: int = 50) -> list[dict]:
    """All measurements against a running emulator (``aws`` is unused here but keeps one signature for benches)."""
    client = client_for(emulator)
    wait(client, client.execute_statement(Sql="SELECT 1", **TARGET)["Id"])  # warm-up: imports, first connection
    results = bench_round_trip(client, repeat)
    results += bench_session_reuse(client, max(10, repeat // 2))
    results += bench_large_result(client, rows, "CSV")
    results += bench_large_result(client, rows, "JSON")
    return results


def print_table(rows: list[dict]) -> None:
    width = max(len(r["benchmark"]) for r in rows)
    metric_width = max(len(r["metric"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'metric':<{metric_width}}  {'value':>14}  unit")
    for r in rows:
        print(f"{r['benchmark']:<{width}}  {r['metric']:<{metric_width}}  {r['value']:>14,.3f}  {r['unit']}")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_redshift_data", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the large result")
    parser.add_argument("--repeat", type=int, default=50, help="SELECT 1 round trips to time")
    args = parser.parse_args(argv)

    aws = start_moto()
    began = time.perf_counter()
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=aws.endpoint_url))
    startup = time.perf_counter() - began
    try:
        rows = [row("emulator start-up", "start_emulator()", startup, "s")]
        rows += run(emulator, aws, rows=args.rows, repeat=args.repeat)
    finally:
        emulator.stop()
        aws.stop()
    print_table(rows)
    report = {
        "benchmark": "redshift_data",
        **machine(),
        "rows": rows,
    }
    save_results("redshift_data", report)
    return rows


if __name__ == "__main__":
    main()
