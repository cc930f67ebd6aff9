"""One step of bench_results' large-result run, in a process of its own, as a function instance would run it.

``python -m bench.result_child EMULATOR_URL STATEMENT_ID FORMAT``: page the statement's result (FORMAT ``-``), or
convert it with the result sink into S3 (moto, at the endpoint the parent exported), then print one JSON line with
the rows, the seconds and this process's peak RSS. Endpoint, region and credentials come from the environment the
parent exported. It imports only what the completion function imports for this
work, so the figure is the function's own.
"""

from __future__ import annotations

import json
import sys
import time

import boto3

from events import ResultFormat
from spectra.results import ResultSink
from spectra.warehouse import StatementRunner


def child(emulator_url: str, statement_id: str, fmt: str) -> None:
    """One large step: page the statement's result (``-``), or convert it with the sink into S3 (moto, whose
    endpoint comes from the parent's environment); print the rows, the time and this process's peak RSS."""
    client = boto3.client("redshift-data", endpoint_url=emulator_url)
    runner = StatementRunner(client, database="dev", cluster_id="bench")
    began = time.perf_counter()
    columns, pages = runner.csv_result(statement_id)
    if fmt == "-":
        what, size = "page GetStatementResultV2", 0
        rows = sum(page.count("\n") for page in pages)  # the bench's values hold no line breaks
    else:
        sink = ResultSink(boto3.client("s3"), "bench-results")
        result = sink.write(
            tenant_id="bench", job_id=f"{fmt}-{statement_id}", fmt=ResultFormat(fmt), columns=columns, csv_pages=pages
        )
        what, size, rows = "ResultSink → S3", result.bytes, result.row_count
    seconds = time.perf_counter() - began
    peak_mb = _high_water_mark_mb()
    print(json.dumps({"what": what, "rows": rows, "seconds": seconds, "mb": size / 1e6, "peak_rss_mb": peak_mb}))


def _high_water_mark_mb() -> float:
    """This process's peak RSS (``VmHWM``). Not ``getrusage``'s ``ru_maxrss``: Linux keeps that across ``exec``, so
    a child would report its parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


if __name__ == "__main__":
    child(*sys.argv[1:4])
