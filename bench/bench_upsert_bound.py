"""What the engine alone allows a bulk upsert: the same file's upsert with no pipeline at all, beside the bare
``COPY ... FROM STDIN`` that issue 6's targets are measured against, in the same PostgreSQL and the same run.

Run: ``python -m bench.bench_upsert_bound [--rows N]`` (or ``make bench``). One embedded PostgreSQL, started as the
local stack starts the emulator's (the same settings: ``local/redshift_data/engine.py``), serves the run; no moto,
no Data API, no functions. The file is ``bench_bulk``'s (the same generator), and each upsert goes into a table that
already holds half of its ids (2.5M updates and 2.5M inserts for 5M rows), rebuilt and checkpointed before each
contender. Contenders, each one transaction on one connection, timed from its first statement to its commit:

- ``merge_only``: the staging table (``COPY FROM STDIN``, then ANALYZE, as the emulator's COPY refreshes a new
  table's statistics) and the MERGE, with no accounting at all: the least an upsert with the product's semantics
  (a row's columns the file leaves out keep their values; UPDATE and INSERT rights only) can cost here;
- ``delete_insert``: the same staging, then ``DELETE ... USING`` and ``INSERT ... SELECT``: the cheaper shape the
  product does not take (it resets the columns a file leaves out and needs DELETE rights; bench/README.md);
- ``product_sql``: the statements a bulk upsert job runs (``spectra.bulk.sql.load_statements``), with two changes
  for an engine without S3: its COPY from S3 is ``COPY FROM STDIN`` of the same file (then ANALYZE), and its outcome
  UNLOAD is ``COPY (<the same SELECT>) TO STDOUT``, the bytes read and dropped. The two one-row reads of the COPY's
  rejected and loaded rows (``stl_load_errors``, ``pg_last_copy_count()``) are skipped: they exist only in Redshift
  and the emulator. Each statement is timed.

The ratio is the baseline's seconds over the contender's, as ``bench_bulk`` prints it (issue 6: upsert at least 0.4
through the S3 drop): a contender under 0.4 here cannot reach it through the pipeline, which runs the same SQL.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from bench.bench_bulk import CHUNK, TABLE_DDL, generate_csv
from bench.report import machine, save_results
from local.redshift_data import EmulatorConfig, start_emulator
from spectra.bulk.models import BulkJob, BulkOperation
from spectra.bulk.sql import Manifest, load_statements

COLUMNS = ["id", "name", "amount", "created", "active"]
TARGET = "upsert_bound"
STAGE = "bulk_stage"


def copy_in(conn: psycopg.Connection, table: str, path: Path) -> None:
    copy_sql = f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)"
    with conn.cursor() as cur, cur.copy(copy_sql) as copy, path.open("rb") as source:
        while chunk := source.read(CHUNK):
            copy.write(chunk)


def copy_out(conn: psycopg.Connection, select: str) -> int:
    """Run ``select`` as ``COPY ... TO STDOUT`` (what an UNLOAD writes), reading and dropping the bytes."""
    size = 0
    with conn.cursor() as cur, cur.copy(f"COPY ({select}) TO STDOUT (FORMAT csv, HEADER true)") as copy:
        for chunk in copy:
            size += len(chunk)
    return size


def baseline(url: str, path: Path) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS baseline_copy; CREATE TABLE baseline_copy {TABLE_DDL}")
        conn.execute("CHECKPOINT")
        start = time.perf_counter()
        copy_in(conn, "baseline_copy", path)
        return time.perf_counter() - start


def fresh_target(url: str) -> None:
    """The target holding every even id of the file, its statistics fresh, nothing dirty in the buffers."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TARGET}")
        conn.execute(f"CREATE TABLE {TARGET} {TABLE_DDL}")
        conn.execute(f"INSERT INTO {TARGET} SELECT * FROM baseline_copy WHERE id % 2 = 0")
        conn.execute(f"VACUUM ANALYZE {TARGET}")
        conn.execute("CHECKPOINT")


def staged(path: Path):
    """The contender's staging step: the staging table shaped like the target, loaded from the file."""
    cols = ", ".join(COLUMNS)
    return [
        ("create staging", f"CREATE TEMP TABLE {STAGE} AS SELECT {cols} FROM {TARGET} WHERE 1 = 0"),
        ("COPY staging FROM STDIN", lambda conn: copy_in(conn, STAGE, path)),
        ("ANALYZE staging", f"ANALYZE {STAGE}"),
    ]


def merge_only(path: Path):
    sets = ", ".join(f"{c} = s.{c}" for c in COLUMNS)
    values = ", ".join(f"s.{c}" for c in COLUMNS)
    merge = (
        f"MERGE INTO {TARGET} USING {STAGE} s ON {TARGET}.id = s.id WHEN MATCHED THEN UPDATE SET {sets}"
        f" WHEN NOT MATCHED THEN INSERT ({', '.join(COLUMNS)}) VALUES ({values})"
    )
    return [*staged(path), ("MERGE", merge)]


def delete_insert(path: Path):
    return [
        *staged(path),
        ("DELETE ... USING", f"DELETE FROM {TARGET} USING {STAGE} s WHERE {TARGET}.id = s.id"),
        ("INSERT ... SELECT", f"INSERT INTO {TARGET} SELECT {', '.join(COLUMNS)} FROM {STAGE}"),
    ]


def product_sql(path: Path):
    """The upsert job's own batch, its S3 statements swapped for their local equivalents (module docstring)."""
    now = datetime.now(UTC)
    job = BulkJob(
        job_id="bound",
        tenant_id="bench",
        object=TARGET,
        operation=BulkOperation.UPSERT,
        external_id_field="id",
        created_at=now,
        updated_at=now,
    )
    statements, plan = load_statements(
        job,
        COLUMNS,
        [Manifest(url="s3://bench/manifest", gzip=False)],
        role="default",
        max_errors=1000,
        not_null=["id"],
    )
    skipped = {rejected for _, rejected in plan.copies} | set(plan.loaded)
    steps = []
    for index, statement in enumerate(statements):
        if index in skipped:
            continue
        if any(index == copy for copy, _ in plan.copies):
            steps.append((f"[{index}] COPY staging FROM STDIN", lambda conn: copy_in(conn, STAGE, path)))
            steps.append((f"[{index}] ANALYZE staging", f"ANALYZE {STAGE}"))
        elif index == plan.outcome_index:
            steps.append((f"[{index}] outcome SELECT as COPY TO STDOUT", lambda conn, s=statement: copy_out(conn, s)))
        else:
            steps.append((f"[{index}] {statement.split(' AS ')[0].split(' USING ')[0][:44]}", statement))
    return steps


CONTENDERS = {"merge_only": merge_only, "delete_insert": delete_insert, "product_sql": product_sql}


def run_contender(url: str, steps) -> dict:
    timings = []
    with psycopg.connect(url) as conn:
        start = time.perf_counter()
        for label, step in steps:
            began = time.perf_counter()
            conn.execute(step) if isinstance(step, str) else step(conn)
            timings.append({"step": label, "seconds": round(time.perf_counter() - began, 3)})
        conn.commit()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "steps": timings}


def check_upserted(url: str, rows: int) -> None:
    """Every id once, each row as the file has it (the file's odd and even ids alike)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT count(*), count(DISTINCT t.id), count(b.id) FROM {TARGET} t"
            f" LEFT JOIN baseline_copy b ON (b.id, b.name, b.amount, b.created, b.active)"
            f" = (t.id, t.name, t.amount, t.created, t.active)"
        ).fetchone()
    assert row == (rows, rows, rows), row


def run(rows: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench_upsert_bound_"))
    # The emulator is started only for its PostgreSQL (its settings are the local stack's); nothing calls its API.
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url="http://127.0.0.1:9", region="us-east-1"))
    try:
        path = workdir / "data.csv"
        generate_csv(path, rows)
        url = emulator.admin_database_url
        megabytes = path.stat().st_size / 1e6
        base = baseline(url, path)
        report = {"baseline_copy_from_stdin": {"seconds": base, "rows_per_second": rows / base}}
        for name, contender in CONTENDERS.items():
            fresh_target(url)
            result = run_contender(url, contender(path))
            check_upserted(url, rows)
            report[name] = result | {"ratio": base / result["seconds"]}
    finally:
        emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "benchmark": "upsert_bound",
        **machine(),
        "rows": rows,
        "megabytes": round(megabytes, 1),
        "target_upsert_ratio": 0.4,
        "results": report,
    }


def print_report(report: dict) -> None:
    results = report["results"]
    base = results["baseline_copy_from_stdin"]["seconds"]
    print(f"\nAn upsert of {report['rows']:,} rows on the bare engine vs COPY FROM STDIN of the same file")
    print(f"{'':54s} {'seconds':>8s} {'ratio':>6s}")
    print(f"{'COPY FROM STDIN (baseline)':54s} {base:8.2f} {1.0:6.2f}")
    for name in CONTENDERS:
        entry = results[name]
        print(f"{name:54s} {entry['seconds']:8.2f} {entry['ratio']:6.2f}")
        for step in entry["steps"]:
            print(f"  {step['step']:52s} {step['seconds']:8.2f}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args(argv)
    report = run(args.rows)
    print_report(report)
    save_results("upsert_bound", report)
    return report


if __name__ == "__main__":
    main()
