"""COPY and UNLOAD throughput of the Redshift emulator's S3 statements, beside PostgreSQL's own COPY FROM STDIN.

Run: ``python -m bench.bench_copy [--rows N]`` (or through ``make bench``). One moto server and one embedded PostgreSQL
serve the whole run; the same generated CSV is loaded

- with a plain ``COPY ... FROM STDIN`` from the local file (the ceiling: what PostgreSQL itself can ingest),
- with ``run_redshift_statement("COPY ... FROM 's3://...' CSV")``, streaming from moto S3 (plain and GZIP),
- the same, from a copy of the file with one row in a hundred made bad (``MAXERROR 100000``): the emulator's slow path,
  which loads the good rows and records each bad one in ``stl_load_errors``,
- through the Data API emulator (boto3 ``redshift-data``: ExecuteStatement -> FINISHED), when it is available,

and the table is then unloaded with UNLOAD (CSV, CSV GZIP, PARQUET). Results print as a table and are written to
``bench/results/copy.json``. MB is what a statement moved: the uncompressed CSV for the loads, the S3 objects
written for the unloads (compressed size for GZIP and Parquet).
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pgserver
import psycopg

from bench.report import machine, save_results
from local.aws import LocalAws, start_moto
from local.redshift_data.redshift_sql import install_system_tables, run_redshift_statement

TABLE_DDL = "(id bigint, name varchar(40), amount numeric(12,2), created date, active boolean)"
CHUNK = 1024 * 1024
MAXERROR = "MAXERROR 100000"  # Redshift's largest: what a bulk insert job's COPY takes


@dataclass
class Measurement:
    name: str
    rows: int
    megabytes: float
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.megabytes / self.seconds if self.seconds else 0.0


def generate_csv(path: Path, rows: int) -> None:
    """A deterministic CSV with a header and five typed columns (~50 bytes a row)."""
    rng = random.Random(42)
    with path.open("w") as out:
        out.write("id,name,amount,created,active\n")
        batch = []
        for i in range(1, rows + 1):
            day = 1 + i % 28
            batch.append(
                f"{i},customer {rng.randrange(10**6)},{rng.randrange(10**7) / 100:.2f},2024-02-{day:02d},{i % 2 == 0}\n"
            )
            if len(batch) == 10_000:
                out.writelines(batch)
                batch.clear()
        out.writelines(batch)


def timed(name: str, rows_and_bytes: Callable[[], tuple[int, int]]) -> Measurement:
    start = time.perf_counter()
    rows, size = rows_and_bytes()
    return Measurement(name, rows, size / 1e6, time.perf_counter() - start)


def recreate(conn: psycopg.Connection, table: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} {TABLE_DDL}")


def copy_from_stdin(conn: psycopg.Connection, path: Path) -> tuple[int, int]:
    recreate(conn, "plain_copy")
    with conn.cursor() as cur:
        with cur.copy("COPY plain_copy FROM STDIN (FORMAT csv, HEADER true)") as copy, path.open("rb") as source:
            while chunk := source.read(CHUNK):
                copy.write(chunk)
        return cur.rowcount, path.stat().st_size


def with_bad_rows(source: Path, target: Path, every: int) -> int:
    """A copy of the CSV whose every ``every``-th row has an amount no numeric column takes; the bad rows' count."""
    bad = 0
    with source.open() as rows, target.open("w") as out:
        out.write(next(rows))  # the header
        for i, row in enumerate(rows, start=1):
            if i % every == 0:
                fields = row.split(",")
                fields[2] = "not-a-number"
                row = ",".join(fields)
                bad += 1
            out.write(row)
    return bad


def copy_from_s3(conn: psycopg.Connection, s3, url: str, size: int, options: str = "") -> tuple[int, int]:
    recreate(conn, "s3_copy")
    result = run_redshift_statement(f"COPY s3_copy FROM '{url}' CSV IGNOREHEADER 1 {options}", conn, s3)
    return result.rows_affected, size


def unload(conn: psycopg.Connection, s3, bucket: str, prefix: str, options: str) -> tuple[int, int]:
    url = f"s3://{bucket}/{prefix}/"
    result = run_redshift_statement(f"UNLOAD ('select * from plain_copy') TO '{url}' {options}", conn, s3)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    return result.rows_affected, sum(o["Size"] for o in listed if not o["Key"].endswith("manifest"))


def copy_through_data_api(aws: LocalAws, url: str, size: int) -> Measurement | None:
    """The same S3 load submitted through boto3 ``redshift-data`` to the emulator, timed until FINISHED."""
    try:
        from local.redshift_data import EmulatorConfig, start_emulator
    except ImportError:
        return None
    emulator = start_emulator(EmulatorConfig(aws_endpoint_url=aws.endpoint_url, region=aws.region))
    try:
        with psycopg.connect(emulator.admin_database_url, autocommit=True) as admin:
            install_system_tables(admin)
            recreate(admin, "api_copy")
        import boto3

        from local.aws import LOCAL_CREDENTIALS

        client = boto3.client(
            "redshift-data", endpoint_url=emulator.endpoint_url, region_name=aws.region, **LOCAL_CREDENTIALS
        )
        start = time.perf_counter()
        statement = client.execute_statement(
            Sql=f"COPY api_copy FROM '{url}' IAM_ROLE default CSV IGNOREHEADER 1",
            Database=emulator.config.default_database,
            ClusterIdentifier="bench",
            DbUser=emulator.config.admin_user,
        )
        described = _wait(client, statement["Id"], deadline=time.monotonic() + 600)
        seconds = time.perf_counter() - start
        if described["Status"] != "FINISHED":
            raise RuntimeError(f"COPY through the Data API ended {described['Status']}: {described.get('Error')}")
        return Measurement("COPY via Data API (emulator)", described["ResultRows"], size / 1e6, seconds)
    finally:
        emulator.stop()


def _wait(client, statement_id: str, deadline: float) -> dict:
    delay = 0.01
    while True:
        described = client.describe_statement(Id=statement_id)
        if described["Status"] in ("FINISHED", "FAILED", "ABORTED") or time.monotonic() > deadline:
            return described
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def print_table(measurements: list[Measurement]) -> None:
    header = f"{'benchmark':<34} {'rows':>10} {'MB':>8} {'seconds':>8} {'rows/s':>11} {'MB/s':>7}"
    print(header)
    print("-" * len(header))
    for m in measurements:
        print(
            f"{m.name:<34} {m.rows:>10,} {m.megabytes:>8.1f} {m.seconds:>8.2f} "
            f"{m.rows_per_second:>11,.0f} {m.mb_per_second:>7.1f}"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=int(os.environ.get("BENCH_COPY_ROWS", 1_000_000)))
    parser.add_argument("--no-data-api", action="store_true", help="skip the measurement through the emulator")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench_copy_"))
    aws = start_moto()
    aws.export()  # the emulator's S3 client reads the standard AWS_* variables, like every client of the stack
    server = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
    try:
        measurements = _run(args, workdir, aws, server)
    finally:
        server.cleanup()
        aws.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print_table(measurements)
    report = {
        "benchmark": "copy",
        "rows": args.rows,
        **machine(),
        "results": [
            asdict(m) | {"rows_per_second": m.rows_per_second, "mb_per_second": m.mb_per_second} for m in measurements
        ],
    }
    save_results("copy", report)
    return report


def _run(args, workdir: Path, aws: LocalAws, server) -> list[Measurement]:
    s3 = aws.client("s3")
    bucket = "bench-copy"
    s3.create_bucket(Bucket=bucket)
    csv_path = workdir / "data.csv"
    generate_csv(csv_path, args.rows)
    size = csv_path.stat().st_size
    s3.upload_file(str(csv_path), bucket, "in/data.csv")
    gz_path = workdir / "data.csv.gz"
    with csv_path.open("rb") as source, gzip.open(gz_path, "wb", compresslevel=1) as target:
        shutil.copyfileobj(source, target, CHUNK)
    s3.upload_file(str(gz_path), bucket, "gz/data.csv.gz")

    measurements: list[Measurement] = []
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        install_system_tables(conn)
        measurements.append(timed("COPY FROM STDIN (local file)", lambda: copy_from_stdin(conn, csv_path)))
        url = f"s3://{bucket}/in/data.csv"
        measurements.append(timed("COPY FROM S3 (CSV)", lambda: copy_from_s3(conn, s3, url, size)))
        gz_url = f"s3://{bucket}/gz/data.csv.gz"
        measurements.append(timed("COPY FROM S3 (CSV GZIP)", lambda: copy_from_s3(conn, s3, gz_url, size, "GZIP")))
        bad_path = workdir / "bad.csv"
        bad = with_bad_rows(csv_path, bad_path, every=100)
        s3.upload_file(str(bad_path), bucket, "bad/data.csv")
        bad_url, bad_size = f"s3://{bucket}/bad/data.csv", bad_path.stat().st_size
        loaded = timed("COPY FROM S3 (CSV, 1% bad rows)", lambda: copy_from_s3(conn, s3, bad_url, bad_size, MAXERROR))
        if loaded.rows != args.rows - bad:
            raise RuntimeError(f"the load with bad rows loaded {loaded.rows:,} rows, not {args.rows - bad:,}")
        measurements.append(loaded)
        for name, options in (
            ("UNLOAD CSV", "FORMAT CSV"),
            ("UNLOAD CSV GZIP", "FORMAT CSV GZIP"),
            ("UNLOAD PARQUET", "FORMAT PARQUET"),
        ):
            prefix = "out/" + name.lower().replace(" ", "_")
            measurements.append(timed(name, lambda p=prefix, o=options: unload(conn, s3, bucket, p, o)))
    if not args.no_data_api:
        api = copy_through_data_api(aws, f"s3://{bucket}/in/data.csv", size)
        if api is not None:
            measurements.append(api)
    return measurements


if __name__ == "__main__":
    main()
