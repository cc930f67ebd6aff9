"""Bulk loads through the S3 drop, beside PostgreSQL's own ``COPY ... FROM STDIN`` of the same file into the same
database, in the same run.

Run: ``python -m bench.bench_bulk [--rows N ...]`` (or ``make bench``). One local stack (moto, the Data API emulator
on its embedded PostgreSQL, template.yaml's functions in this process) serves the run. For each size:

- baseline: ``COPY table FROM STDIN (FORMAT csv, HEADER)`` of the local file, straight into the emulator's
  PostgreSQL (what the database itself can ingest: no S3, no queues, no per-row accounting);
- insert: the file is put at ``<tenant>/<table>/<name>.csv`` in the ingest bucket; the clock runs from the moment
  the object exists (the upload to moto is not counted) until the job is ``JobComplete``: notification → S3 drop
  function → jobs queue → executor (header check, COPY ... MAXERROR as the tenant) → completion event → completion;
- upsert: the same file, with a sidecar asking for an upsert on ``id``, into a table already holding half of the
  ids: staging COPY, duplicate and id checks, UPDATE and INSERT, all in one transaction.

Targets (issue 6): insert at least 0.7 of the baseline's rows/s, upsert at least 0.4. Result files of jobs this
large are written after the job ends (by the bulk results function); their time is printed apart.

Memory: the process's RSS is sampled every 10 ms; each function's figure is the peak above the RSS when its
invocation started, the largest over its invocations. moto runs in a process of its own here (it keeps every S3
object in memory, which would otherwise be counted), but the functions share this process with the runner and the
emulator (which streams the file into PostgreSQL while the executor and completion wait), so a figure is an upper
bound on the function's own use. It must not grow with the file: compare the sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
import psutil
import psycopg

from bench.report import machine, save_results
from local.aws import LOCAL_CREDENTIALS, LocalAws
from local.demo import Warehouse, add_tenant
from local.pipeline import CLUSTER_ID, start_pipeline
from local.redshift_data import EmulatorConfig, start_emulator
from spectra.ports import get_ports

TABLE_DDL = "(id bigint NOT NULL, name varchar(40), amount numeric(12,2), created date, active boolean)"
FUNCTIONS = ["S3DropFunction", "ExecutorFunction", "CompletionFunction", "BulkResultsFunction"]
CHUNK = 1024 * 1024


def generate_csv(path: Path, rows: int) -> None:
    """A deterministic CSV with a header and five typed columns (~50 bytes a row)."""
    rng = random.Random(42)
    with path.open("w") as out:
        out.write("id,name,amount,created,active\n")
        batch = []
        for i in range(1, rows + 1):
            batch.append(
                f"{i},customer {rng.randrange(10**6)},{rng.randrange(10**7) / 100:.2f},"
                f"2024-02-{1 + i % 28:02d},{i % 2 == 0}\n"
            )
            if len(batch) == 10_000:
                out.writelines(batch)
                batch.clear()
        out.writelines(batch)


class RssTimeline:
    """This process's RSS every 10 ms, to read the peak over any window afterwards."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.samples.append((time.time(), self._process.memory_info().rss))

    def __enter__(self) -> RssTimeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def growth_mb(self, start: float, end: float) -> float:
        before = [rss for t, rss in self.samples if t <= start]
        during = [rss for t, rss in self.samples if start <= t <= end]
        if not during:
            return 0.0
        base = before[-1] if before else during[0]
        return max(0, max(during) - base) / 1e6


def baseline_copy(database_url: str, table: str, path: Path) -> float:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} {TABLE_DDL}")
        start = time.perf_counter()
        copy_sql = f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)"
        with conn.cursor() as cur, cur.copy(copy_sql) as copy, path.open("rb") as source:
            while chunk := source.read(CHUNK):
                copy.write(chunk)
        return time.perf_counter() - start


def wait_job(store, job_id: str, *, results: bool, timeout: float = 1800):
    deadline = time.monotonic() + timeout
    while True:
        job = store.get(job_id)
        if job is not None and job.state.is_terminal and (job.results_ready or not results):
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"bulk job {job_id} still {job.state.value if job else 'missing'}")
        time.sleep(0.05)


def drop_and_wait(stack, s3, bucket: str, key: str, path: Path, timeline: RssTimeline) -> dict:
    """Put the file, then time drop → JobComplete, and → result files written."""
    from spectra.bulk.drops import DroppedObject

    s3.upload_file(str(path), bucket, key)
    head = s3.head_object(Bucket=bucket, Key=key)
    dropped_at = time.time()
    began = time.perf_counter()
    job_id = DroppedObject(bucket=bucket, key=key, size=head["ContentLength"], etag=head["ETag"]).job_id
    store = get_ports().bulk.jobs
    while store.get(job_id) is None:
        time.sleep(0.02)
    job = wait_job(store, job_id, results=False)
    loaded = time.perf_counter() - began
    job = wait_job(store, job_id, results=True)
    with_results = time.perf_counter() - began
    if job.state.value != "JobComplete":
        raise RuntimeError(f"bulk job {job_id} ended {job.state.value}: {job.error}")
    memory, stages = {}, {}
    for name in FUNCTIONS:
        invocations = finished_invocations(stack, name, since=dropped_at - 1)
        growth = [timeline.growth_mb(i.started_at, i.started_at + i.duration_ms / 1000) for i in invocations]
        memory[name] = round(max(growth, default=0.0), 1)
        if invocations:  # when the function first started after the drop, and for how long it ran in all
            stages[name] = {
                "started_after_s": round(min(i.started_at for i in invocations) - dropped_at, 3),
                "ran_s": round(sum(i.duration_ms for i in invocations) / 1000, 3),
            }
    return {
        "seconds": loaded,
        "seconds_with_result_files": with_results,
        "processed": job.counts.processed,
        "failed": job.counts.failed,
        "peak_rss_growth_mb": memory,
        "stages": stages,
    }


def finished_invocations(stack, name: str, *, since: float, timeout: float = 60) -> list:
    """The function's invocations since ``since``, once each has returned: a handler marks the job's files ready a
    moment before it returns, and an invocation still running has no duration yet (its memory window would be
    empty)."""
    deadline = time.monotonic() + timeout
    while True:
        invocations = [i for i in stack.invocation_log(name) if i.started_at >= since]
        if all(i.duration_ms > 0 for i in invocations) or time.monotonic() > deadline:
            return invocations
        time.sleep(0.05)


def moto_in_its_own_process() -> tuple[LocalAws, subprocess.Popen]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    aws = LocalAws(endpoint_url=f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while True:
        try:
            aws.client("s3").list_buckets()
            return aws, process
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.1)


def run(sizes: list[int]) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench_bulk_"))
    aws, moto_process = moto_in_its_own_process()
    aws.export()
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=aws.endpoint_url, region=aws.region))
    stack = start_pipeline(aws, emulator)
    results = []
    try:
        data_api = boto3.client(
            "redshift-data", endpoint_url=emulator.endpoint_url, region_name=aws.region, **LOCAL_CREDENTIALS
        )
        warehouse = Warehouse(data_api, CLUSTER_ID)
        add_tenant(warehouse, get_ports().tenants, "bench")
        s3 = aws.client("s3")
        bucket = stack.physical_id("IngestBucket")
        with RssTimeline() as timeline:
            for rows in sizes:
                path = workdir / f"data-{rows}.csv"
                generate_csv(path, rows)
                megabytes = path.stat().st_size / 1e6
                baseline = baseline_copy(emulator.admin_database_url, f"baseline_{rows}", path)
                insert_table, upsert_table = f"insert_{rows}", f"upsert_{rows}"
                warehouse.run(
                    f"CREATE TABLE {insert_table} {TABLE_DDL}",
                    f"CREATE TABLE {upsert_table} {TABLE_DDL}",
                    f"INSERT INTO {upsert_table} SELECT * FROM baseline_{rows} WHERE id % 2 = 0",  # half the ids
                    f'GRANT SELECT, INSERT, UPDATE, DELETE ON {insert_table}, {upsert_table} TO "tenant_bench"',
                    timeout=600,
                )
                insert = drop_and_wait(stack, s3, bucket, f"bench/{insert_table}/data.csv", path, timeline)
                s3.put_object(
                    Bucket=bucket,
                    Key=f"bench/{upsert_table}/data.json",
                    Body=json.dumps({"operation": "upsert", "externalIdFieldName": "id"}).encode(),
                )
                upsert = drop_and_wait(stack, s3, bucket, f"bench/{upsert_table}/data.csv", path, timeline)
                for entry in (insert, upsert):
                    assert entry["processed"] == rows and entry["failed"] == 0, entry
                results.append(
                    {
                        "rows": rows,
                        "megabytes": round(megabytes, 1),
                        "baseline_copy_from_stdin": {"seconds": baseline, "rows_per_second": rows / baseline},
                        "insert_via_s3_drop": insert | {"rows_per_second": rows / insert["seconds"]},
                        "upsert_via_s3_drop": upsert | {"rows_per_second": rows / upsert["seconds"]},
                        "insert_ratio": baseline / insert["seconds"],
                        "upsert_ratio": baseline / upsert["seconds"],
                    }
                )
                path.unlink()
    finally:
        stack.stop()
        emulator.stop()
        moto_process.terminate()
        moto_process.wait(30)
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "bulk",
        **machine(),
        "targets": {"insert_ratio": 0.7, "upsert_ratio": 0.4},
        "results": results,
    }


def print_report(report: dict) -> None:
    print("\nBulk loads through the S3 drop vs COPY FROM STDIN of the same file into the same PostgreSQL")
    print(f"{'rows':>10} {'MB':>7}  {'path':<28}{'seconds':>9}{'rows/s':>12}{'MB/s':>8}{'ratio':>7}")
    for r in report["results"]:
        base = r["baseline_copy_from_stdin"]
        lines = [
            ("COPY FROM STDIN (baseline)", base["seconds"], 1.0),
            ("insert via S3 drop", r["insert_via_s3_drop"]["seconds"], r["insert_ratio"]),
            ("upsert via S3 drop", r["upsert_via_s3_drop"]["seconds"], r["upsert_ratio"]),
        ]
        for label, seconds, ratio in lines:
            print(
                f"{r['rows']:>10,} {r['megabytes']:>7.1f}  {label:<28}{seconds:>9.2f}{r['rows'] / seconds:>12,.0f}"
                f"{r['megabytes'] / seconds:>8.1f}{ratio:>7.2f}"
            )
        for label in ("insert_via_s3_drop", "upsert_via_s3_drop"):
            entry = r[label]
            print(f"{'':>20}{label}: result files written {entry['seconds_with_result_files']:.2f} s after the drop")
    print("\npeak RSS growth per function (MB above its start; an upper bound, see the docstring)")
    names = FUNCTIONS
    print(f"{'rows':>10}  {'job':<8}" + "".join(f"{n.removesuffix('Function'):>15}" for n in names))
    for r in report["results"]:
        for label in ("insert", "upsert"):
            memory = r[f"{label}_via_s3_drop"]["peak_rss_growth_mb"]
            print(f"{r['rows']:>10,}  {label:<8}" + "".join(f"{memory[n]:>15.1f}" for n in names))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("BENCH_BULK_ROWS", "1000000,5000000")
    parser.add_argument("--rows", default=default, help="comma-separated file sizes in rows (default %(default)s)")
    args = parser.parse_args(argv)
    report = run([int(n) for n in args.rows.split(",")])
    print_report(report)
    save_results("bulk", report)
    return report


if __name__ == "__main__":
    main()
