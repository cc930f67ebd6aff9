"""``make bench``: every benchmark, each printing its table and writing JSON under bench/results/.

Each compares against a baseline measured in the same run on the same machine (this machine is shared and noisy, so
absolute numbers mean little; the ratios are the point):

- bench_redshift_data: the Data API emulator (SELECT 1 round trip, new vs reused session, result paging on 1M rows);
- bench_copy: COPY from S3 beside PostgreSQL's own COPY FROM STDIN of the same file, and UNLOAD;
- bench_results: result pages → CSV / JSON Lines / Parquet in S3 beside bare paging, peak memory at two sizes;
- bench_pipeline: submit → "Job Completed" beside a direct Data API round trip, and AWS calls per job;
- bench_bulk: CSV files loaded through the S3 drop (insert, upsert) beside COPY FROM STDIN of the same file;
- bench_upsert_bound: the same file's upsert on the bare engine (MERGE alone, DELETE + INSERT, the job's own SQL);
- bench_burst: 1,000 jobs from 3 tenants at once (submit, drain, submit → webhook, stages) beside direct statements;
- bench_moto: the local stack's moto beside moto as released, CPU per DynamoDB call on a tenant's slots item;
- bench_slots_item: a tenant's slots item's size and write units as its waiting list grows, and the start rate they
  allow it (computed by DynamoDB's documented rules, not timed: no baseline).

``python -m bench NAME ...`` runs only the named ones.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = [
    "bench_redshift_data",
    "bench_copy",
    "bench_results",
    "bench_pipeline",
    "bench_bulk",
    "bench_upsert_bound",
    "bench_burst",
    "bench_moto",
    "bench_slots_item",
]


def main(names: list[str]) -> None:
    for name in names or BENCHMARKS:
        print(f"\n===== {name} =====", flush=True)
        importlib.import_module(f"bench.{name}").main([])


if __name__ == "__main__":
    main(sys.argv[1:])
